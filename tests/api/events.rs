//! Security events reach the store's other services: real receivers (Node with the
//! `standardwebhooks` package; Node `jose` verifying SETs against the live JWKS) get each event
//! once per subscription, with its subject and reason, in order per subject, across replicas
//! and after an outage; dead letters are replayed; URLs that point inside are refused where
//! that matters, and a receiver that redirects, stalls or floods cannot hold the worker.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::helpers::{Backend, PASSWORD, TestApp, code};

crate::tests![
    every_event_type_reaches_each_receiver_once_with_its_subject_and_reason,
    a_receiver_that_is_down_gets_every_event_in_order_when_it_is_back,
    dead_letters_are_shown_and_replayed_in_order,
    receiver_urls_inside_the_network_are_refused_and_no_receiver_holds_the_worker,
    a_rolled_back_change_sends_nothing,
    bulk_jobs_send_an_event_per_customer,
];

const ALL_TYPES: [&str; 6] = [
    "SESSION_REVOKED",
    "CREDENTIAL_CHANGE",
    "ACCOUNT_DISABLED",
    "ACCOUNT_ENABLED",
    "ACCOUNT_PURGED",
    "IDENTIFIER_CHANGED",
];

const CREATE: &str = "mutation($i: EventSubscriptionInput!) { createEventSubscription(input: $i) { subscription { id url format eventTypes } secret } }";
const DELIVERIES: &str = "query($s: ID!, $st: DeliveryStatus) { eventDeliveries(subscriptionId: $s, status: $st) { id eventId eventType reason status attempts lastStatus lastError } }";
const FORCE: &str = "mutation($c: ID!) { revokeCustomerTokens(customerId: $c) { revokedCount } }";
const SIGN_OUT: &str = "mutation { revokeCustomerToken }";

/// The Node receiver (`tests/node/event-receiver.mjs`), its verified events as they arrived.
pub(crate) struct Receiver {
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
    _child: tokio::process::Child,
}

