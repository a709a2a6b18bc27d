//! Faults of the parts around the server: the database going away under load.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use latchkey::config::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{Backend, PASSWORD, TestApp, postgres_url},
    process::ServerProcess,
    proxy::TcpProxy,
    smtp::SmtpReceiver,
};

crate::tests![
    postgres_restart_under_load_fails_clearly_then_recovers_by_itself,
    postgres_soak_three_replicas_one_killed_and_restarted_no_mail_lost_or_doubled,
];

/// Phase at start, phase at end, outcome (email or error code), latency.
type Observation = (u8, u8, Result<String, String>, Duration);

// Phases; a request is judged only if it started and ended in the same one.
const UP: u8 = 0;
const CUTTING: u8 = 1;
const DOWN: u8 = 2;
const RESTORING: u8 = 3;
const BACK: u8 = 4;

/// The test database's address, and its URL rewritten to go through `proxy`.
fn through(proxy: Option<&TcpProxy>) -> (SocketAddr, String) {
    let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
    let parsed = reqwest::Url::parse(&url).expect("a URL");
    let host = parsed
        .host_str()
        .unwrap_or("127.0.0.1")
        .replace("localhost", "127.0.0.1");
    let target: SocketAddr = format!("{host}:{}", parsed.port().unwrap_or(5432))
        .parse()
        .expect("an IP address in LATCHKEY_TEST_POSTGRES_URL");
    let mut rewritten = parsed.clone();
    if let Some(proxy) = proxy {
        rewritten.set_host(Some("127.0.0.1")).unwrap();
        rewritten.set_port(Some(proxy.addr.port())).unwrap();
    }
    (target, rewritten.to_string())
}

