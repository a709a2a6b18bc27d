//! `POST /introspect` for the store's other services: live tokens are active, and sign-out,
//! Force Sign In and password changes show on the very next call; only service credentials
//! may ask, and a refused caller learns nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp};

crate::tests![
    introspection_sees_sign_out_and_force_sign_in_at_once,
    only_a_live_service_credential_may_introspect,
];

/// `latchkey service create NAME`: the secret it prints.
pub(crate) fn create_service(app: &TestApp, name: &str) -> String {
    create_service_with(app, name, &[])
}

/// `latchkey service create NAME ARGS…`: the secret it prints.
pub(crate) fn create_service_with(app: &TestApp, name: &str, args: &[&str]) -> String {
    let out = app
        .command(&[&["service", "create", name], args].concat())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = stdout.lines().last().unwrap().trim().to_owned();
    assert!(secret.starts_with("lks_"), "{stdout}");
    secret
}

pub(crate) async fn introspect(
    app: &TestApp,
    auth: Option<(&str, &str)>,
    token: &str,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.url("/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=access_token",
            url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        ));
    if let Some((name, secret)) = auth {
        req = req.basic_auth(name, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn introspection_sees_sign_out_and_force_sign_in_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = create_service(&app, "orders");
    let auth = Some(("orders", secret.as_str()));
    app.create_customer("intro@example.com", PASSWORD).await;
    let id = app.customer_id("intro@example.com").await;
    let token = app.sign_in("intro@example.com", PASSWORD).await;

    let res = app
        .client
        .post(app.url("/introspect"))
        .basic_auth("orders", Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let active: Value = res.json().await.unwrap();
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], json!(id));
    assert_eq!(active["aud"], "latchkey:customer");
    assert_eq!(active["token_type"], "Bearer");
    assert!(active["exp"].as_i64().unwrap() > active["iat"].as_i64().unwrap());
    assert!(active["jti"].is_string());

    // Force Sign In: inactive on the next call, and the answer says nothing more.
    let admin = app.admin_token("support").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
    // Two: `customer_id` signed in too.
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 2,
        "{res}"
    );
    assert_eq!(
        introspect(&app, auth, &token).await,
        (StatusCode::OK, json!({"active": false}))
    );

    // The customer's own sign-out.
    let second = app.sign_in("intro@example.com", PASSWORD).await;
    assert_eq!(introspect(&app, auth, &second).await.1["active"], true);
    let res = app
        .gql_as(Some(&second), "mutation { revokeCustomerToken }", json!({}))
        .await;
    assert_eq!(res["data"]["revokeCustomerToken"], true, "{res}");
    assert_eq!(
        introspect(&app, auth, &second).await.1,
        json!({"active": false})
    );

    // Admin tokens, with their role, only to a credential made for them: to the others an
    // admin token is simply not active (they learn nothing of admins or roles).
    assert_eq!(
        introspect(&app, auth, &admin).await.1,
        json!({"active": false})
    );
    let console = create_service_with(&app, "console", &["--admin-tokens"]);
    let listed = app.command(&["service", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("console") && listed.contains("customer and admin tokens"),
        "{listed}"
    );
    let (_, admin_answer) = introspect(&app, Some(("console", console.as_str())), &admin).await;
    assert_eq!(admin_answer["active"], true);
    assert_eq!(admin_answer["aud"], "latchkey:admin");
    assert_eq!(admin_answer["role"], "support");
    for junk in ["x", "a.b.c", &"y".repeat(5000)] {
        assert_eq!(
            introspect(&app, auth, junk).await.1,
            json!({"active": false})
        );
    }
}

async fn only_a_live_service_credential_may_introspect(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = create_service(&app, "loyalty");
    app.create_customer("guard@example.com", PASSWORD).await;
    let token = app.sign_in("guard@example.com", PASSWORD).await;
    let other = create_service(&app, "cart");
    for auth in [
        None,
        Some(("loyalty", "lks_wrong")),
        Some(("nobody", secret.as_str())),
        // Another service's secret under this name.
        Some(("loyalty", other.as_str())),
        // A customer's own token is no service credential.
        Some(("loyalty", token.as_str())),
    ] {
        let res = app
            .client
            .post(app.url("/introspect"))
            .form(&[("token", token.as_str())]);
        let res = match auth {
            Some((n, s)) => res.basic_auth(n, Some(s)),
            None => res,
        }
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert_eq!(
            res.headers()["www-authenticate"],
            "Basic realm=\"latchkey-introspect\""
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body, json!({"error": "invalid_client"}), "{auth:?}");
    }
    // The token itself is untouched by any of that.
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("guard@example.com"));
    // A body that is not a form, or no token: 4xx, as RFC 7662 has it.
    let json_body = app
        .client
        .post(app.url("/introspect"))
        .basic_auth("loyalty", Some(&secret))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 415);
    let empty = app
        .client
        .post(app.url("/introspect"))
        .basic_auth("loyalty", Some(&secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    // Names are unique; a revoked credential stops working at once, and the name is free again.
    let again = app
        .command(&["service", "create", "loyalty"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let out = app
        .command(&["service", "revoke", "loyalty"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (status, _) = introspect(&app, Some(("loyalty", &secret)), &token).await;
    assert_eq!(status, 401);
    let renewed = create_service(&app, "loyalty");
    let (status, body) = introspect(&app, Some(("loyalty", &renewed)), &token).await;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(true))
    );
    let listed = app.command(&["service", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("cart") && listed.contains("loyalty"),
        "{listed}"
    );
    assert!(
        !listed.contains("lks_"),
        "secrets are never listed: {listed}"
    );
}
