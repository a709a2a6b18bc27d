//! The peers' published vulnerabilities, each carried as a test of Latchkey's own surface:
//! what went wrong there must not go wrong here.

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    introspect::{create_service, introspect},
    smtp::SmtpReceiver,
};

crate::tests![
    cosmic_sting_the_live_signing_key_opens_no_session_a_token_does_not_name,
    session_reaper_crafted_nested_input_is_refused_and_writes_nothing,
    keycloak_a_lockout_that_lands_while_a_sign_in_hashes_mints_no_token,
    strapi_limit_keys_cannot_be_varied_by_the_caller,
    medusa_link_tokens_and_access_tokens_never_stand_in_for_each_other,
    no_secret_of_any_kind_reaches_the_logs,
];

/// The codec the server signs with, built from its own configuration and database: what an
/// attacker holding the live private key (CVE-2024-34102, "CosmicSting") could sign.
async fn live_codec(app: &TestApp) -> domain::token::TokenCodec {
    let backend = persistence::Backend::of(&app.config.database_url).unwrap();
    let keys = persistence::Stores::new(app.db.clone()).keys;
    latchkey::keys::token_codec(&app.config, keys, backend, &*app.clock)
        .await
        .unwrap()
        .0
}

/// Adobe Commerce CVE-2024-34102: a stolen signing key forged API tokens for months. Here a
/// token is only as good as the session row it names: signed with the live key, a token for
/// a session that does not exist, was revoked, or belongs to another customer is refused by
/// the API and by `/introspect`.
async fn cosmic_sting_the_live_signing_key_opens_no_session_a_token_does_not_name(
    backend: Backend,
) {
    use domain::{clock::Clock, token::TokenKind};
    let app = TestApp::spawn(backend).await;
    app.create_customer("ann@example.com", PASSWORD).await;
    app.create_customer("bob@example.com", PASSWORD).await;
    let ann = app.sign_in("ann@example.com", PASSWORD).await;
    let bob = app.sign_in("bob@example.com", PASSWORD).await;
    let signed_out = app.sign_in("ann@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&signed_out),
            "mutation { revokeCustomerToken }",
            json!({}),
        )
        .await;
    assert_eq!(res["data"]["revokeCustomerToken"], true, "{res}");
    let codec = live_codec(&app).await;
    let now = app.clock.now();
    let claims = |token: &str| codec.verify(TokenKind::Customer, token, now).unwrap();
    let (ann_claims, bob_claims) = (claims(&ann), claims(&bob));
    let revoked = claims(&signed_out);
    let forge = |subject, session| {
        codec
            .sign(
                TokenKind::Customer,
                subject,
                session,
                now,
                now + chrono::Duration::hours(1),
            )
            .unwrap()
    };
    let service = create_service(&app, "orders");
    for (what, forged) in [
        (
            "a random session",
            forge(ann_claims.subject, domain::SessionId::new()),
        ),
        (
            "a revoked session",
            forge(revoked.subject, revoked.session_id),
        ),
        (
            "another customer's session",
            forge(ann_claims.subject, bob_claims.session_id),
        ),
        ("an admin-kind claim of a customer's session", {
            codec
                .sign(
                    TokenKind::Admin,
                    ann_claims.subject,
                    ann_claims.session_id,
                    now,
                    now + chrono::Duration::hours(1),
                )
                .unwrap()
        }),
    ] {
        assert_eq!(
            app.whoami(&forged).await,
            Err("UNAUTHENTICATED".to_owned()),
            "{what}"
        );
        let (_, answer) = introspect(&app, Some(("orders", &service)), &forged).await;
        assert_eq!(answer, json!({"active": false}), "{what}");
    }
    // The genuine tokens still work: the refusals are about the sessions, not the key.
    assert_eq!(app.whoami(&ann).await.as_deref(), Ok("ann@example.com"));
    assert_eq!(app.whoami(&bob).await.as_deref(), Ok("bob@example.com"));
}