async fn postgres_restart_under_load_fails_clearly_then_recovers_by_itself(backend: Backend) {
    let (target, _) = through(None);
    let proxy = TcpProxy::start(target).await;
    let (_, proxied) = through(Some(&proxy));
    let smtp = SmtpReceiver::start().await;
    let smtp_url = smtp.url();
    let app = Arc::new(
        TestApp::spawn_with(backend, |c| {
            c.database_url = proxied;
            c.smtp_url = Some(Secret::new(smtp_url));
        })
        .await,
    );
    app.create_customer("steady@example.com", PASSWORD).await;
    let token = app.sign_in("steady@example.com", PASSWORD).await;

    // Eight clients ask "who am I" without pause, noting the phase at start and end.
    let phase = Arc::new(AtomicU8::new(UP));
    let seen: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, token, phase, seen) =
                (app.clone(), token.clone(), phase.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let start = phase.load(Ordering::SeqCst);
                    let t0 = Instant::now();
                    let result = app.whoami(&token).await;
                    let end = phase.load(Ordering::SeqCst);
                    seen.lock()
                        .unwrap()
                        .push((start, end, result, t0.elapsed()));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The database goes away: open connections drop, new ones are refused.
    phase.store(CUTTING, Ordering::SeqCst);
    proxy.cut();
    phase.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz tells the load balancer"
    );
    let res = app
        .gql_as(Some(&token), "{ customer { email } }", json!({}))
        .await;
    assert_eq!(
        res["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{res}"
    );
    let text = res.to_string().to_lowercase();
    for leak in ["sqlx", "postgres", "connection", "refused", "5432", "pool"] {
        assert!(!text.contains(leak), "the error names {leak:?}: {res}");
    }
    // Sign-in fails the same clear way, and nothing is half-done.
    let res = app.sign_in_response("steady@example.com", PASSWORD).await;
    assert_eq!(
        res["errors"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{res}"
    );

    // It comes back; the server recovers without a restart.
    phase.store(RESTORING, Ordering::SeqCst);
    proxy.restore();
    let started = Instant::now();
    loop {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phase.store(BACK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in &clients {
        c.abort();
    }

    let seen = seen.lock().unwrap().clone();
    let count = |p: u8| {
        seen.iter()
            .filter(|(s, e, _, _)| *s == p && *e == p)
            .count()
    };
    assert!(
        count(UP) > 0 && count(DOWN) > 0 && count(BACK) > 0,
        "each phase saw requests"
    );
    assert!(
        seen.iter().any(|(s, e, r, _)| (*s, *e) == (DOWN, DOWN)
            && r.as_ref().err().map(String::as_str) == Some("INTERNAL_SERVER_ERROR")),
        "once the lease ended, the outage was answered with the clear error"
    );
    for (start, end, result, elapsed) in &seen {
        assert!(
            *elapsed < Duration::from_secs(8),
            "a request hung for {elapsed:?} (phase {start}→{end})"
        );
        match (start, end) {
            (&UP, &UP) | (&BACK, &BACK) => {
                assert_eq!(result.as_deref(), Ok("steady@example.com"), "phase {start}")
            }
            // Answered from the session cache while its lease runs (nothing can be revoked
            // behind this server's back: a revocation elsewhere waits for the lease to end),
            // then the clear error.
            (&DOWN, &DOWN) => assert!(
                matches!(
                    result.as_deref().map_err(String::as_str),
                    Ok("steady@example.com") | Err("INTERNAL_SERVER_ERROR")
                ),
                "{result:?}"
            ),
            _ => {} // straddled a change
        }
    }
    // The token still works, sign-in works, and the mail worker survived the outage.
    assert_eq!(
        app.whoami(&token).await.as_deref(),
        Ok("steady@example.com")
    );
    app.sign_in("steady@example.com", PASSWORD).await;
    let res = app.request_reset("steady@example.com").await;
    assert_eq!(res["data"]["requestPasswordReset"], true, "{res}");
    let mail = smtp.wait_for(1).await;
    assert_eq!(mail[0].to, vec!["steady@example.com".to_owned()]);
}

/// What the soak's clients saw.
#[derive(Default)]
struct Tally {
    requests: u64,
    /// Known-address resets answered `true`: each must produce exactly one mail.
    accepted: u64,
    /// Known-address resets whose answer was lost (the replica died mid-request): each may or
    /// may not have committed.
    unanswered: u64,
    /// Transport failures, by replica index.
    unreachable: Vec<usize>,
    /// 5xx statuses and INTERNAL_SERVER_ERROR answers.
    server_errors: Vec<String>,
}

/// Customers of the soak, each signed in once.
const SOAK_CUSTOMERS: usize = 8;

async fn postgres_soak_three_replicas_one_killed_and_restarted_no_mail_lost_or_doubled(
    backend: Backend,
) {
    const SOAK: Duration = Duration::from_secs(30);
    let mut app = TestApp::spawn(backend).await;
    // A limit far above the soak records one limit event per accepted request, in its own
    // transaction: the per-request witness (the mail coalesces per address).
    app.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 100000, min_seconds_between_reset_requests = 0").await;
    let mut tokens = Vec::new();
    for i in 0..SOAK_CUSTOMERS {
        let email = format!("soak{i}@example.com");
        app.create_customer(&email, PASSWORD).await;
        tokens.push(app.sign_in(&email, PASSWORD).await);
    }
    // From here only real server processes run, three on one database.
    app.stop().await;
    let smtp = SmtpReceiver::start().await;
    let env = [
        ("LATCHKEY_SMTP_URL", smtp.url()),
        ("LATCHKEY_SMTP_TIMEOUT_SECONDS", "1".to_owned()),
        ("LATCHKEY_MAIL_LEASE_SECONDS", "5".to_owned()),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(ServerProcess::start(&app.config, &env).await);
    }
    let addrs: Arc<Mutex<Vec<Option<SocketAddr>>>> =
        Arc::new(Mutex::new(replicas.iter().map(|r| Some(r.addr)).collect()));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let tokens = Arc::new(tokens);
    let deadline = Instant::now() + SOAK;
    let clients: Vec<_> = (0..6u64)
        .map(|client_no| {
            let (addrs, tally, tokens) = (addrs.clone(), tally.clone(), tokens.clone());
            tokio::spawn(soak_client(client_no, addrs, tally, tokens, deadline))
        })
        .collect();

    // A third of the way in, one replica dies without warning; it comes back five seconds later.
    tokio::time::sleep(SOAK / 3).await;
    replicas[1].signal("KILL");
    addrs.lock().unwrap()[1] = None;
    replicas[1].child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    replicas[1] = ServerProcess::start(&app.config, &env).await;
    addrs.lock().unwrap()[1] = Some(replicas[1].addr);
    for c in clients {
        c.await.unwrap();
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    every_accepted_reset_mailed_once(&app, &smtp, &tally).await;
}

/// One soak client: requests for known and unknown addresses and signed-in reads, round robin
/// over the replicas that are up, until the deadline; every outcome tallied.
async fn soak_client(
    client_no: u64,
    addrs: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    tally: Arc<Mutex<Tally>>,
    tokens: Arc<Vec<String>>,
    deadline: Instant,
) {
    let http = reqwest::Client::new();
    let mut i = client_no;
    while Instant::now() < deadline {
        i += 6;
        let replica = (i / 6 % 3) as usize;
        let Some(addr) = addrs.lock().unwrap()[replica] else {
            continue;
        };
        let customer = (i as usize / 18) % SOAK_CUSTOMERS;
        let (query, token, known_reset) = match i / 6 % 4 {
            0 | 1 => (
                json!({"query": format!("mutation {{ requestPasswordReset(email: \"soak{customer}@example.com\") }}")}),
                None,
                true,
            ),
            2 => (
                json!({"query": format!("mutation {{ requestPasswordReset(email: \"nobody{i}@example.com\") }}")}),
                None,
                false,
            ),
            _ => (
                json!({"query": "{ customer { email } }"}),
                Some(tokens[customer].clone()),
                false,
            ),
        };
        let mut request = http
            .post(format!("http://{addr}/graphql"))
            .header("content-type", "application/json")
            .body(query.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let outcome = async {
            let res = request.send().await?;
            let status = res.status();
            Ok::<_, reqwest::Error>((status, res.text().await?))
        }
        .await;
        let mut t = tally.lock().unwrap();
        t.requests += 1;
        match outcome {
            Err(_) => {
                t.unreachable.push(replica);
                if known_reset {
                    t.unanswered += 1;
                }
            }
            Ok((status, body)) => {
                if status.is_server_error() || body.contains("INTERNAL_SERVER_ERROR") {
                    t.server_errors
                        .push(format!("replica {replica}: {status} {body}"));
                } else if known_reset && body.contains("\"requestPasswordReset\":true") {
                    t.accepted += 1;
                } else if !body.contains("\"data\"") || body.contains("\"errors\"") {
                    t.server_errors
                        .push(format!("replica {replica}: unexpected {body}"));
                }
            }
        }
    }
}

/// Every queued message goes out (leases of the killed replica expire and others send them),
/// once; a mail for every accepted request.
async fn every_accepted_reset_mailed_once(app: &TestApp, smtp: &SmtpReceiver, t: &Tally) {
    let (db, _) = latchkey::connect(&app.config).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
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
    let started = Instant::now();
    while count(
        "SELECT (SELECT COUNT(*) FROM email_outbox WHERE status <> 'sent') \
         + (SELECT COUNT(*) FROM reset_requests) AS n",
    )
    .await
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "mail left unsent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let queued = count("SELECT COUNT(*) AS n FROM email_outbox").await as u64;
    let received = smtp.messages();
    eprintln!(
        "soak: {} requests, {} resets accepted, {} unanswered, {} unreachable, {} mails queued, {} received",
        t.requests,
        t.accepted,
        t.unanswered,
        t.unreachable.len(),
        queued,
        received.len()
    );
    assert!(t.requests > 200, "the soak ran: {} requests", t.requests);
    assert!(t.server_errors.is_empty(), "{:#?}", t.server_errors);
    assert!(
        t.unreachable.iter().all(|r| *r == 1),
        "only the killed replica was unreachable: {:?}",
        t.unreachable
    );
    // Nothing lost: every accepted request committed (its limit event; and any whose answer
    // died with the replica but whose transaction had committed), and every address mailed.
    // Requests for one address that waited together coalesce into one mail.
    let recorded =
        count("SELECT COUNT(*) AS n FROM limit_events WHERE key LIKE 'reset:email:soak%'").await
            as u64;
    assert!(
        recorded >= t.accepted && recorded <= t.accepted + t.unanswered,
        "{recorded} recorded for {} accepted (+{} unanswered)",
        t.accepted,
        t.unanswered
    );
    let mailed: std::collections::HashSet<&String> = received.iter().map(|m| &m.to[0]).collect();
    assert_eq!(mailed.len(), SOAK_CUSTOMERS, "every address mailed");
    assert!(queued <= t.accepted + t.unanswered);
    let mut ids: Vec<String> = received.iter().map(|m| m.message_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        queued,
        "every queued message was delivered"
    );
    // Nothing twice: the only possible repeat is a message the killed replica had handed to
    // SMTP but not yet marked sent; it would carry the same Message-ID (receivers drop it).
    // A worker has at most 16 sends in flight (`PARALLEL_SENDS` in crates/workers/src/mail.rs), and marks
    // each group of finished ones in one statement: at most that many can repeat.
    let repeats = received.len() - ids.len();
    assert!(repeats <= 16, "{repeats} messages delivered twice");
}
