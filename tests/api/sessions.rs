//! Sessions: one per access token, listed, revoked one by one, expiring, never shared.

use chrono::Duration;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, code};

crate::tests![
    a_customer_sees_their_devices_and_can_sign_out_one,
    a_customer_cannot_sign_out_someone_elses_device,
    tokens_expire_after_the_customer_token_lifetime,
    forged_and_malformed_tokens_are_refused,
    a_token_of_a_customer_never_reaches_another_customer,
    a_document_looks_its_customer_up_once_and_sees_its_own_sign_out,
    live_sessions_are_capped_and_the_oldest_is_signed_out,
    successful_sign_ins_are_counted_per_account_per_hour,
];

const SESSIONS: &str =
    "{ customerSessions { id clientIp userAgent current createdAt lastUsedAt expiresAt } }";
const REVOKE: &str = "mutation($id: ID!) { revokeCustomerSession(id: $id) }";

async fn a_customer_sees_their_devices_and_can_sign_out_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("devices@example.com", PASSWORD).await;
    let laptop = app.sign_in("devices@example.com", PASSWORD).await;
    let phone = app.sign_in("devices@example.com", PASSWORD).await;
    let res = app.gql_as(Some(&laptop), SESSIONS, json!({})).await;
    let sessions = res["data"]["customerSessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{res}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions.iter().all(|s| s["clientIp"] == "127.0.0.1"));
    assert!(sessions.iter().all(|s| s["userAgent"] == "latchkey-tests"));
    let phone_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].clone();

    let res = app
        .gql_as(Some(&laptop), REVOKE, json!({"id": phone_id}))
        .await;
    assert_eq!(res["data"]["revokeCustomerSession"], true);
    assert_eq!(app.whoami(&phone).await, Err("UNAUTHENTICATED".into()));
    assert!(app.whoami(&laptop).await.is_ok());
    let res = app.gql_as(Some(&laptop), SESSIONS, json!({})).await;
    assert_eq!(res["data"]["customerSessions"].as_array().unwrap().len(), 1);
    // Revoking it again: already gone.
    let res = app
        .gql_as(Some(&laptop), REVOKE, json!({"id": phone_id}))
        .await;
    assert_eq!(code(&res), "NOT_FOUND");
}

async fn a_customer_cannot_sign_out_someone_elses_device(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("alice@example.com", PASSWORD).await;
    app.create_customer("bob@example.com", PASSWORD).await;
    let alice = app.sign_in("alice@example.com", PASSWORD).await;
    let bob = app.sign_in("bob@example.com", PASSWORD).await;
    let bobs = app.gql_as(Some(&bob), SESSIONS, json!({})).await;
    let bob_session = bobs["data"]["customerSessions"][0]["id"].clone();
    let res = app
        .gql_as(Some(&alice), REVOKE, json!({"id": bob_session}))
        .await;
    assert_eq!(code(&res), "NOT_FOUND");
    let res = app
        .gql_as(Some(&alice), REVOKE, json!({"id": "not-a-uuid"}))
        .await;
    assert_eq!(code(&res), "NOT_FOUND");
    assert_eq!(app.whoami(&bob).await, Ok("bob@example.com".into()));
}

async fn tokens_expire_after_the_customer_token_lifetime(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("expiry@example.com", PASSWORD).await;
    let token = app.sign_in("expiry@example.com", PASSWORD).await;
    app.clock.advance(Duration::minutes(59));
    assert!(app.whoami(&token).await.is_ok());
    app.clock.advance(Duration::minutes(1));
    assert_eq!(app.whoami(&token).await, Err("UNAUTHENTICATED".into()));
}

async fn forged_and_malformed_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("forge@example.com", PASSWORD).await;
    let token = app.sign_in("forge@example.com", PASSWORD).await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let header_none = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header_none}.{}.", parts[1]);
    parts[2] = parts[2].chars().rev().collect();
    let bad_signature = parts.join(".");
    for bad in [
        "garbage".to_owned(),
        alg_none,
        bad_signature,
        format!("{token}x"),
        "x".repeat(5000),
    ] {
        assert_eq!(app.whoami(&bad).await, Err("UNAUTHENTICATED".into()));
    }
    // Another scheme is no bearer token at all.
    let res = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {token}"))
        .body(json!({"query": "{ customer { email } }"}).to_string())
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(code(&res), "UNAUTHENTICATED");
}