/// CVE-2025-54236 ("SessionReaper"): crafted nested input took over sessions. Every mutation
/// input here is a closed shape: unknown or extra nested fields, `__typename` or `@type`
/// keys, values of the wrong shape and deep nesting are BAD_USER_INPUT, and nothing is
/// written.
async fn session_reaper_crafted_nested_input_is_refused_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("kept@example.com", PASSWORD).await;
    let token = app.sign_in("kept@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    let deep = (0..40).fold(json!("x"), |inner, _| json!({ "a": inner }));
    let create = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }";
    let update = "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { email } }";
    let settings = "mutation($i: PasswordSettingsInput!) { updatePasswordSettings(input: $i) { minPasswordLength } }";
    let base = json!({"email": "new@example.com", "firstname": "A", "lastname": "B", "password": PASSWORD});
    let with = |extra: Value| {
        let mut input = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        input
    };
    let cases: Vec<(Option<&str>, &str, Value)> = vec![
        (None, create, with(json!({"__typename": "Customer"}))),
        (None, create, with(json!({"@type": "AdminUser"}))),
        (None, create, with(json!({"role": "administrator"}))),
        (
            None,
            create,
            with(json!({"email": {"value": "new@example.com", "id": "x"}})),
        ),
        (
            None,
            create,
            with(json!({"extension_attributes": deep.clone()})),
        ),
        (
            Some(&token),
            update,
            json!({"firstname": "A", "customer": {"id": "1"}}),
        ),
        (Some(&token), update, json!({"email": "moved@example.com"})),
        (
            Some(&token),
            update,
            json!({"__typename": "Customer", "lastname": "Z"}),
        ),
        (
            Some(&admin),
            settings,
            json!({"minPasswordLength": 8, "lockout": {"failures": 0}}),
        ),
        (
            Some(&admin),
            settings,
            json!({"minPasswordLength": deep.clone()}),
        ),
    ];
    let before = (app.count("customers").await, app.audited().await);
    for (auth, query, input) in cases {
        let res = app.gql_as(auth, query, json!({"i": input})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{input}: {res}");
        assert!(
            res["data"].is_null()
                || res["data"]
                    .as_object()
                    .is_some_and(|d| d.values().all(Value::is_null)),
            "{res}"
        );
    }
    assert_eq!(
        (app.count("customers").await, app.audited().await),
        before,
        "nothing written"
    );
    let me = app
        .gql_as(
            Some(&token),
            "{ customer { email firstname lastname } }",
            json!({}),
        )
        .await;
    assert_eq!(
        me["data"]["customer"],
        json!({"email": "kept@example.com", "firstname": "Ann", "lastname": "Lee"})
    );
    let s = app
        .gql_as(
            Some(&admin),
            "{ passwordSettings { minPasswordLength } }",
            json!({}),
        )
        .await;
    assert_eq!(s["data"]["passwordSettings"]["minPasswordLength"], 6, "{s}");
}

