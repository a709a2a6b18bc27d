//! "Forgot Your Password?": requests, links, limits, the outbox and the mail itself.

use std::time::Duration as StdDuration;

use chrono::Duration;
use futures::future::join_all;
use latchkey::config::Secret;
use serde_json::json;

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    smtp::SmtpReceiver,
};

crate::tests![
    a_customer_resets_a_forgotten_password_through_the_emailed_link,
    known_and_unknown_addresses_get_identical_answers_and_only_real_accounts_get_mail,
    requesting_a_reset_changes_nothing_until_the_link_is_used,
    a_link_works_once_even_when_used_concurrently,
    links_expire_after_the_configured_lifetime,
    a_newer_request_supersedes_older_links,
    a_password_change_voids_outstanding_links,
    a_reset_clears_lockout_and_signs_out_every_device,
    a_policy_failure_leaves_the_link_usable,
    an_email_given_with_the_token_must_match_it,
    bad_tokens_are_refused_and_guessing_is_throttled_per_ip,
    reset_requests_are_limited_per_email_and_ip_alike_for_unknown_addresses,
    concurrent_requests_under_a_limit_of_k_accept_exactly_k,
    a_request_writes_the_same_rows_whether_or_not_the_address_has_an_account,
    concurrent_requests_on_two_replicas_share_one_limit_exactly,
    aliased_requests_each_count_against_the_limit,
    redirect_urls_must_be_on_the_allow_list,
    links_never_come_from_the_host_header,
    mail_sent_while_smtp_is_down_arrives_once_it_is_back,
    mail_queued_when_the_server_stops_is_sent_once_after_restart,
    the_token_is_stored_only_hashed_and_the_link_is_scrubbed_after_sending,
    mail_is_in_the_customers_language_and_names_cannot_inject_markup,
    without_smtp_mail_is_written_as_eml_files,
    the_built_in_reset_page_is_locked_down,
    a_backlog_is_fair_per_address_and_one_address_gets_one_mail,
];

async fn create(app: &TestApp, email: &str, locale: &str, firstname: &str) {
    let res = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": email, "firstname": firstname, "lastname": "Lee", "password": PASSWORD, "locale": locale}}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
}

