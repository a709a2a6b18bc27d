//! GraphQL over HTTP hardening (docs/threat-model.md, "An anonymous caller"): every bad request gets a clear code
//! and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, code};

crate::tests![
    only_json_bodies_are_accepted_and_others_change_nothing,
    mutations_over_get_are_refused_and_not_run,
    batched_requests_are_refused_so_attempts_cannot_multiply,
    oversized_bodies_are_refused_before_parsing,
    malformed_bodies_get_bad_user_input_and_change_nothing,
    deep_expensive_and_directive_heavy_queries_are_refused,
    unknown_fields_are_refused_with_a_code,
    production_hides_introspection_suggestions_and_graphiql,
    production_refuses_to_start_with_settings_that_leak_links,
    graphiql_is_served_in_development,
    internal_errors_never_leak_sql,
    responses_carry_security_headers,
];

const CREATE: &str = "mutation { createCustomer(input: {email: \"csrf@example.com\", firstname: \"A\", lastname: \"B\", password: \"kx7!qzmw\"}) { id } }";

async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut req = app.client.post(app.url("/graphql")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn only_json_bodies_are_accepted_and_others_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"query": CREATE}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, res) = post_raw(&app, ct, body.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(code(&res), "BAD_USER_INPUT");
    }
    assert_eq!(app.count("customers").await, 0);
    let (status, _) = post_raw(&app, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.count("customers").await, 1);
}

async fn mutations_over_get_are_refused_and_not_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", CREATE)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
    // Hidden behind a named query in the same document, or picked by operationName.
    let doc = format!(
        "query A {{ __typename }} {}",
        CREATE.replacen("mutation", "mutation B", 1)
    );
    let res = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", doc.as_str()), ("operationName", "B")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(app.count("customers").await, 0);
    // Queries over GET are fine.
    let res = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");
}

async fn batched_requests_are_refused_so_attempts_cannot_multiply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("batch@example.com", PASSWORD).await;
    let attempt = json!({"query": "mutation { generateCustomerToken(email: \"batch@example.com\", password: \"wrong-guess\") { token } }"});
    let batch = Value::Array(vec![attempt; 50]).to_string();
    let (status, res) = post_raw(&app, Some("application/json"), batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&res), "BAD_USER_INPUT");
    // None of the 50 attempts counted towards lockout: nine more failures still leave it open.
    for _ in 0..9 {
        app.sign_in_response("batch@example.com", "wrong-guess")
            .await;
    }
    app.sign_in("batch@example.com", PASSWORD).await;
}

async fn oversized_bodies_are_refused_before_parsing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let padding = "x".repeat(100 * 1024);
    let body = json!({"query": CREATE, "variables": {"pad": padding}}).to_string();
    let (status, _) = post_raw(&app, Some("application/json"), body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length: refused all the same, once 64 KiB have arrived. The server
    // answers 413 and closes without reading the rest, so a client still sending may see the
    // connection reset before it reads the answer (hyper has no lingering close); either way
    // the request is refused and nothing runs.
    let stream = futures::stream::iter((0..200).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let streamed = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match streamed {
        Ok(res) => assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "not a refusal mid-upload: {e}"),
    }
    assert_eq!(app.count("customers").await, 0);
}

