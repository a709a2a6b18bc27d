//! Several servers on one database share nothing else: revocation, limits, settings and mail
//! hold across them at once.

use chrono::Duration;
use futures::future::join_all;
use serde_json::json;

use latchkey::config::Secret;

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    process::ServerProcess,
    smtp::SmtpReceiver,
};

crate::tests![
    a_token_revoked_on_one_replica_is_refused_by_every_other_at_once,
    limits_hold_exactly_across_replicas_and_each_mail_is_sent_once,
    settings_changed_on_one_replica_apply_on_the_other_at_once,
    cleanup_removes_only_what_has_expired,
    smtp_refusals_are_retried_then_delivered_once,
    an_smtp_server_that_never_answers_times_out_and_is_retried,
    permanent_smtp_refusals_are_dead_lettered_and_shown_to_admins,
    sigterm_finishes_requests_and_hands_unsent_mail_to_the_next_start,
];

const UNDELIVERED: &str = "{ undeliveredMail { kind recipient status attempts lastError } }";

async fn smtp_refusals_are_retried_then_delivered_once(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("retry@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    smtp.reject_with(Some("451 4.3.0 mailbox busy, try later"));
    let res = app.request_reset("retry@example.com").await;
    assert_eq!(res["data"]["requestPasswordReset"], true);
    // Retried with backoff while the server keeps refusing.
    let mut queued = serde_json::Value::Null;
    for _ in 0..40 {
        app.clock.advance(Duration::seconds(30));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        queued = app.gql_as(Some(&admin), UNDELIVERED, json!({})).await;
        if queued["data"]["undeliveredMail"][0]["attempts"]
            .as_i64()
            .unwrap_or(0)
            >= 2
        {
            break;
        }
    }
    let entry = &queued["data"]["undeliveredMail"][0];
    assert_eq!(entry["status"], "PENDING", "{queued}");
    assert!(entry["attempts"].as_i64().unwrap() >= 2, "{queued}");
    assert!(
        entry["lastError"].as_str().unwrap().contains("451"),
        "{queued}"
    );
    assert!(
        !queued.to_string().contains("token="),
        "the link is never shown"
    );
    assert!(smtp.messages().is_empty());
    smtp.reject_with(None);
    app.clock.advance(Duration::minutes(10));
    smtp.wait_for(1).await;
    assert_eq!(smtp.settled(&app).await.len(), 1, "delivered once");
    let queued = app.gql_as(Some(&admin), UNDELIVERED, json!({})).await;
    assert_eq!(queued["data"]["undeliveredMail"], json!([]));
}

async fn an_smtp_server_that_never_answers_times_out_and_is_retried(backend: Backend) {
    let smtp = SmtpReceiver::start().await;
    smtp.stall(true);
    let url = smtp.url();
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(Secret::new(url));
        c.smtp_timeout_seconds = 1;
    })
    .await;
    app.create_customer("slow@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    let started = std::time::Instant::now();
    let res = app.request_reset("slow@example.com").await;
    assert_eq!(res["data"]["requestPasswordReset"], true);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the request never waits for SMTP"
    );
    // The attempt times out and the message waits for its retry, with the reason.
    let mut queued = serde_json::Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        queued = app.gql_as(Some(&admin), UNDELIVERED, json!({})).await;
        if queued["data"]["undeliveredMail"][0]["attempts"]
            .as_i64()
            .unwrap_or(0)
            >= 1
        {
            break;
        }
    }
    let entry = &queued["data"]["undeliveredMail"][0];
    assert_eq!(entry["status"], "PENDING", "{queued}");
    assert_eq!(entry["recipient"], "slow@example.com", "{queued}");
    let error = entry["lastError"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{queued}"
    );
    assert!(smtp.messages().is_empty());
    // The server answers again: the retry delivers it, once.
    smtp.stall(false);
    app.clock.advance(Duration::minutes(10));
    smtp.wait_for(1).await;
    assert_eq!(smtp.settled(&app).await.len(), 1, "delivered once");
    let queued = app.gql_as(Some(&admin), UNDELIVERED, json!({})).await;
    assert_eq!(queued["data"]["undeliveredMail"], json!([]));
}