async fn a_token_of_a_customer_never_reaches_another_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("one@example.com", PASSWORD).await;
    app.create_customer("two@example.com", PASSWORD).await;
    let one = app.sign_in("one@example.com", PASSWORD).await;
    let two = app.sign_in("two@example.com", PASSWORD).await;
    assert_eq!(app.whoami(&one).await, Ok("one@example.com".into()));
    assert_eq!(app.whoami(&two).await, Ok("two@example.com".into()));
    let res = app.gql_as(Some(&one), SESSIONS, json!({})).await;
    assert_eq!(res["data"]["customerSessions"].as_array().unwrap().len(), 1);
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// One principal per request: three fields that need the signed-in customer cost what one does,
/// and a field that ends the request's own session signs the rest of the document out.
async fn a_document_looks_its_customer_up_once_and_sees_its_own_sign_out(backend: Backend) {
    use std::sync::atomic::Ordering;
    let app = TestApp::spawn(backend).await;
    app.create_customer("once@example.com", PASSWORD).await;
    let token = app.sign_in("once@example.com", PASSWORD).await;
    let cost = |query: &'static str| {
        let (app, token) = (&app, token.clone());
        async move {
            // The mail worker shares the counter: keep the least of three.
            let mut least = u64::MAX;
            for _ in 0..3 {
                let before = app.statements.load(Ordering::SeqCst);
                let res = app.gql_as(Some(&token), query, json!({})).await;
                assert!(res["errors"].is_null(), "{res}");
                least = least.min(app.statements.load(Ordering::SeqCst) - before);
            }
            least
        }
    };
    let one = cost("{ customer { email } }").await;
    let three =
        cost("{ a: customer { email } b: customer { firstname } c: customer { id } }").await;
    assert_eq!(
        one, three,
        "each customer field looked the session up again"
    );

    let res = app
        .gql_as(
            Some(&token),
            "mutation { revokeCustomerToken changeCustomerPassword(currentPassword: \"kx7!qzmw\", newPassword: \"fresh-Pw-2027\") { email } }",
            json!({}),
        )
        .await;
    assert_eq!(res["data"]["revokeCustomerToken"], true, "{res}");
    assert_eq!(
        res["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{res}"
    );
    assert_eq!(res["errors"][0]["path"][0], "changeCustomerPassword");
    app.sign_in("once@example.com", PASSWORD).await;
}

/// A customer (or an admin) holds at most `LATCHKEY_MAX_SESSIONS` live sessions: a sign-in
/// beyond it signs the oldest out, so correct sign-ins (a hundred aliases in one document, a
/// script) cannot pile up sessions and make every export and devices list grow without end.
async fn live_sessions_are_capped_and_the_oldest_is_signed_out(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_sessions = 3).await;
    app.create_customer("many@example.com", PASSWORD).await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(app.sign_in("many@example.com", PASSWORD).await);
    }
    for (i, token) in tokens.iter().enumerate() {
        let expected = if i < 2 {
            Err("UNAUTHENTICATED".to_owned())
        } else {
            Ok("many@example.com".to_owned())
        };
        assert_eq!(app.whoami(token).await, expected, "session {i}");
    }
    let res = app.gql_as(Some(&tokens[4]), SESSIONS, json!({})).await;
    assert_eq!(
        res["data"]["customerSessions"].as_array().map(Vec::len),
        Some(3),
        "{res}"
    );
    // Aliased sign-ins in one document: each gets a token, the cap still holds.
    let aliases: String = (0..8)
        .map(|i| format!("s{i}: generateCustomerToken(email: $e, password: $p) {{ token }} "))
        .collect();
    let res = app
        .gql(
            &format!("mutation($e: String!, $p: String!) {{ {aliases} }}"),
            json!({"e": "many@example.com", "p": PASSWORD}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let newest = res["data"]["s7"]["token"].as_str().unwrap().to_owned();
    let res = app.gql_as(Some(&newest), SESSIONS, json!({})).await;
    assert_eq!(
        res["data"]["customerSessions"].as_array().map(Vec::len),
        Some(3),
        "{res}"
    );
    // Admins too.
    let first = app.admin_token("administrator").await;
    let me = "{ currentAdmin { username } }";
    let username =
        app.gql_as(Some(&first), me, json!({})).await["data"]["currentAdmin"]["username"]
            .as_str()
            .unwrap()
            .to_owned();
    for _ in 0..3 {
        let res = app.admin_sign_in(&username, "admin-Password-2026").await;
        assert!(res["errors"].is_null(), "{res}");
    }
    let res = app.gql_as(Some(&first), me, json!({})).await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
}

/// `LATCHKEY_MAX_SIGN_INS_PER_HOUR`: someone holding the password cannot mint sessions without
/// end (each one is work, rows and a devices-list line). Counted only for correct passwords:
/// a wrong one still answers AUTHENTICATION_FAILED, so the limit tells a guesser nothing, and
/// another account is not touched.
async fn successful_sign_ins_are_counted_per_account_per_hour(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_sign_ins_per_hour = 3).await;
    app.create_customer("hourly@example.com", PASSWORD).await;
    app.create_customer("other@example.com", PASSWORD).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(app.sign_in("hourly@example.com", PASSWORD).await);
    }
    let res = app.sign_in_response("hourly@example.com", PASSWORD).await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
    let retry = res["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap();
    assert!(retry > 3500 && retry <= 3600, "{res}");
    assert_eq!(
        code(
            &app.sign_in_response("hourly@example.com", "wrong-password-1")
                .await
        ),
        "AUTHENTICATION_FAILED"
    );
    // Nothing was minted and the sessions already held stay.
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM access_tokens").await,
        3,
        "a refused sign-in stores no session"
    );
    for token in &tokens {
        assert_eq!(app.whoami(token).await, Ok("hourly@example.com".into()));
    }
    app.sign_in("other@example.com", PASSWORD).await;
    // An hour later the account signs in again.
    app.clock.advance(Duration::minutes(61));
    app.sign_in("hourly@example.com", PASSWORD).await;
}