async fn malformed_bodies_get_bad_user_input_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let deep = format!(
        "{{\"query\": \"{{ __typename }}\", \"variables\": {{\"a\": {}{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"".to_vec(),
        br#"{"query": null}"#.to_vec(),
        br#"{"query": "{ __typename }", "variables": {"a": "\ud800"}}"#.to_vec(),
        b"{\"query\": \"{ __typename \xff\xfe }\"}".to_vec(),
        deep.into_bytes(),
        format!(
            "{{\"query\": {}, \"variables\": {{\"p\": \"hunter2-secret\"}}}}",
            5
        )
        .into_bytes(),
    ];
    for body in bodies {
        let (status, res) = post_raw(&app, Some("application/json"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
        assert_eq!(code(&res), "BAD_USER_INPUT");
        assert!(!res.to_string().contains("hunter2"), "input is not echoed");
    }
    // Syntax errors in the document are GraphQL errors with a code.
    let res = app.gql("mutation { createCustomer(", json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    assert_eq!(app.count("customers").await, 0);
}

async fn deep_expensive_and_directive_heavy_queries_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let deep = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType {",
        "} } } } } } } } } } } } }"
    );
    let res = app.gql(&deep, json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    assert!(res["data"].is_null());

    let aliases: String = (0..300)
        .map(|i| format!("a{i}: customerSessions {{ id }} "))
        .collect();
    let res = app.gql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    assert!(res["data"].is_null());

    let directives = "@skip(if: false)".repeat(50);
    let res = app
        .gql(&format!("{{ __typename {directives} }}"), json!({}))
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT");

    let fragments = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    let res = app.gql(fragments, json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT");

    // Many aliased sign-in attempts are refused as one expensive operation before any runs.
    app.create_customer("alias@example.com", PASSWORD).await;
    let attempts: String = (0..600)
        .map(|i| format!("a{i}: generateCustomerToken(email: \"alias@example.com\", password: \"wrong\") {{ token }} "))
        .collect();
    let res = app
        .gql(&format!("mutation {{ {attempts} }}"), json!({}))
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    app.sign_in("alias@example.com", PASSWORD).await;
}

async fn unknown_fields_are_refused_with_a_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.gql("{ customer { id passwordHash } }", json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    assert!(res["data"].is_null());
}

async fn production_hides_introspection_suggestions_and_graphiql(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.env = latchkey::config::Environment::Production;
        c.jwt_secret = Some(latchkey::config::Secret::new(
            "production-secret-0123456789abcdefghij",
        ));
        // A staging set-up: plain http and mail to a folder, allowed explicitly.
        c.allow_insecure_urls = true;
        c.allow_insecure_mail_dir = true;
    })
    .await;
    let res = app.gql("{ __schema { types { name } } }", json!({})).await;
    assert!(res["data"]["__schema"].is_null(), "{res}");
    let res = app.gql("{ custmer { id } }", json!({})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
    assert!(!res.to_string().contains("Did you mean"), "{res}");
    // Federation's `_service { sdl }` is the schema too: refused, however it is asked for.
    for query in [
        "{ _service { sdl } }",
        "{ ...Q } fragment Q on Query { _service { sdl } }",
        "{ ... on Query { _service { sdl } } }",
    ] {
        let res = app.gql(query, json!({})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{query}: {res}");
        assert!(!res.to_string().contains("type Customer"), "{res}");
    }
    let res = app.client.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(!res.text().await.unwrap().contains("graphiql"));
}

/// The real binary, as an operator would start it: production refuses an http:// public URL,
/// plain SMTP and mail written to a folder, naming each variable, and starts once the staging
/// overrides are set.
async fn production_refuses_to_start_with_settings_that_leak_links(backend: Backend) {
    // Its own key-encryption key: the production secret below is not what sealed the keys.
    let kek = "production-key-encryption-0123456789abcdef";
    let app = TestApp::spawn_with(backend, |c| {
        c.key_encryption_key = Some(latchkey::config::Secret::new(kek));
    })
    .await;
    let secret = (
        "LATCHKEY_JWT_SECRET",
        "production-secret-0123456789abcdefghij",
    );
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve")
            .env("DATABASE_URL", &app.config.database_url)
            .env("LATCHKEY_LISTEN", "127.0.0.1:0")
            .env("LATCHKEY_METRICS_LISTEN", "off")
            .env("LATCHKEY_ENV", "production")
            .env(secret.0, secret.1)
            .env("LATCHKEY_KEY_ENCRYPTION_KEY", kek)
            .env_remove("LATCHKEY_SMTP_URL");
        if let Some(schema) = &app.config.database_schema {
            cmd.env("LATCHKEY_DATABASE_SCHEMA", schema);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    for variable in [
        "LATCHKEY_PUBLIC_URL",
        "LATCHKEY_SMTP_URL",
        "LATCHKEY_ALLOW_INSECURE_URLS",
    ] {
        assert!(stderr.contains(variable), "{variable} not named: {stderr}");
    }
    let plain = run(&[
        ("LATCHKEY_PUBLIC_URL", "https://auth.shop.example"),
        ("LATCHKEY_SMTP_URL", "smtp://user:hunter2@127.0.0.1:2525"),
    ]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success());
    assert!(stderr.contains("LATCHKEY_ALLOW_INSECURE_SMTP"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the SMTP password was printed: {stderr}"
    );
    assert!(!stderr.contains("LATCHKEY_PUBLIC_URL"), "{stderr}");
    // Staging, explicitly: it starts.
    let staging = crate::process::ServerProcess::start(
        &app.config,
        &[
            ("LATCHKEY_ENV", "production".to_owned()),
            (secret.0, secret.1.to_owned()),
            ("LATCHKEY_ALLOW_INSECURE_URLS", "true".to_owned()),
            ("LATCHKEY_ALLOW_INSECURE_MAIL_DIR", "true".to_owned()),
        ],
    )
    .await;
    drop(staging);
}

async fn graphiql_is_served_in_development(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.client.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );
    let res = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(res["data"]["__schema"]["queryType"]["name"], "Query");
}

async fn internal_errors_never_leak_sql(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn(backend).await;
    app.create_customer("fault@example.com", PASSWORD).await;
    // A real storage fault: the sessions table is gone.
    app.db
        .execute_unprepared("DROP TABLE access_tokens")
        .await
        .unwrap();
    let res = app.sign_in_response("fault@example.com", PASSWORD).await;
    assert_eq!(code(&res), "INTERNAL_SERVER_ERROR");
    let text = res.to_string().to_lowercase();
    for leak in [
        "access_tokens",
        "insert",
        "sql",
        "table",
        "fault@example.com",
    ] {
        assert!(!text.contains(leak), "{leak} leaked: {res}");
    }
    assert!(
        text.contains("reference"),
        "a reference ties the answer to the log line"
    );
}

async fn responses_carry_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(json!({"query": "{ __typename }"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().contains_key("x-request-id"));
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}