async fn a_customer_resets_a_forgotten_password_through_the_emailed_link(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "Ann@Example.com", "en", "Ann").await;
    let session = app.sign_in("ann@example.com", PASSWORD).await;

    let res = app.request_reset("  ANN@example.com ").await;
    assert_eq!(res, json!({"data": {"requestPasswordReset": true}}));
    let mail = smtp.wait_for(1).await.remove(0);
    // To the address stored on the account, not the string submitted.
    assert_eq!(mail.to, vec!["Ann@Example.com"]);
    assert_eq!(mail.header_to(), "Ann@Example.com");
    assert!(
        mail.subject().contains("Reset your Test Store password"),
        "{}",
        mail.subject()
    );
    let link = mail.link();
    assert!(
        link.starts_with(&format!(
            "http://{}/account/reset-password?token=",
            app.config.listen
        )),
        "{link}"
    );
    assert!(mail.html().contains("Reset Password"));
    assert!(mail.text().contains("24 hours"));

    let res = app.reset_password(&mail.token(), "brand-New-pw7").await;
    assert_eq!(
        res,
        json!({"data": {"resetPassword": true}}),
        "no token or session is returned"
    );
    assert_eq!(app.whoami(&session).await, Err("UNAUTHENTICATED".into()));
    assert_eq!(
        code(&app.sign_in_response("ann@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    app.sign_in("ann@example.com", "brand-New-pw7").await;

    let notice = smtp.wait_for(2).await.remove(1);
    assert_eq!(notice.to, vec!["Ann@Example.com"]);
    assert!(
        notice.subject().contains("password was changed"),
        "{}",
        notice.subject()
    );
    // No reset link in it: only the "this wasn't me" link (reports.rs).
    assert!(!notice.text().contains("reset-password?token="));
    assert!(notice.report_token().is_some());
    assert!(!notice.text().contains("brand-New-pw7"));
}

async fn known_and_unknown_addresses_get_identical_answers_and_only_real_accounts_get_mail(
    backend: Backend,
) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    // Counted per address only, so both first requests from this one client are accepted.
    app.set_settings("reset_request_limit_method = 'BY_EMAIL'")
        .await;
    create(&app, "known@example.com", "en", "Ann").await;
    let send = |email: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(json!({"query": "mutation($e: String!) { requestPasswordReset(email: $e) }", "variables": {"e": email}}).to_string())
            .send()
    };
    let known = send("known@example.com").await.unwrap();
    let unknown = send("unknown@example.com").await.unwrap();
    assert_eq!(known.status(), unknown.status());
    let strip = |h: &reqwest::header::HeaderMap| {
        let mut names: Vec<String> = h
            .iter()
            .filter(|(k, _)| !["date", "x-request-id"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(strip(known.headers()), strip(unknown.headers()));
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    let mails = smtp.settled(&app).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["known@example.com"]);
    // Malformed addresses are the caller's mistake, whoever asks.
    let res = app.request_reset("not-an-address").await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    // Two addresses at once is a type error, not two mails (GitLab CVE-2023-7028).
    let res = app
        .gql(
            "mutation($e: String!) { requestPasswordReset(email: $e) }",
            json!({"e": ["known@example.com", "attacker@example.com"]}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    // A look-alike with a dotless i is another address: no mail to anyone.
    app.clock.advance(Duration::minutes(10));
    app.request_reset("knOwn@example.com").await;
    app.request_reset("kn\u{131}own@example.com").await;
    let mails = smtp.settled(&app).await;
    assert_eq!(
        mails.len(),
        2,
        "the case variant reaches the stored address only"
    );
    assert!(mails.iter().all(|m| m.to == vec!["known@example.com"]));
}

async fn requesting_a_reset_changes_nothing_until_the_link_is_used(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "calm@example.com", "en", "Ann").await;
    let session = app.sign_in("calm@example.com", PASSWORD).await;
    app.request_reset("calm@example.com").await;
    smtp.wait_for(1).await;
    assert!(app.whoami(&session).await.is_ok());
    app.sign_in("calm@example.com", PASSWORD).await;
}

async fn a_link_works_once_even_when_used_concurrently(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "race@example.com", "en", "Ann").await;
    app.request_reset("race@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    let passwords: Vec<String> = (0..16).map(|i| format!("winner-Pw-{i:02}")).collect();
    let results = join_all(passwords.iter().map(|p| app.reset_password(&token, p))).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r["data"]["resetPassword"] == true)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    // A loser found the link spent, or (past the client's budget of 10 invalid links per 15
    // minutes) was refused before looking: never anything else.
    let losers: Vec<&str> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != winners[0])
        .map(|(_, r)| code(r))
        .collect();
    assert!(
        losers
            .iter()
            .all(|c| ["RESET_TOKEN_INVALID", "RATE_LIMITED"].contains(c)),
        "{results:?}"
    );
    // The password is the winner's, and the link is spent: once the budget is back, it says so.
    app.sign_in("race@example.com", &passwords[winners[0]])
        .await;
    app.clock.advance(chrono::Duration::minutes(16));
    let again = app.reset_password(&token, "another-Pw-99").await;
    assert_eq!(code(&again), "RESET_TOKEN_INVALID", "{again}");
}

async fn links_expire_after_the_configured_lifetime(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    create(&app, "early@example.com", "en", "Ann").await;
    create(&app, "late@example.com", "en", "Ann").await;
    app.request_reset("early@example.com").await;
    app.request_reset("late@example.com").await;
    let mails = smtp.wait_for(2).await;
    let token_of = |to: &str| mails.iter().find(|m| m.to == vec![to]).unwrap().token();
    app.clock
        .advance(Duration::hours(24) - Duration::seconds(1));
    let res = app
        .reset_password(&token_of("early@example.com"), "fresh-Pw-11")
        .await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    app.clock.advance(Duration::seconds(2));
    let res = app
        .reset_password(&token_of("late@example.com"), "fresh-Pw-11")
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_EXPIRED");
    app.sign_in("late@example.com", PASSWORD).await;

    // A shorter lifetime from the settings applies to new links.
    app.set_settings("reset_link_lifetime_hours = 1").await;
    app.request_reset("late@example.com").await;
    // Mail order is not guaranteed (the worker sends several at once): pick the new link.
    let first_late = token_of("late@example.com");
    let token = smtp
        .wait_for(4)
        .await
        .iter()
        .filter(|m| m.to == vec!["late@example.com"] && m.text().contains("token="))
        .map(|m| m.token())
        .find(|t| *t != first_late)
        .unwrap();
    app.clock.advance(Duration::minutes(61));
    assert_eq!(
        code(&app.reset_password(&token, "fresh-Pw-11").await),
        "RESET_TOKEN_EXPIRED"
    );
}

async fn a_newer_request_supersedes_older_links(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    create(&app, "twice@example.com", "en", "Ann").await;
    app.request_reset("twice@example.com").await;
    let first = smtp.wait_for(1).await[0].token();
    // Within a minute of a live link a request mails nothing (the link just sent works).
    app.clock.advance(chrono::Duration::seconds(61));
    app.request_reset("twice@example.com").await;
    let second = smtp.wait_for(2).await[1].token();
    assert_ne!(first, second);
    assert_eq!(
        code(&app.reset_password(&first, "fresh-Pw-11").await),
        "RESET_TOKEN_INVALID"
    );
    assert_eq!(
        app.reset_password(&second, "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
}

async fn a_password_change_voids_outstanding_links(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "void@example.com", "en", "Ann").await;
    app.request_reset("void@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    let session = app.sign_in("void@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&session),
            "mutation { changeCustomerPassword(currentPassword: \"kx7!qzmw\", newPassword: \"changed-Pw-5\") { email } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    assert_eq!(
        code(&app.reset_password(&token, "fresh-Pw-11").await),
        "RESET_TOKEN_INVALID"
    );
    // Changing the password while signed in also sends the notice.
    let mails = smtp.wait_for(2).await;
    assert!(mails[1].subject().contains("password was changed"));
}

async fn a_reset_clears_lockout_and_signs_out_every_device(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "locked@example.com", "en", "Ann").await;
    let devices = [
        app.sign_in("locked@example.com", PASSWORD).await,
        app.sign_in("locked@example.com", PASSWORD).await,
    ];
    for _ in 0..10 {
        app.sign_in_response("locked@example.com", "wrong-guess")
            .await;
    }
    assert_eq!(
        code(&app.sign_in_response("locked@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    // Lockout does not block the reset path (the mail about the wrong passwords came first).
    let warned = smtp
        .wait_for_mail("locked@example.com", "/account/unlock?token=")
        .await;
    assert!(
        warned.subject().contains("Wrong passwords"),
        "{}",
        warned.subject()
    );
    app.request_reset("locked@example.com").await;
    let token = smtp
        .wait_for_mail("locked@example.com", "/account/reset-password?token=")
        .await
        .token();
    assert_eq!(
        app.reset_password(&token, "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
    for device in &devices {
        assert_eq!(app.whoami(device).await, Err("UNAUTHENTICATED".into()));
    }
    app.sign_in("locked@example.com", "fresh-Pw-11").await;
}

async fn a_policy_failure_leaves_the_link_usable(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "policy@example.com", "en", "Ann").await;
    app.request_reset("policy@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    for weak in ["short", "has a space", "password123", "policy-2026"] {
        let res = app.reset_password(&token, weak).await;
        assert_eq!(code(&res), "PASSWORD_POLICY", "{weak}");
        assert!(
            res["errors"][0]["extensions"]["violations"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        );
    }
    assert_eq!(
        app.reset_password(&token, "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
}

async fn an_email_given_with_the_token_must_match_it(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "victim@example.com", "en", "Ann").await;
    create(&app, "attacker@example.com", "en", "Bob").await;
    app.request_reset("attacker@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    let query = "mutation($e: String, $t: String!, $p: String!) { resetPassword(email: $e, resetPasswordToken: $t, newPassword: $p) }";
    let res = app
        .gql(
            query,
            json!({"e": "victim@example.com", "t": token, "p": "fresh-Pw-11"}),
        )
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID");
    app.sign_in("victim@example.com", PASSWORD).await;
    app.sign_in("attacker@example.com", PASSWORD).await;
    let res = app
        .gql(
            query,
            json!({"e": "ATTACKER@example.com", "t": token, "p": "fresh-Pw-11"}),
        )
        .await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    app.sign_in("victim@example.com", PASSWORD).await;
}

async fn bad_tokens_are_refused_and_guessing_is_throttled_per_ip(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "guess@example.com", "en", "Ann").await;
    app.request_reset("guess@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    let bad = [
        "garbage".to_owned(),
        "a".repeat(43),
        "a".repeat(5000),
        format!("{}\u{0}", &token[..42]),
        "' OR 1=1--".to_owned(),
        token.to_uppercase(),
        // An access token is not a reset token.
        app.sign_in("guess@example.com", PASSWORD).await,
    ];
    for b in &bad {
        let res = app.reset_password(b, "fresh-Pw-11").await;
        assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{b:?}");
        assert!(!res.to_string().contains("guess@example.com"));
    }
    // Three more in one request, as aliases: each counts.
    let aliases: String = (0..3)
        .map(|i| {
            format!(
                "a{i}: resetPassword(resetPasswordToken: \"{}\", newPassword: \"fresh-Pw-11\") ",
                "b".repeat(43)
            )
        })
        .collect();
    let res = app
        .gql(&format!("mutation {{ {aliases} }}"), json!({}))
        .await;
    assert_eq!(res["errors"].as_array().unwrap().len(), 3);
    // Ten invalid attempts from this IP: even the right token must wait now.
    let res = app.reset_password(&token, "fresh-Pw-11").await;
    assert_eq!(code(&res), "RATE_LIMITED");
    let retry = res["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    app.clock.advance(Duration::minutes(15));
    assert_eq!(
        app.reset_password(&token, "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
}

async fn reset_requests_are_limited_per_email_and_ip_alike_for_unknown_addresses(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "limit@example.com", "en", "Ann").await;
    // Defaults: by IP and email, 5 per hour, 10 minutes apart.
    assert_eq!(
        app.request_reset("limit@example.com").await["data"]["requestPasswordReset"],
        true
    );
    // Mailed before anything else is asked for this address (a later request resolved with
    // it would take its place: one mail for the newest).
    smtp.wait_for(1).await;
    let known = app.request_reset("LIMIT@example.com").await;
    assert_eq!(code(&known), "RATE_LIMITED");
    assert_eq!(known["errors"][0]["extensions"]["retryAfterSeconds"], 600);
    // The IP is counted too: another address from the same client waits as well, and an
    // unknown address gets exactly what a known one gets.
    let unknown = app.request_reset("nobody@example.com").await;
    assert_eq!(known, unknown);
    app.clock.advance(Duration::minutes(10));
    assert_eq!(
        app.request_reset("nobody@example.com").await["data"]["requestPasswordReset"],
        true
    );

    // Hourly cap, by email only, no spacing.
    app.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 3, min_seconds_between_reset_requests = 0").await;
    app.clock.advance(Duration::hours(2));
    for sent in 2..5 {
        if sent > 2 {
            // A link request within a minute of a live link mails nothing.
            app.clock.advance(Duration::seconds(61));
        }
        assert_eq!(
            app.request_reset("limit@example.com").await["data"]["requestPasswordReset"],
            true
        );
        // Each mailed before the next is asked for (requests for one address waiting
        // together would coalesce into one mail).
        smtp.wait_for(sent).await;
    }
    let res = app.request_reset("limit@example.com").await;
    assert_eq!(code(&res), "RATE_LIMITED");
    // The first of the three, 122 s ago, leaves the window in an hour less 122 s.
    assert_eq!(
        res["errors"][0]["extensions"]["retryAfterSeconds"],
        3600 - 122
    );
    assert_eq!(
        smtp.settled(&app).await.len(),
        4,
        "refused requests send nothing"
    );
    app.clock.advance(Duration::hours(1));
    assert_eq!(
        app.request_reset("limit@example.com").await["data"]["requestPasswordReset"],
        true
    );
}

async fn concurrent_requests_under_a_limit_of_k_accept_exactly_k(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "burst@example.com", "en", "Ann").await;
    app.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 3, min_seconds_between_reset_requests = 0").await;
    let results = join_all((0..24).map(|_| app.request_reset("burst@example.com"))).await;
    let accepted = results
        .iter()
        .filter(|r| r["data"]["requestPasswordReset"] == true)
        .count();
    let limited = results
        .iter()
        .filter(|r| r["errors"][0]["extensions"]["code"] == "RATE_LIMITED")
        .count();
    assert_eq!((accepted, limited), (3, 21), "{results:?}");
    // Requests for one address waiting together coalesce: one to three mails.
    smtp.wait_for(1).await;
    let mails = smtp.settled(&app).await;
    assert!((1..=3).contains(&mails.len()), "{}", mails.len());
    // Only the newest link works.
    let tokens: Vec<String> = mails.iter().map(|m| m.token()).collect();
    let valid = join_all(tokens.iter().map(|t| app.reset_password(t, "fresh-Pw-11"))).await;
    assert_eq!(
        valid
            .iter()
            .filter(|r| r["data"]["resetPassword"] == true)
            .count(),
        1
    );
}

/// The request path does the same work for every address: the same statements and the same
/// rows (a recorded request and its limit events), and nothing that depends on the account. To
/// see the request path alone, the server's router runs on its own, without the mail worker;
/// the worker then resolves the requests: a token and a mail for the account, nothing for the
/// unknown address.
async fn a_request_writes_the_same_rows_whether_or_not_the_address_has_an_account(
    backend: Backend,
) {
    let (mut app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "known@example.com", "en", "Ann").await;
    app.set_settings("reset_request_limit_method = 'BY_IP_AND_EMAIL', max_reset_requests_per_hour = 10, min_seconds_between_reset_requests = 0").await;
    let server = without_workers(&mut app).await;
    let (addr, statements, db) = (server.addr, server.statements.clone(), server.db.clone());
    let tables = [
        "reset_requests",
        "limit_events",
        "password_reset_tokens",
        "email_outbox",
        "audit_log",
    ];
    let snapshot = || {
        let db = db.clone();
        async move {
            use sea_orm::ConnectionTrait;
            let mut counts = Vec::new();
            for table in tables {
                let row = db
                    .query_one_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        format!("SELECT COUNT(*) AS n FROM {table}"),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                counts.push(row.try_get::<i64>("", "n").unwrap());
            }
            counts
        }
    };
    let request = |email: &'static str| ask_reset(addr, email);
    let mut deltas = Vec::new();
    let mut answers = Vec::new();
    for email in ["known@example.com", "unknown@example.com"] {
        let (rows, ran) = (
            snapshot().await,
            statements.load(std::sync::atomic::Ordering::SeqCst),
        );
        answers.push(request(email).await);
        let ran = statements.load(std::sync::atomic::Ordering::SeqCst) - ran;
        let after = snapshot().await;
        let rows: Vec<i64> = after.iter().zip(&rows).map(|(a, b)| a - b).collect();
        deltas.push((rows, ran));
    }
    assert_eq!(answers[0], answers[1], "the same answer, byte for byte");
    assert_eq!(
        deltas[0], deltas[1],
        "the same rows ({tables:?}) and statements for a known and an unknown address"
    );
    assert_eq!(
        deltas[0].0,
        vec![1, 2, 0, 0, 0],
        "each request is recorded with its two limit events, and nothing else"
    );
    // No worker runs in this server: nothing can be on its way.
    assert!(smtp.messages().is_empty(), "no mail before the worker runs");

    // The worker resolves both: one token and one mail, for the account only.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    assert_eq!(server.mail.drain(&stopped).await.unwrap(), 1);
    let after = snapshot().await;
    assert_eq!(after[0], 0, "both requests resolved");
    assert_eq!(after[2], 1, "one token, for the account");
    let mail = smtp.wait_for(1).await;
    assert_eq!(mail[0].to, vec!["known@example.com".to_owned()]);
    assert_eq!(smtp.messages().len(), 1, "the drain sent exactly one");
    server.serving.abort();
    // The link in the mail works.
    app.start().await;
    assert_eq!(
        app.reset_password(&mail[0].token(), "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
}

/// Group commit keeps limits exact: concurrent requests on two servers of one database, for
/// different addresses from one client, get exactly the client's hourly budget between them.
async fn concurrent_requests_on_two_replicas_share_one_limit_exactly(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let replica = app.replica().await;
    for i in 0..8 {
        create(&app, &format!("r{i}@example.com"), "en", "Ann").await;
    }
    app.set_settings("reset_request_limit_method = 'BY_IP', max_reset_requests_per_hour = 7, min_seconds_between_reset_requests = 0").await;
    let results = join_all((0..40).map(|i| {
        let target = if i % 2 == 0 { &app } else { &replica };
        // Half the addresses have an account.
        let email = if i % 4 < 2 {
            format!("r{}@example.com", i % 8)
        } else {
            format!("nobody{i}@example.com")
        };
        async move { target.request_reset(&email).await }
    }))
    .await;
    let accepted = results
        .iter()
        .filter(|r| r["data"]["requestPasswordReset"] == true)
        .count();
    let limited = results
        .iter()
        .filter(|r| r["errors"][0]["extensions"]["code"] == "RATE_LIMITED")
        .count();
    assert_eq!((accepted, limited), (7, 33), "{results:?}");
    // Every address with an account and an accepted request is mailed (the answers come in
    // request order, and requests `i % 4 < 2` were for addresses with an account); requests
    // for one address that waited together coalesce, so at most one mail per request.
    let for_accounts = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 4 < 2 && r["data"]["requestPasswordReset"] == true)
        .count();
    let addresses: std::collections::HashSet<String> = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 4 < 2 && r["data"]["requestPasswordReset"] == true)
        .map(|(i, _)| format!("r{}@example.com", i % 8))
        .collect();
    smtp.wait_for(addresses.len()).await;
    let started = std::time::Instant::now();
    while app.count("reset_requests").await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "requests left unresolved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let tokens = app.count("password_reset_tokens").await as usize;
    let mails = smtp.settled(&app).await;
    let mailed: std::collections::HashSet<String> = mails.iter().map(|m| m.to[0].clone()).collect();
    assert_eq!(mailed, addresses);
    assert!(
        mails.len() <= tokens && tokens <= for_accounts,
        "{} {tokens} {for_accounts}",
        mails.len()
    );
}

async fn aliased_requests_each_count_against_the_limit(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "alias@example.com", "en", "Ann").await;
    app.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 3, min_seconds_between_reset_requests = 0").await;
    let aliases: String = (0..5)
        .map(|i| format!("a{i}: requestPasswordReset(email: \"alias@example.com\") "))
        .collect();
    let res = app
        .gql(&format!("mutation {{ {aliases} }}"), json!({}))
        .await;
    let accepted = (0..5)
        .filter(|i| res["data"][format!("a{i}")] == true)
        .count();
    assert_eq!(accepted, 3, "{res}");
    assert_eq!(res["errors"].as_array().unwrap().len(), 2);
    // The three accepted requests waited together: they coalesce into one to three mails.
    smtp.wait_for(1).await;
    assert!((1..=3).contains(&smtp.settled(&app).await.len()));
}

async fn redirect_urls_must_be_on_the_allow_list(backend: Backend) {
    let smtp = SmtpReceiver::start().await;
    let url = smtp.url();
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(Secret::new(url));
        c.reset_url_allowlist = vec!["https://shop.example".into()];
    })
    .await;
    app.without_reset_limits().await;
    create(&app, "redirect@example.com", "en", "Ann").await;
    let query =
        "mutation($e: String!, $r: String) { requestPasswordReset(email: $e, redirectUrl: $r) }";
    for bad in [
        "https://shop.example.evil.com/reset",
        "https://evil.example/reset",
        "javascript:alert(1)",
    ] {
        let res = app
            .gql(query, json!({"e": "redirect@example.com", "r": bad}))
            .await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{bad}");
        assert_eq!(res["errors"][0]["extensions"]["field"], "redirectUrl");
    }
    assert!(
        smtp.settled(&app).await.is_empty(),
        "no mail for a refused redirect"
    );
    let res = app
        .gql(
            query,
            json!({"e": "redirect@example.com", "r": "https://shop.example/account/reset?lang=en"}),
        )
        .await;
    assert_eq!(res["data"]["requestPasswordReset"], true);
    let link = smtp.wait_for(1).await[0].link();
    assert!(
        link.starts_with("https://shop.example/account/reset?lang=en&token="),
        "{link}"
    );
    // Without an allow-list, any redirectUrl is refused.
    let (strict, _smtp) = TestApp::with_smtp(backend).await;
    let res = strict
        .gql(
            query,
            json!({"e": "redirect@example.com", "r": "https://shop.example/reset"}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
}

async fn links_never_come_from_the_host_header(backend: Backend) {
    let smtp = SmtpReceiver::start().await;
    let url = smtp.url();
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(Secret::new(url));
        c.storefront_reset_url = Some("https://shop.example/reset-password?token={token}".into());
    })
    .await;
    create(&app, "host@example.com", "en", "Ann").await;
    app.client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .header("origin", "https://evil.example")
        .body(
            json!({"query": "mutation { requestPasswordReset(email: \"host@example.com\") }"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let link = smtp.wait_for(1).await[0].link();
    assert!(
        link.starts_with("https://shop.example/reset-password?token="),
        "{link}"
    );
    assert!(!smtp.messages()[0].html().contains("evil"));
}

async fn mail_sent_while_smtp_is_down_arrives_once_it_is_back(backend: Backend) {
    // Reserve a port, then leave it closed: SMTP is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("smtp://{port}");
    let app = TestApp::spawn_with(backend, |c| c.smtp_url = Some(Secret::new(url))).await;
    create(&app, "down@example.com", "en", "Ann").await;
    let res = app.request_reset("down@example.com").await;
    assert_eq!(
        res["data"]["requestPasswordReset"], true,
        "SMTP trouble never reaches the caller"
    );
    // The first attempt failed (SMTP is down) before the receiver comes up.
    let started = std::time::Instant::now();
    while app
        .scalar("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) AS n FROM email_outbox")
        .await
        < 1
    {
        assert!(started.elapsed() < StdDuration::from_secs(20), "no attempt");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let smtp = SmtpReceiver::start_on(port).await;
    // Let the backoff elapse on the server's clock.
    for _ in 0..4 {
        app.clock.advance(Duration::seconds(10));
        tokio::time::sleep(StdDuration::from_millis(600)).await;
        if !smtp.messages().is_empty() {
            break;
        }
    }
    let mails = smtp.wait_for(1).await;
    assert_eq!(smtp.settled(&app).await.len(), 1, "sent once");
    let res = app.reset_password(&mails[0].token(), "fresh-Pw-11").await;
    assert_eq!(res["data"]["resetPassword"], true, "the delayed link works");
}

async fn mail_queued_when_the_server_stops_is_sent_once_after_restart(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("smtp://{port}");
    let mut app = TestApp::spawn_with(backend, |c| c.smtp_url = Some(Secret::new(url))).await;
    create(&app, "restart@example.com", "en", "Ann").await;
    app.request_reset("restart@example.com").await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    app.stop().await;
    let smtp = SmtpReceiver::start().await;
    app.config.smtp_url = Some(Secret::new(smtp.url()));
    app.clock.advance(Duration::minutes(5));
    app.start().await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(smtp.settled(&app).await.len(), 1);
    assert_eq!(
        app.reset_password(&mails[0].token(), "fresh-Pw-11").await["data"]["resetPassword"],
        true
    );
}

async fn the_token_is_stored_only_hashed_and_the_link_is_scrubbed_after_sending(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let (app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "hash@example.com", "en", "Ann").await;
    app.request_reset("hash@example.com").await;
    let token = smtp.wait_for(1).await[0].token();
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let rows = |sql: &'static str, columns: &'static [&'static str]| {
        let db = app.db.clone();
        async move {
            let mut out = Vec::new();
            for row in db
                .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
            {
                for c in columns {
                    out.push(
                        row.try_get::<Option<String>>("", c)
                            .unwrap()
                            .unwrap_or_default(),
                    );
                }
            }
            out
        }
    };
    let hashes = rows(
        "SELECT token_hash FROM password_reset_tokens",
        &["token_hash"],
    )
    .await;
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0].len(), 64);
    assert_ne!(hashes[0], token);
    let outbox = rows("SELECT link, status FROM email_outbox", &["link", "status"]).await;
    assert_eq!(
        outbox,
        vec![String::new(), "sent".to_owned()],
        "the link is scrubbed once sent"
    );
    let logs = crate::helpers::logs();
    assert!(!logs.contains(&token), "the token never reaches the logs");
}

async fn mail_is_in_the_customers_language_and_names_cannot_inject_markup(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    create(&app, "tanaka@example.jp", "ja", "太郎").await;
    create(&app, "kim@example.kr", "ko", "민준").await;
    create(
        &app,
        "markup@example.com",
        "en",
        "<img src=x onerror=alert(1)>",
    )
    .await;
    for email in ["tanaka@example.jp", "kim@example.kr", "markup@example.com"] {
        app.request_reset(email).await;
    }
    let mails = smtp.wait_for(3).await;
    let by = |to: &str| mails.iter().find(|m| m.to == vec![to]).unwrap().clone();
    let ja = by("tanaka@example.jp");
    assert!(ja.subject().contains("パスワード"), "{}", ja.subject());
    assert!(
        ja.link().ends_with("&lang=ja"),
        "the page opens in Japanese: {}",
        ja.link()
    );
    assert!(ja.text().contains("Lee 太郎 様"));
    assert!(ja.html().contains("パスワードのリセット"));
    let ko = by("kim@example.kr");
    assert!(ko.subject().contains("비밀번호"), "{}", ko.subject());
    let markup = by("markup@example.com");
    assert!(!markup.html().contains("<img"), "{}", markup.html());
    assert!(markup.html().contains("&lt;img"));
}

async fn without_smtp_mail_is_written_as_eml_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    create(&app, "files@example.com", "en", "Ann").await;
    app.request_reset("files@example.com").await;
    let dir = app.config.mail_dir.clone();
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read(&files[0]).unwrap();
    let message = crate::smtp::Received { to: vec![], raw };
    assert!(message.link().contains("/account/reset-password?token="));
    assert_eq!(message.header_to(), "files@example.com");
}

async fn the_built_in_reset_page_is_locked_down(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Every page of the storefront and the admin console: strict CSP, no inline script or
    // style, nothing from another origin, never cached.
    for path in [
        "/",
        "/account/reset-password?token=abc",
        "/account/sign-in",
        "/account/forgot-password",
        "/account",
        "/account/confirm-email?token=abc",
        "/account/cancel-email-change?token=abc",
        "/account/release-account?token=abc",
        "/admin/sign-in",
        "/admin/customers",
        "/admin/customers/00000000-0000-0000-0000-000000000000",
        "/admin/settings",
        "/admin/audit-log",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        let html = res.text().await.unwrap();
        assert_eq!(
            html.matches("<script").count(),
            1,
            "{path}: one script, not inline"
        );
        assert!(
            html.contains("<script type=\"module\" src=\"/ui/"),
            "{path}"
        );
        assert!(!html.contains(" style="), "{path}: no inline style");
        let handler = html.split(" on").skip(1).any(|rest| {
            let name = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            name.len() < rest.len() && name.starts_with('=')
        });
        assert!(!handler, "{path}: no inline event handlers");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{path}: no third-party assets"
        );
    }
    let html = app
        .client
        .get(app.url("/account/reset-password?token=abc"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("New Password") && html.contains("Reset Password"));
    let js = app
        .client
        .get(app.url("/ui/storefront.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let js = js.text().await.unwrap();
    assert!(js.contains("resetPassword"));
    assert!(
        js.contains("replaceState"),
        "the token leaves the address bar"
    );
    let missing = app.client.get(app.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// A backlog (requests recorded while no worker ran: a flood, a worker down) is resolved fairly
/// per address, and the requests for one address coalesce: one mail, with the newest
/// request's link, however many piled up; a fresh request waits behind other addresses, not
/// behind the pile.
async fn a_backlog_is_fair_per_address_and_one_address_gets_one_mail(backend: Backend) {
    let (mut app, smtp) = TestApp::with_smtp(backend).await;
    create(&app, "piled@example.com", "en", "Ann").await;
    create(&app, "fresh@example.com", "en", "Bo").await;
    app.without_reset_limits().await;
    let server = without_workers(&mut app).await;
    let request = |email: String| async move {
        let res: serde_json::Value =
            serde_json::from_str(&ask_reset(server.addr, &email).await).unwrap();
        assert_eq!(res["data"]["requestPasswordReset"], true, "{res}");
    };
    // 40 for one address (and 2 for an unknown one among them), then one fresh request.
    for i in 0..40 {
        request("piled@example.com".into()).await;
        if i % 20 == 0 {
            request("nobody@example.com".into()).await;
        }
    }
    request("fresh@example.com".into()).await;
    let scalar = |sql: String| {
        let db = server.db.clone();
        async move {
            use sea_orm::ConnectionTrait;
            db.query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        }
    };
    let requests = || scalar("SELECT COUNT(*) AS n FROM reset_requests".into());
    assert_eq!(requests().await, 43);

    // Rounds of the two longest-waiting requests' addresses: the pile and the unknown address
    // go in the first round, whole, and the fresh request in the second, instead of waiting
    // out twenty rounds of the pile.
    for _ in 0..2 {
        server
            .mail
            .resets
            .resolve_reset_requests(domain::clock::Clock::now(app.clock.as_ref()), 2)
            .await
            .unwrap();
    }
    assert_eq!(requests().await, 0, "two rounds took it all");
    let tokens = |email: &str| {
        scalar(format!(
            "SELECT COUNT(*) AS n FROM password_reset_tokens t JOIN customers c ON c.id = t.customer_id WHERE c.email = '{email}'"
        ))
    };
    assert_eq!(tokens("fresh@example.com").await, 1);
    assert_eq!(
        tokens("piled@example.com").await,
        1,
        "one token for the pile, not 40"
    );

    let (_stop, stopped) = tokio::sync::watch::channel(false);
    server.mail.drain(&stopped).await.unwrap();
    let mails = smtp.wait_for(2).await;
    let piled: Vec<_> = mails
        .iter()
        .filter(|m| m.to == vec!["piled@example.com".to_owned()])
        .collect();
    assert_eq!(piled.len(), 1, "40 requests for one address: one mail");
    server.serving.abort();
    app.start().await;
    assert_eq!(
        app.reset_password(&piled[0].token(), "fresh-Pw-11").await["data"]["resetPassword"],
        true,
        "its link is the newest, and works"
    );
    assert_eq!(
        smtp.settled(&app).await.len(),
        3,
        "and the password-changed notice"
    );
}

/// `app`'s server with its HTTP side only (`app` stopped first): no worker runs, so what the
/// requests record stays as recorded until the test resolves or drains it itself.
struct WithoutWorkers {
    addr: std::net::SocketAddr,
    serving: tokio::task::AbortHandle,
    mail: latchkey::mail::MailWorker,
    statements: std::sync::Arc<std::sync::atomic::AtomicU64>,
    db: sea_orm::DatabaseConnection,
}

async fn without_workers(app: &mut TestApp) -> WithoutWorkers {
    app.stop().await;
    let server = latchkey::build(&app.config, app.clock.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(latchkey::listener::serve(
        listener,
        server.router,
        server.connections,
        std::future::pending(),
    ))
    .abort_handle();
    WithoutWorkers {
        addr,
        serving,
        mail: server.mail,
        statements: server.statements,
        db: server.db,
    }
}

/// `requestPasswordReset(email)` on its own connection: the answer's body as sent.
async fn ask_reset(addr: std::net::SocketAddr, email: &str) -> String {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": "mutation($e: String!) { requestPasswordReset(email: $e) }", "variables": {"e": email}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