/// Keycloak CVE-2026-9798 / -16103: the lockout was checked where a flow started, not where
/// the token was minted. Here an admin's lock is checked where the session row is inserted:
/// a sign-in whose password step passed before the lock gets no token from its factor step.
/// (A customer's lock, per network, is checked where a code sign-in mints: `attack.rs`.)
async fn keycloak_a_lockout_that_lands_while_a_sign_in_hashes_mints_no_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    const USER: &str = "locked-admin";
    const PW: &str = "admin-Password-2026";
    latchkey::create_admin(&app.config, USER, "support", PW)
        .await
        .unwrap();
    // The first sign-in enrols a factor and keeps its recovery codes.
    assert!(app.admin_sign_in(USER, PW).await["token"].is_string());
    const START: &str = "mutation($u: String!, $p: String!) { startAdminSignIn(username: $u, password: $p) { challenge } }";
    const COMPLETE: &str = "mutation($c: String!, $code: String!) { completeAdminSignIn(challenge: $c, code: $code) { token } }";
    let started = app.gql(START, json!({"u": USER, "p": PW})).await;
    let challenge = started["data"]["startAdminSignIn"]["challenge"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    // The lock lands between the password step and the factor step.
    let until = chrono::Utc::now() + chrono::Duration::days(365);
    app.execute(
        "UPDATE admin_users SET locked_until = $1",
        vec![until.into()],
    )
    .await;
    let res = app
        .gql(
            COMPLETE,
            json!({"c": challenge, "code": app.recovery_code(USER)}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let again = app.admin_sign_in(USER, PW).await;
    assert_eq!(code(&again), "AUTHENTICATION_FAILED", "{again}");
}

/// Strapi CVE-2025-64526: a limit keyed on a field the attacker chose. Here the keys are the
/// client and the normalised account name: extra variables, aliases and operation names do not
/// make a new key, nor do case, whitespace or Unicode-compatibility variants of one address
/// (plus-addresses are other addresses, and spend the client's budget).
async fn strapi_limit_keys_cannot_be_varied_by_the_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // 50 invalid reset links, each its own document with random extras: 10 are looked at.
    let mut limited = 0;
    for i in 0..50 {
        let query = format!(
            "mutation Op{i}($t: String!, $p: String!) {{ a{i}: resetPassword(resetPasswordToken: $t, newPassword: $p) }}"
        );
        let res = app
            .gql(
                &query,
                json!({"t": format!("invalid-token-{i:040}"), "p": "fresh-Pw-2026", format!("x{i}"): uuid::Uuid::now_v7().to_string()}),
            )
            .await;
        match code(&res) {
            "RATE_LIMITED" => limited += 1,
            other => assert_eq!(other, "RESET_TOKEN_INVALID", "{res}"),
        }
    }
    assert_eq!(
        limited, 40,
        "ten invalid links per client, however the request is dressed"
    );
    // 50 sign-ins with variants of one address: the lockout (10) counts them as one name.
    app.create_customer("variant@example.com", PASSWORD).await;
    let variants = [
        "variant@example.com",
        "VARIANT@example.com",
        " variant@example.com ",
        "Variant@Example.COM",
        "ｖａｒｉａｎｔ@example.com",
    ];
    for i in 0..50 {
        let email = variants[i % variants.len()];
        let res = app
            .sign_in_response(email, &format!("wrong-guess-{i}"))
            .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{email}: {res}");
    }
    let res = app.sign_in_response("variant@example.com", PASSWORD).await;
    assert_eq!(
        code(&res),
        "AUTHENTICATION_FAILED",
        "locked out as one name: {res}"
    );
    let failures = app
        .scalar("SELECT COUNT(*) AS n FROM limit_events WHERE key = 'sign-in:customer:variant@example.com'")
        .await;
    assert!(failures >= 10, "{failures}");
    // A plus-address is another address (another account could own it): not this lockout.
    let res = app.sign_in_response("variant+x@example.com", "wrong").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let plus = app
        .scalar("SELECT COUNT(*) AS n FROM limit_events WHERE key = 'sign-in:customer:variant+x@example.com'")
        .await;
    assert_eq!(plus, 1);
}

/// Medusa #12524: a reset token was accepted as a bearer token. Here link tokens (reset,
/// email-change, invitation) are never access tokens, and an access token is no link.
async fn medusa_link_tokens_and_access_tokens_never_stand_in_for_each_other(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("links@example.com", PASSWORD).await;
    let token = app.sign_in("links@example.com", PASSWORD).await;
    app.request_reset("links@example.com").await;
    let reset = smtp
        .wait_for_mail("links@example.com", "/account/reset-password")
        .await
        .token();
    app.gql_as(
        Some(&token),
        "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
        json!({"e": "links.new@example.com", "p": PASSWORD}),
    )
    .await;
    let confirm = smtp
        .wait_for_mail("links.new@example.com", "/account/confirm-email")
        .await
        .token();
    let root = app.admin_token("administrator").await;
    app.gql_as(
        Some(&root),
        "mutation { createAdminUser(username: \"invitee\", email: \"invitee@example.com\", role: VIEWER) { id } }",
        json!({}),
    )
    .await;
    let invitation = smtp
        .wait_for_mail("invitee@example.com", "/admin/set-password")
        .await
        .token();
    for link in [&reset, &confirm, &invitation] {
        assert_eq!(app.whoami(link).await, Err("UNAUTHENTICATED".to_owned()));
        let admin = app
            .gql_as(Some(link), "{ currentAdmin { username } }", json!({}))
            .await;
        assert_eq!(code(&admin), "UNAUTHENTICATED", "{admin}");
    }
    // And the other way round: an access token is no link of any kind.
    let res = app.reset_password(&token, "fresh-Pw-2026").await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
    let res = app
        .gql(
            "mutation($t: String!) { confirmCustomerEmailChange(token: $t) }",
            json!({"t": token}),
        )
        .await;
    assert_eq!(code(&res), "LINK_INVALID", "{res}");
    let res = app
        .gql(
            "mutation($t: String!, $p: String!) { setAdminPassword(token: $t, newPassword: $p) }",
            json!({"t": root, "p": "Invited-Admin-2026"}),
        )
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
    // None of it changed anything: the customer is where they were, signed in.
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("links@example.com"));
}