async fn permanent_smtp_refusals_are_dead_lettered_and_shown_to_admins(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("gone@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    smtp.reject_with(Some("550 5.1.1 no such user"));
    app.request_reset("gone@example.com").await;
    let mut queued = serde_json::Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        queued = app.gql_as(Some(&admin), UNDELIVERED, json!({})).await;
        if queued["data"]["undeliveredMail"][0]["status"] == "DEAD" {
            break;
        }
    }
    let entry = &queued["data"]["undeliveredMail"][0];
    assert_eq!(entry["status"], "DEAD", "{queued}");
    assert_eq!(entry["kind"], "password_reset");
    assert_eq!(entry["recipient"], "gone@example.com");
    assert!(
        entry["lastError"].as_str().unwrap().contains("550"),
        "{queued}"
    );
    // A dead message keeps no usable link, and is not retried.
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT link FROM email_outbox",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<Option<String>>("", "link").unwrap(), None);
    smtp.reject_with(None);
    app.clock.advance(Duration::hours(1));
    assert!(smtp.settled(&app).await.is_empty());
}

async fn a_token_revoked_on_one_replica_is_refused_by_every_other_at_once(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = a.replica().await;
    let c = a.replica().await;
    a.create_customer("fleet@example.com", PASSWORD).await;
    let token = a.sign_in("fleet@example.com", PASSWORD).await;
    assert!(
        b.whoami(&token).await.is_ok(),
        "a token from one replica works on another"
    );
    let res = b
        .gql_as(Some(&token), "mutation { revokeCustomerToken }", json!({}))
        .await;
    assert_eq!(res["data"]["revokeCustomerToken"], true);
    for replica in [&a, &b, &c] {
        assert_eq!(replica.whoami(&token).await, Err("UNAUTHENTICATED".into()));
    }
    // Force Sign In on one replica, refused on the others.
    let tokens = [
        a.sign_in("fleet@example.com", PASSWORD).await,
        b.sign_in("fleet@example.com", PASSWORD).await,
    ];
    let id = a.customer_id("fleet@example.com").await;
    let admin = c.admin_token("support").await;
    let res = c
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 3,
        "{res}"
    );
    for t in &tokens {
        assert_eq!(a.whoami(t).await, Err("UNAUTHENTICATED".into()));
        assert_eq!(b.whoami(t).await, Err("UNAUTHENTICATED".into()));
    }
}

async fn limits_hold_exactly_across_replicas_and_each_mail_is_sent_once(backend: Backend) {
    let (a, smtp) = TestApp::with_smtp(backend).await;
    let b = a.replica().await;
    a.create_customer("burst@example.com", PASSWORD).await;
    a.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 3, min_seconds_between_reset_requests = 0").await;
    let results = join_all((0..24).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.request_reset("burst@example.com")
    }))
    .await;
    let accepted = results
        .iter()
        .filter(|r| r["data"]["requestPasswordReset"] == true)
        .count();
    assert_eq!(accepted, 3, "{results:?}");
    // Two mail workers share the outbox: one to three mails (requests for one address that
    // wait together coalesce), each once.
    smtp.wait_for(1).await;
    let mails = smtp.settled(&a).await;
    assert!((1..=3).contains(&mails.len()), "{}", mails.len());
    let mut ids: Vec<String> = mails
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&m.raw)
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), mails.len(), "no message twice");
}

async fn settings_changed_on_one_replica_apply_on_the_other_at_once(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = a.replica().await;
    let admin = a.admin_token("administrator").await;
    let res = a
        .gql_as(Some(&admin), "mutation { updatePasswordSettings(input: {minPasswordLength: 12}) { minPasswordLength } }", json!({}))
        .await;
    assert_eq!(
        res["data"]["updatePasswordSettings"]["minPasswordLength"],
        12
    );
    let res = b
        .gql("mutation { createCustomer(input: {email: \"s@example.com\", firstname: \"A\", lastname: \"B\", password: \"kx7!qzmw\"}) { id } }", json!({}))
        .await;
    assert_eq!(code(&res), "PASSWORD_POLICY");
}