impl Receiver {
    pub(crate) async fn start(app: &TestApp, port: u16, audience: &str) -> Self {
        crate::node::available().expect("the event receivers need Node.js and npm");
        let mut child = crate::node::spawn(
            "event-receiver.mjs",
            &[
                ("PORT", port.to_string()),
                ("JWKS_URL", app.url("/.well-known/jwks.json")),
                ("SET_ISSUER", app.config.public_base_url()),
                ("SET_AUDIENCE", audience.to_owned()),
            ],
        );
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = out.next_line().await.unwrap().unwrap();
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {first}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Self {
            port,
            lines,
            _child: child,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn set_secret(&self, secret: &str) {
        let res = reqwest::Client::new()
            .post(self.url("/_secret"))
            .body(secret.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    pub(crate) fn of(&self, format: &str) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        assert!(
            lines.iter().all(|l| l.get("rejected").is_none()),
            "a delivery did not verify: {lines:?}"
        );
        lines
            .iter()
            .filter(|l| l["format"] == format)
            .cloned()
            .collect()
    }

    /// Waits (up to 30 s, the test clock moved on so retries fall due) for `n` events of `format`.
    pub(crate) async fn wait_for(&self, app: &TestApp, format: &str, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            if self.of(format).len() >= n {
                // Anything more (a duplicate) would show by now.
                tokio::time::sleep(Duration::from_millis(300)).await;
                return self.of(format);
            }
            app.clock.advance(chrono::Duration::seconds(5));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{n} {format} events never arrived: {:?}",
            self.lines.lock().unwrap()
        );
    }
}

async fn subscribe(app: &TestApp, admin: &str, input: Value) -> (String, Option<String>) {
    let res = app.gql_as(Some(admin), CREATE, json!({"i": input})).await;
    let created = &res["data"]["createEventSubscription"];
    assert!(created.is_object(), "{res}");
    (
        created["subscription"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().map(str::to_owned),
    )
}

/// A webhook subscription of every type to `url`, with email.
async fn webhook(app: &TestApp, admin: &str, url: &str) -> (String, String) {
    let (id, secret) = subscribe(
        app,
        admin,
        json!({"name": "loyalty", "url": url, "format": "STANDARD_WEBHOOKS",
               "eventTypes": ALL_TYPES, "includeEmail": true}),
    )
    .await;
    let secret = secret.expect("a webhook subscription answers its secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, secret)
}

fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// (type, reason) of the webhook messages about `subject`, in arrival order.
fn webhook_story(events: &[Value], subject: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["data"]["subject"]["id"] == subject)
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn story(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn ids_unique(events: &[Value], key: &str) {
    let mut ids: Vec<&str> = events.iter().map(|e| e[key].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event arrived twice: {events:?}");
}

async fn every_event_type_reaches_each_receiver_once_with_its_subject_and_reason(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let receiver = Receiver::start(&app, 0, "urn:example:orders").await;
    let admin = app.admin_token("administrator").await;
    let (_, secret) = webhook(&app, &admin, &receiver.url("/webhook")).await;
    receiver.set_secret(&secret).await;
    let (set_sub, none) = subscribe(
        &app,
        &admin,
        json!({"name": "orders", "url": receiver.url("/set"), "format": "SSF_SET",
               "eventTypes": ALL_TYPES, "audience": "urn:example:orders"}),
    )
    .await;
    assert!(
        none.is_none(),
        "a SET subscription has no secret of its own"
    );

    let ssf: Value = app
        .client
        .get(app.url("/.well-known/ssf-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ssf["issuer"], app.config.public_base_url());
    assert_eq!(
        ssf["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935"])
    );
    assert!(
        ssf["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/.well-known/jwks.json")
    );

    // A customer's life: sign-out, Force Sign In, a password change, an email change, deletion.
    app.create_customer("ev@example.com", PASSWORD).await;
    let customer = app.customer_id("ev@example.com").await;
    let first = app.sign_in("ev@example.com", PASSWORD).await;
    let res = app.gql_as(Some(&first), SIGN_OUT, json!({})).await;
    assert_eq!(res["data"]["revokeCustomerToken"], true, "{res}");
    let _second = app.sign_in("ev@example.com", PASSWORD).await;
    let res = app
        .gql_as(Some(&admin), FORCE, json!({"c": customer}))
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let third = app.sign_in("ev@example.com", PASSWORD).await;
    let other_device = app.sign_in("ev@example.com", PASSWORD).await;
    let new_password = "another-Password-2027";
    let res = app
        .gql_as(
            Some(&third),
            "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { id } }",
            json!({"c": PASSWORD, "n": new_password}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let res = app
        .gql_as(
            Some(&third),
            "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
            json!({"e": "moved@example.com", "p": new_password}),
        )
        .await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let confirmation = smtp
        .wait_for_mail("moved@example.com", "confirm-email")
        .await;
    let res = app
        .gql(
            "mutation($t: String!) { confirmCustomerEmailChange(token: $t) }",
            json!({"t": confirmation.token()}),
        )
        .await;
    assert_eq!(res["data"]["confirmCustomerEmailChange"], true, "{res}");
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($c: ID!) { adminDeleteCustomer(customerId: $c) }",
            json!({"c": customer}),
        )
        .await;
    assert_eq!(res["data"]["adminDeleteCustomer"], true, "{res}");

    // An admin disabled, then enabled again.
    app.admin_token("support").await;
    let admins = app
        .gql_as(Some(&admin), "{ adminUsers { id role } }", json!({}))
        .await;
    let support = admins["data"]["adminUsers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["role"] == "SUPPORT")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for disabled in [true, false] {
        let res = app
            .gql_as(
                Some(&admin),
                "mutation($i: ID!, $d: Boolean) { updateAdminUser(id: $i, disabled: $d) { id } }",
                json!({"i": support, "d": disabled}),
            )
            .await;
        assert!(res["errors"].is_null(), "{res}");
    }

    let customer_story = story(&[
        ("session.revoked", "sign_out"),
        ("session.revoked", "force_sign_in"),
        ("credential.changed", "password_changed"),
        // The other device's session only: the one that changed the password stays.
        ("session.revoked", "password_changed"),
        ("identifier.changed", "email_changed"),
        ("account.purged", "deleted"),
    ]);
    let admin_story = story(&[
        ("account.disabled", "admin_disabled"),
        ("session.revoked", "admin_disabled"),
        ("account.enabled", "admin_enabled"),
    ]);

    // Standard Webhooks, verified by the `standardwebhooks` package: each once, in order.
    let hooks = receiver.wait_for(&app, "webhook", 9).await;
    assert_eq!(hooks.len(), 9, "{hooks:?}");
    ids_unique(&hooks, "id");
    assert_eq!(webhook_story(&hooks, &customer), customer_story);
    assert_eq!(webhook_story(&hooks, &support), admin_story);
    let by_reason = |r: &str| {
        hooks
            .iter()
            .find(|e| e["data"]["reason"] == r && e["data"]["subject"]["id"] == customer)
            .unwrap()
            .clone()
    };
    // The one session a sign-out ended, by its token's `jti`; who acted; the email (allowed).
    let signed_out = by_reason("sign_out");
    assert_eq!(signed_out["data"]["session_id"], jti(&first));
    assert_eq!(signed_out["data"]["actor"], "user");
    assert_eq!(signed_out["data"]["subject"]["email"], "ev@example.com");
    assert_eq!(by_reason("force_sign_in")["data"]["actor"], "admin");
    let changed = hooks
        .iter()
        .find(|e| e["type"] == "session.revoked" && e["data"]["reason"] == "password_changed")
        .unwrap();
    assert_eq!(
        changed["data"]["session_id"],
        jti(&other_device),
        "{changed}"
    );
    assert!(by_reason("force_sign_in")["data"]["session_id"].is_null());
    let moved = by_reason("email_changed");
    assert_eq!(moved["data"]["subject"]["email"], "ev@example.com");
    assert_eq!(moved["data"]["new_email"], "moved@example.com");
    assert_eq!(
        by_reason("deleted")["data"]["subject"]["email"],
        "moved@example.com"
    );
    let everything = format!("{hooks:?}");
    for secret_thing in [first.as_str(), third.as_str(), PASSWORD, new_password] {
        assert!(
            !everything.contains(secret_thing),
            "a token or password was sent"
        );
    }
    // Sent, the addresses are not kept.
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE email IS NOT NULL OR new_email IS NOT NULL"
        )
        .await,
        0
    );

    // Shared Signals SETs, verified by `jose` against the live JWKS: the same story, no email.
    let sets = receiver.wait_for(&app, "set", 9).await;
    assert_eq!(sets.len(), 9, "{sets:?}");
    ids_unique(&sets, "jti");
    let set_story = |subject: &str| -> Vec<(String, String)> {
        sets.iter()
            .filter(|s| s["sub_id"]["user"]["sub"] == subject)
            .map(|s| {
                let (uri, event) = s["events"].as_object().unwrap().iter().next().unwrap();
                (
                    uri.rsplit('/').next().unwrap().to_owned(),
                    event["initiating_entity"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        set_story(&customer),
        story(&[
            ("session-revoked", "user"),
            ("session-revoked", "admin"),
            ("credential-change", "user"),
            ("session-revoked", "user"),
            ("identifier-changed", "user"),
            ("account-purged", "admin"),
        ])
    );
    assert_eq!(
        set_story(&support),
        story(&[
            ("account-disabled", "admin"),
            ("session-revoked", "admin"),
            ("account-enabled", "admin"),
        ])
    );
    let first_set = sets
        .iter()
        .find(|s| s["sub_id"]["user"]["sub"] == customer)
        .unwrap();
    assert_eq!(first_set["sub_id"]["format"], "complex");
    assert_eq!(first_set["sub_id"]["user"]["iss"], "latchkey");
    assert_eq!(first_set["sub_id"]["session"]["id"], jti(&first));
    assert_eq!(first_set["aud"], "urn:example:orders");
    assert!(first_set["kid"].is_string());
    assert!(
        !format!("{sets:?}").contains("@example.com"),
        "a subscription without email gets ids only: {sets:?}"
    );

    // The Integrations page lists them delivered.
    let listed = app
        .gql_as(
            Some(&admin),
            DELIVERIES,
            json!({"s": set_sub, "st": "DELIVERED"}),
        )
        .await;
    assert_eq!(
        listed["data"]["eventDeliveries"].as_array().unwrap().len(),
        9,
        "{listed}"
    );
}

/// A port nothing listens on (yet).
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn a_receiver_that_is_down_gets_every_event_in_order_when_it_is_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let replica = app.replica().await;
    let admin = app.admin_token("administrator").await;
    let port = free_port().await;
    let (sub, secret) = webhook(&app, &admin, &format!("http://127.0.0.1:{port}/webhook")).await;

    // Three customers; each signed out on one replica, then Forced out on the other.
    let mut customers = Vec::new();
    for n in 0..3 {
        let email = format!("down{n}@example.com");
        app.create_customer(&email, PASSWORD).await;
        customers.push((app.customer_id(&email).await, email));
    }
    for (id, email) in &customers {
        let token = app.sign_in(email, PASSWORD).await;
        let res = replica.gql_as(Some(&token), SIGN_OUT, json!({})).await;
        assert_eq!(res["data"]["revokeCustomerToken"], true, "{res}");
        let res = app.gql_as(Some(&admin), FORCE, json!({"c": id})).await;
        assert!(res["errors"].is_null(), "{res}");
    }
    // Tried, refused (nothing listens), and kept.
    let mut failing = Value::Null;
    for _ in 0..100 {
        app.clock.advance(chrono::Duration::seconds(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
        failing = app
            .gql_as(Some(&admin), DELIVERIES, json!({"s": sub, "st": "PENDING"}))
            .await;
        let rows = failing["data"]["eventDeliveries"].as_array().unwrap();
        if rows
            .iter()
            .filter(|d| d["attempts"].as_i64() >= Some(2))
            .count()
            >= 3
        {
            break;
        }
    }
    let rows = failing["data"]["eventDeliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{failing}");
    assert!(
        rows.iter()
            .any(|d| d["lastError"].as_str().unwrap_or("").contains("connect")),
        "{failing}"
    );
    // Only each subject's first event is tried while it fails: the second waits behind it.
    assert!(
        rows.iter()
            .filter(|d| d["reason"] == "force_sign_in")
            .all(|d| d["attempts"] == 0),
        "{failing}"
    );

    let receiver = Receiver::start(&app, port, "unused").await;
    receiver.set_secret(&secret).await;
    let hooks = receiver.wait_for(&app, "webhook", 6).await;
    assert_eq!(hooks.len(), 6, "{hooks:?}");
    ids_unique(&hooks, "id");
    for (id, _) in &customers {
        assert_eq!(
            webhook_story(&hooks, id),
            story(&[
                ("session.revoked", "sign_out"),
                ("session.revoked", "force_sign_in")
            ]),
            "{hooks:?}"
        );
    }
    drop(replica);
}

async fn dead_letters_are_shown_and_replayed_in_order(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.events_max_attempts = 2).await;
    let admin = app.admin_token("administrator").await;
    let port = free_port().await;
    let (sub, secret) = webhook(&app, &admin, &format!("http://127.0.0.1:{port}/webhook")).await;
    app.create_customer("dead@example.com", PASSWORD).await;
    let id = app.customer_id("dead@example.com").await;
    let token = app.sign_in("dead@example.com", PASSWORD).await;
    app.gql_as(Some(&token), SIGN_OUT, json!({})).await;
    app.gql_as(Some(&admin), FORCE, json!({"c": id})).await;

    let mut dead = Value::Null;
    for _ in 0..100 {
        app.clock.advance(chrono::Duration::seconds(5));
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead = app
            .gql_as(Some(&admin), DELIVERIES, json!({"s": sub, "st": "DEAD"}))
            .await;
        if dead["data"]["eventDeliveries"].as_array().unwrap().len() == 2 {
            break;
        }
    }
    let rows = dead["data"]["eventDeliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "both given up on after two attempts: {dead}");
    assert!(rows.iter().all(|d| d["attempts"] == 2), "{dead}");

    // Nothing goes out by itself any more, even once the receiver is up.
    let receiver = Receiver::start(&app, port, "unused").await;
    receiver.set_secret(&secret).await;
    app.clock.advance(chrono::Duration::hours(1));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(receiver.of("webhook").is_empty());

    // Support may not replay; an administrator may, and both arrive in order.
    let support = app.admin_token("support").await;
    const REPLAY: &str = "mutation($s: ID!) { replayEventDeliveries(subscriptionId: $s) }";
    let res = app.gql_as(Some(&support), REPLAY, json!({"s": sub})).await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    let res = app.gql_as(Some(&admin), REPLAY, json!({"s": sub})).await;
    assert_eq!(res["data"]["replayEventDeliveries"], 2, "{res}");
    let hooks = receiver.wait_for(&app, "webhook", 2).await;
    assert_eq!(
        webhook_story(&hooks, &id),
        story(&[
            ("session.revoked", "sign_out"),
            ("session.revoked", "force_sign_in")
        ])
    );
    let audit = app
        .gql_as(
            Some(&admin),
            "{ auditLog(first: 20) { edges { node { action detail } } } }",
            json!({}),
        )
        .await;
    assert!(
        audit.to_string().contains("MANAGE_INTEGRATION") && audit.to_string().contains("replayed"),
        "{audit}"
    );
}

/// A receiver that misbehaves, by path: `/redirect` answers 302 to `/target`; `/slow` never
/// answers; `/huge` answers 500 with a body that never ends. Counts requests to `/target`.
async fn bad_receiver() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hits = target.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("POST /redirect") {
                    let _ = socket
                        .write_all(
                            format!(
                                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/target\r\ncontent-length: 0\r\n\r\n"
                            )
                            .as_bytes(),
                        )
                        .await;
                } else if head.starts_with("POST /slow") {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                } else if head.starts_with("POST /huge") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 500 Oops\r\ncontent-type: text/plain\r\n\r\n")
                        .await;
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..100_000 {
                        if socket.write_all(&chunk).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } else {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                }
            });
        }
    });
    (port, target)
}

async fn receiver_urls_inside_the_network_are_refused_and_no_receiver_holds_the_worker(
    backend: Backend,
) {
    // Production's rule (internal addresses refused, https only), on a development server.
    let strict = TestApp::spawn_with(backend, |c| c.events_allow_internal = Some(false)).await;
    let admin = strict.admin_token("administrator").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd12::1]/hook",
        "https://2130706433/hook",
        "http://hooks.example.com/hook",
        "https://user:pw@hooks.example.com/hook",
        "file:///etc/passwd",
    ] {
        let res = strict
            .gql_as(
                Some(&admin),
                CREATE,
                json!({"i": {"name": "x", "url": url, "format": "SSF_SET", "eventTypes": ["SESSION_REVOKED"]}}),
            )
            .await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{url}: {res}");
    }
    // A SET is signed with the access tokens' key: it may not carry their audience.
    let res = strict
        .gql_as(
            Some(&admin),
            CREATE,
            json!({"i": {"name": "x", "url": "https://hooks.example.com/set", "format": "SSF_SET",
                         "eventTypes": ["SESSION_REVOKED"], "audience": "latchkey:customer"}}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    assert_eq!(res["errors"][0]["extensions"]["field"], "audience", "{res}");
    let listed = strict
        .gql_as(Some(&admin), "{ eventSubscriptions { id } }", json!({}))
        .await;
    assert_eq!(listed["data"]["eventSubscriptions"], json!([]), "{listed}");
    let support = strict.admin_token("support").await;
    let res = strict
        .gql_as(Some(&support), "{ eventSubscriptions { id } }", json!({}))
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    drop(strict);

    // A receiver that redirects, one that never answers and one whose answer never ends cost
    // one timeout each, and the good receiver beside them is not held back: its event arrives
    // while the one that never answers is still being waited for.
    let app = TestApp::spawn_with(backend, |c| c.events_timeout_seconds = 3).await;
    let admin = app.admin_token("administrator").await;
    let (port, target) = bad_receiver().await;
    let receiver = Receiver::start(&app, 0, "unused").await;
    let mut subs = Vec::new();
    for path in ["/redirect", "/slow", "/huge"] {
        let (id, _) = webhook(&app, &admin, &format!("http://127.0.0.1:{port}{path}")).await;
        subs.push((path, id));
    }
    let (_, secret) = webhook(&app, &admin, &receiver.url("/webhook")).await;
    receiver.set_secret(&secret).await;
    for email in ["held@example.com", "next@example.com"] {
        app.create_customer(email, PASSWORD).await;
    }
    let held = app.customer_id("held@example.com").await;
    let next = app.customer_id("next@example.com").await;
    app.gql_as(Some(&admin), FORCE, json!({"c": held})).await;
    // Wait until the receiver that never answers is being waited for…
    let mut slow = Value::Null;
    for _ in 0..300 {
        slow = app
            .gql_as(Some(&admin), DELIVERIES, json!({"s": subs[1].1}))
            .await;
        if slow["data"]["eventDeliveries"][0]["status"] == "SENDING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        slow["data"]["eventDeliveries"][0]["status"], "SENDING",
        "{slow}"
    );
    // …then the next event reaches the good receiver while it still is.
    app.gql_as(Some(&admin), FORCE, json!({"c": next})).await;
    for _ in 0..500 {
        if receiver.of("webhook").len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        webhook_story(&receiver.of("webhook"), &next),
        story(&[("session.revoked", "force_sign_in")])
    );
    let slow = app
        .gql_as(
            Some(&admin),
            DELIVERIES,
            json!({"s": subs[1].1, "st": "SENDING"}),
        )
        .await;
    assert_eq!(
        slow["data"]["eventDeliveries"].as_array().map(Vec::len),
        Some(1),
        "the good receiver got its event while the slow one was still waited for: {slow}"
    );
    let mut errors = Vec::new();
    for (path, sub) in &subs {
        let mut last = Value::Null;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = app
                .gql_as(Some(&admin), DELIVERIES, json!({"s": sub}))
                .await;
            let rows = last["data"]["eventDeliveries"].as_array().unwrap();
            if rows
                .last()
                .is_some_and(|d| d["attempts"].as_i64() >= Some(1))
            {
                break;
            }
        }
        let d = last["data"]["eventDeliveries"]
            .as_array()
            .unwrap()
            .last()
            .unwrap();
        assert_eq!(d["status"], "PENDING", "{path}: {last}");
        errors.push((
            path.to_string(),
            d["lastError"].as_str().unwrap_or("").to_owned(),
        ));
    }
    assert!(
        errors[0].1.contains("redirects are not followed"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("no answer within"), "{errors:?}");
    assert!(errors[2].1.contains("HTTP 500"), "{errors:?}");
    assert!(
        errors[2].1.len() < 400,
        "a huge answer is cut short: {errors:?}"
    );
    assert_eq!(
        target.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

/// A Force Sign In whose transaction fails after its event was written (its audit entry is
/// refused by a trigger the test adds) changes nothing and sends nothing; the next one does both.
async fn a_rolled_back_change_sends_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("administrator").await;
    let receiver = Receiver::start(&app, 0, "unused").await;
    let (sub, secret) = webhook(&app, &admin, &receiver.url("/webhook")).await;
    receiver.set_secret(&secret).await;
    app.create_customer("rollback@example.com", PASSWORD).await;
    let id = app.customer_id("rollback@example.com").await;
    let token = app.sign_in("rollback@example.com", PASSWORD).await;
    let (add, drop) = if backend == Backend::Sqlite {
        (
            vec![
                "CREATE TRIGGER refuse_force BEFORE INSERT ON audit_log \
                 WHEN NEW.action = 'REVOKE_CUSTOMER_TOKENS' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            ],
            vec!["DROP TRIGGER refuse_force"],
        )
    } else {
        (
            vec![
                "CREATE FUNCTION refuse_force() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_force BEFORE INSERT ON audit_log FOR EACH ROW \
                 WHEN (NEW.action = 'REVOKE_CUSTOMER_TOKENS') EXECUTE FUNCTION refuse_force()",
            ],
            vec![
                "DROP TRIGGER refuse_force ON audit_log",
                "DROP FUNCTION refuse_force()",
            ],
        )
    };
    for sql in add {
        app.execute(sql, vec![]).await;
    }
    let res = app.gql_as(Some(&admin), FORCE, json!({"c": id})).await;
    assert!(
        !res["errors"].is_null(),
        "the injected failure answers an error: {res}"
    );
    assert_eq!(
        app.whoami(&token).await.as_deref(),
        Ok("rollback@example.com"),
        "the sessions were not revoked"
    );
    let pending = app
        .gql_as(Some(&admin), DELIVERIES, json!({"s": sub}))
        .await;
    assert_eq!(pending["data"]["eventDeliveries"], json!([]), "{pending}");
    app.clock.advance(chrono::Duration::minutes(1));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        receiver.of("webhook").is_empty(),
        "an event of a rolled-back change was sent"
    );

    for sql in drop {
        app.execute(sql, vec![]).await;
    }
    let res = app.gql_as(Some(&admin), FORCE, json!({"c": id})).await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(app.whoami(&token).await.is_err());
    let hooks = receiver.wait_for(&app, "webhook", 1).await;
    assert_eq!(
        webhook_story(&hooks, &id),
        story(&[("session.revoked", "force_sign_in")])
    );
}

/// Bulk Force Sign In and "require a new password" send one event per customer, each in
/// order after that customer's earlier ones.
async fn bulk_jobs_send_an_event_per_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("administrator").await;
    let receiver = Receiver::start(&app, 0, "unused").await;
    let (_, secret) = webhook(&app, &admin, &receiver.url("/webhook")).await;
    receiver.set_secret(&secret).await;
    let mut ids = Vec::new();
    for email in ["bulk-a@example.com", "bulk-b@example.com"] {
        app.create_customer(email, PASSWORD).await;
        ids.push(app.customer_id(email).await);
    }
    const START: &str = "mutation($a: BulkAction!, $ids: [ID!]) { startBulkAction(action: $a, selection: {customerIds: $ids}) { id } }";
    let res = app
        .gql_as(
            Some(&admin),
            START,
            json!({"a": "FORCE_SIGN_IN", "ids": ids}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    receiver.wait_for(&app, "webhook", 2).await;
    let res = app
        .gql_as(
            Some(&admin),
            START,
            json!({"a": "REQUIRE_NEW_PASSWORD", "ids": [ids[0]]}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let hooks = receiver.wait_for(&app, "webhook", 3).await;
    assert_eq!(hooks.len(), 3, "{hooks:?}");
    assert_eq!(
        webhook_story(&hooks, &ids[0]),
        story(&[
            ("session.revoked", "bulk_force_sign_in"),
            ("credential.changed", "new_password_required")
        ])
    );
    assert_eq!(
        webhook_story(&hooks, &ids[1]),
        story(&[("session.revoked", "bulk_force_sign_in")])
    );
}