/// Every flow at the most verbose level, and not one secret in the logs: passwords (customer
/// and admin), access tokens (customer and admin), every kind of emailed link (reset,
/// email-change confirmation and cancellation, invitation, admin reset), service credentials,
/// and query strings and bodies that carry them.
async fn no_secret_of_any_kind_reaches_the_logs(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    let canary = uuid::Uuid::new_v4().simple().to_string();
    let password = format!("Log-Canary-{canary}");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let email = format!("logs-{tag}@example.com");
    let mut secrets: Vec<String> = vec![password.clone()];
    app.create_customer(&email, &password).await;
    let token = app.sign_in(&email, &password).await;
    secrets.push(token.clone());
    app.whoami(&token).await.unwrap();
    // A reset link, used, with a new password.
    app.request_reset(&email).await;
    let reset = smtp
        .wait_for_mail(&email, "/account/reset-password")
        .await
        .token();
    secrets.push(reset.clone());
    // The page the link opens, with the token in its query string.
    app.client
        .get(app.url(&format!("/account/reset-password?token={reset}")))
        .send()
        .await
        .unwrap();
    let second = format!("{password}-reset");
    secrets.push(second.clone());
    let res = app.reset_password(&reset, &second).await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    let token = app.sign_in(&email, &second).await;
    secrets.push(token.clone());
    // Both email-change links: one confirmed, one used to cancel.
    let moved = format!("moved-{tag}@example.com");
    app.gql_as(
        Some(&token),
        "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
        json!({"e": moved, "p": second}),
    )
    .await;
    let confirm = smtp
        .wait_for_mail(&moved, "/account/confirm-email")
        .await
        .token();
    let cancel = smtp
        .wait_for_mail(&email, "/account/cancel-email-change")
        .await
        .token();
    secrets.extend([confirm.clone(), cancel.clone()]);
    app.gql(
        "mutation($t: String!) { confirmCustomerEmailChange(token: $t) }",
        json!({"t": confirm}),
    )
    .await;
    app.gql(
        "mutation($t: String!) { cancelCustomerEmailChange(token: $t) }",
        json!({"t": cancel}),
    )
    .await;
    // The cancel undid a confirmed change: the removed address gets the "give it back" link.
    let release = smtp
        .wait_for_mail(&moved, "/account/release-account")
        .await
        .token();
    secrets.push(release.clone());
    app.client
        .get(app.url(&format!("/account/release-account?token={release}")))
        .send()
        .await
        .unwrap();
    let res = app
        .gql(
            "mutation($t: String!) { releaseCustomerAccount(token: $t) }",
            json!({"t": release}),
        )
        .await;
    assert_eq!(res["data"]["releaseCustomerAccount"], true, "{res}");
    secrets.extend(admin_flows_with_secrets(&app, &smtp, &canary, &tag).await);
    // A service credential, used; a token and a password sent where they do not belong.
    let service = create_service(&app, "canary");
    secrets.push(service.clone());
    introspect(&app, Some(("canary", &service)), &token).await;
    introspect(&app, Some(("canary", &format!("{service}x"))), &token).await;
    app.client
        .get(app.url(&format!(
            "/graphql?query={{customer{{email}}}}&token={token}&password={second}"
        )))
        .send()
        .await
        .unwrap();
    app.sign_in_response(&email, &format!("{second}-wrong"))
        .await;
    secrets.push(format!("{second}-wrong"));

    let logs = crate::helpers::logs();
    assert!(
        logs.contains("email_changed"),
        "the capture runs at every level"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        if let Some(signature) = secret.split('.').nth(2) {
            assert!(
                !logs.contains(signature),
                "a token's signature reached the logs"
            );
        }
    }
}

/// An admin's flows: invitation, their password, their token, the console's reset link; the
/// secrets each showed.
async fn admin_flows_with_secrets(
    app: &TestApp,
    smtp: &SmtpReceiver,
    canary: &str,
    tag: &str,
) -> Vec<String> {
    let mut secrets = Vec::new();
    let root = app.admin_token("administrator").await;
    secrets.push(root.clone());
    let admin_name = format!("watcher{tag}");
    app.gql_as(
        Some(&root),
        "mutation($u: String!, $e: String!) { createAdminUser(username: $u, email: $e, role: VIEWER) { id } }",
        json!({"u": admin_name, "e": format!("{admin_name}@example.com")}),
    )
    .await;
    let invitation = smtp
        .wait_for_mail(&format!("{admin_name}@example.com"), "/admin/set-password")
        .await
        .token();
    let admin_password = format!("Admin-Canary-{canary}");
    secrets.extend([invitation.clone(), admin_password.clone()]);
    let set = "mutation($t: String!, $p: String!) { setAdminPassword(token: $t, newPassword: $p) }";
    let res = app
        .gql(set, json!({"t": invitation, "p": admin_password}))
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    let res = app.admin_sign_in(&admin_name, &admin_password).await;
    let admin_token = res["token"].as_str().unwrap().to_owned();
    secrets.push(admin_token.clone());
    app.gql_as(
        Some(&admin_token),
        "{ currentAdmin { username } }",
        json!({}),
    )
    .await;
    app.gql(
        "mutation($u: String!) { requestAdminPasswordReset(username: $u) }",
        json!({"u": admin_name}),
    )
    .await;
    let admin_address = format!("{admin_name}@example.com");
    let mut admin_reset = None;
    for _ in 0..400 {
        admin_reset = smtp
            .messages()
            .iter()
            .filter(|m| m.to == vec![admin_address.clone()])
            .filter(|m| m.text().contains("/admin/set-password"))
            .map(|m| m.token())
            .find(|t| *t != invitation);
        if admin_reset.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    secrets.push(admin_reset.expect("the console's reset link"));
    secrets
}
