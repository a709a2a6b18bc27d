//! Operations: health, readiness, metrics, client IPs behind proxies, CORS, the schema file.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp};

crate::tests![
    health_readiness_and_metrics_answer,
    readiness_reports_an_unreachable_database,
    metrics_are_not_on_the_api_port,
    client_ip_is_the_socket_peer_unless_a_trusted_proxy_forwards_it,
    a_junk_forwarded_hop_does_not_let_a_client_choose_its_ip,
    cors_admits_only_configured_origins,
    schema_graphql_is_what_latchkey_schema_prints,
    transaction_pooling_refuses_session_state_it_could_not_keep,
];

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    app.create_customer("metrics@example.com", PASSWORD).await;
    app.sign_in_response("metrics@example.com", "wrong-guess")
        .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("latchkey_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("code=\"AUTHENTICATION_FAILED\""),
        "{metrics}"
    );
    assert!(metrics.contains("latchkey_password_hash_seconds"));
}

/// `/metrics` moved off the API port: its counters moved differently for sign-ins and resets
/// that found an account than for those that did not (statements run, mail sent), so anyone
/// could read account existence from it.
async fn metrics_are_not_on_the_api_port(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let public = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(app.metrics().await.contains("latchkey_db_statements_total"));
    assert_ne!(app.metrics_addr.map(|a| a.port()), Some(app.addr.port()));
}

/// Behind PgBouncer in transaction mode a session's `SET search_path` would stay on the server
/// session and reach whichever client borrows it next: such a configuration does not start.
async fn transaction_pooling_refuses_session_state_it_could_not_keep(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let out = app
        .command(&["migrate"])
        .env("LATCHKEY_DATABASE_POOLER", "transaction")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let expected = match backend {
        Backend::Sqlite => "is for PostgreSQL behind PgBouncer",
        // The tests keep each PostgreSQL database in a schema of its own.
        Backend::Postgres | Backend::PgBouncer => "ALTER ROLE",
    };
    assert!(stderr.contains(expected), "{stderr}");
    // Without the pooler setting the same command works (it changed nothing).
    let ok = app.command(&["migrate"]).output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

async fn readiness_reports_an_unreachable_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.db.clone().close().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );
}

async fn client_ip_is_the_socket_peer_unless_a_trusted_proxy_forwards_it(backend: Backend) {
    async fn recorded_ip(app: &TestApp, email: &str) -> String {
        app.create_customer(email, PASSWORD).await;
        let res = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", "198.51.100.7")
            .body(
                json!({"query": "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }",
                       "variables": {"e": email, "p": PASSWORD}})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let token = res["data"]["generateCustomerToken"]["token"]
            .as_str()
            .unwrap();
        let sessions = app
            .gql_as(Some(token), "{ customerSessions { clientIp } }", json!({}))
            .await;
        sessions["data"]["customerSessions"][0]["clientIp"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    let direct = TestApp::spawn(backend).await;
    assert_eq!(
        recorded_ip(&direct, "direct@example.com").await,
        "127.0.0.1"
    );
    let proxied =
        TestApp::spawn_with(backend, |c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    assert_eq!(
        recorded_ip(&proxied, "proxied@example.com").await,
        "198.51.100.7"
    );
}

/// Behind a trusted proxy, a client that writes `<any address>, x` before the proxy's hop used
/// to be limited (and recorded) as whatever address it wrote: parsing stopped at the junk.
async fn a_junk_forwarded_hop_does_not_let_a_client_choose_its_ip(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    // Limits by IP only: one request per IP every 10 minutes (the default interval).
    app.set_settings("reset_request_limit_method = 'BY_IP'")
        .await;
    let mut answers = Vec::new();
    for i in 1..=3 {
        let res = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{i}, x, 198.51.100.7"))
            .body(
                json!({"query": "mutation($e: String!) { requestPasswordReset(email: $e) }",
                       "variables": {"e": format!("junk{i}@example.com")}})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        answers.push(res);
    }
    assert_eq!(
        answers[0]["data"]["requestPasswordReset"], true,
        "{}",
        answers[0]
    );
    for res in &answers[1..] {
        assert_eq!(
            crate::helpers::code(res),
            "RATE_LIMITED",
            "the same client (198.51.100.7, as our proxy saw it) asked again: {res}"
        );
    }
}

async fn cors_admits_only_configured_origins(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.cors_origins = vec!["https://admin.example".into()]
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://admin.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
}

async fn schema_graphql_is_what_latchkey_schema_prints(_backend: Backend) {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("schema")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, graphql::sdl());
    assert!(
        committed == printed,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}
