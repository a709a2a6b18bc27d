//! GraphQL over HTTP as the current specification has it: `application/graphql-response+json`
//! for clients that accept it, with 400 and no `data` for requests that never executed; the
//! `application/json` behaviour kept for clients that accept only that; and the audit of
//! graphql-http (every MUST, SHOULD and MAY) run against the real server.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

crate::tests![
    requests_that_never_ran_are_400_without_data_for_graphql_response_json_clients,
    node_the_graphql_http_audit_passes,
];

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> (u16, String, Value) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let media = res.headers()["content-type"].to_str().unwrap().to_owned();
    (status, media, res.json().await.unwrap_or(Value::Null))
}

async fn requests_that_never_ran_are_400_without_data_for_graphql_response_json_clients(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    // What Apollo Client 4 sends.
    let apollo = Some("application/graphql-response+json,application/json;q=0.9");
    let (status, media, body) = post(&app, apollo, json!({"query": "{ __typename }"})).await;
    assert_eq!(
        (status, body),
        (200, json!({"data": {"__typename": "Query"}}))
    );
    assert!(media.starts_with(GRAPHQL_RESPONSE), "{media}");
    for (request, code) in [
        (json!({"query": "{"}), "BAD_USER_INPUT"),
        (json!({"query": "{ noSuchField }"}), "BAD_USER_INPUT"),
        (
            json!({"query": "query($e: String!) { __typename }", "variables": {"e": null}}),
            "BAD_USER_INPUT",
        ),
        (json!({"notAQuery": "{ __typename }"}), "BAD_USER_INPUT"),
        (json!({"query": 7}), "BAD_USER_INPUT"),
        (
            json!({"query": "{ __typename }", "variables": "not a map"}),
            "BAD_USER_INPUT",
        ),
    ] {
        let (status, media, body) = post(&app, apollo, request.clone()).await;
        assert_eq!(status, 400, "{request} → {body}");
        assert!(media.starts_with(GRAPHQL_RESPONSE), "{media}");
        assert!(body.get("data").is_none(), "{request} → {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
    }
    // An operation that ran and failed is still 200, with its data (null) and the error's path.
    let (status, _, body) = post(&app, apollo, json!({"query": "{ customer { email } }"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(body["errors"][0]["path"], json!(["customer"]));
    // Clients of `application/json` (or of no Accept at all) see what they always saw.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let (status, media, body) = post(&app, accept, json!({"query": "{"})).await;
        assert_eq!(status, 200, "{accept:?}");
        assert_eq!(media, "application/json");
        assert_eq!(body["data"], Value::Null);
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
    // Asked for something else only: 406, and nothing ran.
    let (status, _, _) = post(
        &app,
        Some("text/html"),
        json!({"query": "mutation { requestPasswordReset(email: \"a@example.com\") }"}),
    )
    .await;
    assert_eq!(status, 406);
    assert_eq!(app.count("reset_requests").await, 0);
}

async fn node_the_graphql_http_audit_passes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ok, out) = crate::node::run("graphql-http-audit.mjs", &[&app.url("/graphql")]).await;
    let failed: Vec<&str> = out.lines().filter(|l| !l.contains("\"ok\"")).collect();
    assert!(
        ok && failed.is_empty(),
        "audits not passed:\n{}",
        failed.join("\n")
    );
    assert!(out.lines().count() >= 40, "{out}");
}