async fn cleanup_removes_only_what_has_expired(backend: Backend) {
    use domain::clock::Clock;
    use sea_orm::ConnectionTrait;
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("old@example.com", PASSWORD).await;
    let old = app.sign_in("old@example.com", PASSWORD).await;
    app.request_reset("old@example.com").await;
    smtp.wait_for(1).await;
    // An email change and an admin invitation, long done by the time of the cleanup.
    let mover = app.sign_in("old@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&mover),
            "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
            json!({"e": "elsewhere@example.com", "p": PASSWORD}),
        )
        .await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let root = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&root),
            "mutation { createAdminUser(username: \"temp\", email: \"temp@example.com\", role: VIEWER) { id } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    smtp.wait_for(4).await;
    app.sign_in_response("old@example.com", "wrong-guess").await;
    app.clock.advance(Duration::days(40));
    app.create_customer("new@example.com", PASSWORD).await;
    let new = app.sign_in("new@example.com", PASSWORD).await;
    // A message that could not be sent yet must survive any cleanup.
    let backend_kind = app.db.get_database_backend();
    app.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend_kind,
            match backend_kind {
                sea_orm::DatabaseBackend::Postgres => {
                    "UPDATE email_outbox SET status = 'pending', next_attempt_at = $1"
                }
                _ => "UPDATE email_outbox SET status = 'pending', next_attempt_at = ?",
            },
            [(app.clock.now() + Duration::days(365)).into()],
        ))
        .await
        .unwrap();
    let store = persistence::Stores::new(app.db.clone()).cleanup;
    let done = store.cleanup(app.clock.now()).await.unwrap();
    assert!(done.ran);
    assert_eq!(done.sessions, 3, "{done:?}");
    assert_eq!(done.email_changes, 1, "{done:?}");
    assert_eq!(done.admin_links, 1, "{done:?}");
    assert_eq!(app.count("email_changes").await, 0);
    assert_eq!(done.reset_tokens, 1, "{done:?}");
    assert!(done.limit_events >= 1, "{done:?}");
    assert_eq!(done.sent_mail, 0, "pending mail is never cleaned up");
    assert_eq!(app.whoami(&old).await, Err("UNAUTHENTICATED".into()));
    assert!(app.whoami(&new).await.is_ok(), "live sessions stay");
    assert_eq!(app.count("email_outbox").await, 4, "pending mail stays");
}

/// The real binary: SIGTERM stops it cleanly (exit 0) with mail still queued, and the next
/// start delivers that mail once.
async fn sigterm_finishes_requests_and_hands_unsent_mail_to_the_next_start(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    app.create_customer("term@example.com", PASSWORD).await;
    // Sixteen concurrent sign-ins of one account are more than its lockout budget (attempts
    // count while they are checked, right or wrong).
    app.set_settings("lockout_failures = 20").await;
    // Only the real binary runs from here (the in-process server's mail worker must not race it).
    app.stop().await;
    let config = app.config.clone();
    let client = app.client.clone();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let smtp_env = |url: String| [("LATCHKEY_SMTP_URL", url)];
    let (db, _) = latchkey::connect(&config).await.unwrap();
    let mut first = ServerProcess::start(&config, &smtp_env(format!("smtp://{dead_port}"))).await;
    let addr = first.addr;
    let res: serde_json::Value = client
        .post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(
            json!({"query": "mutation { requestPasswordReset(email: \"term@example.com\") }"})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["data"]["requestPasswordReset"], true);
    // Sixteen sign-ins at once (each an argon2 verification, two at a time); SIGTERM arrives as
    // soon as the first answer does, while the others are still being worked on.
    let sign_in = json!({"query": "mutation { generateCustomerToken(email: \"term@example.com\", password: \"kx7!qzmw\") { token } }"}).to_string();
    let (tx, mut first_answer) = tokio::sync::mpsc::channel::<()>(16);
    let in_flight: Vec<_> = (0..16)
        .map(|_| {
            let (client, body, tx) = (reqwest::Client::new(), sign_in.clone(), tx.clone());
            tokio::spawn(async move {
                let res = client
                    .post(format!("http://{addr}/graphql"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let answered = std::time::Instant::now();
                let _ = tx.send(()).await;
                let body: serde_json::Value = res.unwrap().json().await.unwrap();
                (body, answered)
            })
        })
        .collect();
    first_answer.recv().await;
    let signalled = std::time::Instant::now();
    first.signal("TERM");
    let mut after_signal = 0;
    for request in in_flight {
        let (body, answered) = request.await.unwrap();
        assert!(
            body["data"]["generateCustomerToken"]["token"].is_string(),
            "an in-flight request was cut short: {body}"
        );
        after_signal += usize::from(answered > signalled);
    }
    assert!(
        after_signal > 0,
        "no request was still in flight at SIGTERM"
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), first.child.wait())
        .await
        .expect("SIGTERM stops the server")
        .unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    {
        use sea_orm::ConnectionTrait;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT (SELECT COUNT(*) FROM email_outbox WHERE status <> 'sent') \
                 + (SELECT COUNT(*) FROM reset_requests) AS n",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get::<i64>("", "n").unwrap(),
            1,
            "the mail is still queued (as a recorded request or an outbox row)"
        );
    }
    let smtp = crate::smtp::SmtpReceiver::start().await;
    let _second = ServerProcess::start(&config, &smtp_env(smtp.url())).await;
    let mails = smtp.wait_for(1).await;
    app.outbox_delivered().await;
    assert_eq!(smtp.messages().len(), 1, "sent once after the restart");
    assert_eq!(mails[0].to, vec!["term@example.com"]);
}
