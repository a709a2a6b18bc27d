//! Registration, sign-in, lockout and password change.

use chrono::Duration;
use domain::clock::Clock;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, code, logs};

crate::tests![
    a_customer_can_register_sign_in_read_their_account_and_sign_out,
    unknown_email_and_wrong_password_get_byte_identical_answers,
    emails_are_unique_whatever_their_case,
    weak_passwords_are_refused_with_every_broken_rule_and_nothing_is_stored,
    bad_registration_input_gets_a_clear_code_and_stores_nothing,
    ten_wrong_passwords_lock_the_account_for_ten_minutes,
    concurrent_wrong_passwords_are_all_counted,
    changing_the_password_signs_out_other_devices_but_keeps_this_one,
    changing_the_password_requires_the_current_password,
    every_path_that_sets_a_password_applies_the_same_policy,
    passwords_are_never_truncated,
    passwords_and_tokens_never_appear_in_logs,
];

const CREATE: &str = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }";

async fn a_customer_can_register_sign_in_read_their_account_and_sign_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.create_customer("Ann.Lee@Example.com", PASSWORD).await;
    assert_eq!(created["email"], "Ann.Lee@Example.com");
    assert_eq!(created["locale"], "en");

    let res = app.sign_in_response("ann.lee@example.com", PASSWORD).await;
    let token = res["data"]["generateCustomerToken"]["token"]
        .as_str()
        .unwrap();
    let expires: chrono::DateTime<chrono::Utc> = res["data"]["generateCustomerToken"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lifetime = expires - app.clock.now();
    assert!(lifetime <= Duration::hours(1) && lifetime > Duration::minutes(59));

    let me = app
        .gql_as(
            Some(token),
            "{ customer { id email firstname lastname } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["customer"]["id"], created["id"]);
    assert_eq!(me["data"]["customer"]["firstname"], "Ann");

    let out = app
        .gql_as(Some(token), "mutation { revokeCustomerToken }", json!({}))
        .await;
    assert_eq!(out["data"]["revokeCustomerToken"], true);
    // Minted and revoked within the same second: refused on the very next request.
    assert_eq!(app.whoami(token).await, Err("UNAUTHENTICATED".into()));
    let again = app
        .gql_as(Some(token), "mutation { revokeCustomerToken }", json!({}))
        .await;
    assert_eq!(code(&again), "UNAUTHENTICATED");
}

async fn unknown_email_and_wrong_password_get_byte_identical_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("known@example.com", PASSWORD).await;
    let wrong = app
        .sign_in_response("known@example.com", "not-the-password")
        .await;
    let unknown = app
        .sign_in_response("nobody@example.com", "not-the-password")
        .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.to_string(), unknown.to_string());
}

async fn emails_are_unique_whatever_their_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("Ann@Example.com", PASSWORD).await;
    for variant in ["ann@example.com", " ANN@EXAMPLE.COM "] {
        let res = app
            .gql(
                CREATE,
                json!({"i": {"email": variant, "firstname": "X", "lastname": "Y", "password": "another-Pw9"}}),
            )
            .await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], "email");
    }
    assert_eq!(app.count("customers").await, 1);
    // Any case signs in, and the password is still the first account's.
    app.sign_in("ANN@example.COM", PASSWORD).await;
}

async fn weak_passwords_are_refused_with_every_broken_rule_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .gql(
            CREATE,
            json!({"i": {"email": "weak@example.com", "firstname": "Ann", "lastname": "Lee", "password": "a b"}}),
        )
        .await;
    assert_eq!(code(&res), "PASSWORD_POLICY");
    let rules: Vec<&str> = res["errors"][0]["extensions"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["TOO_SHORT", "CONTAINS_WHITESPACE"]);
    // The rule's number, so a client can word it in its own language.
    assert_eq!(res["errors"][0]["extensions"]["violations"][0]["limit"], 6);
    assert!(res["errors"][0]["extensions"]["violations"][1]["limit"].is_null());
    for (password, rule) in [
        ("password123", "COMMON_PASSWORD"),
        ("123456789", "COMMON_PASSWORD"),
        // Not on the list as such: a listed password with digits after it.
        ("password123456789", "COMMON_PASSWORD"),
        // Deep in the breached list, far past a hand-picked one.
        ("letmein123", "COMMON_PASSWORD"),
        ("weakweak-2026", "CONTAINS_PERSONAL_INFORMATION"),
        ("abc\u{0}defghij", "CONTAINS_CONTROL_CHARACTER"),
    ] {
        let res = app
            .gql(
                CREATE,
                json!({"i": {"email": "weakweak@example.com", "firstname": "Ann", "lastname": "Lee", "password": password}}),
            )
            .await;
        assert_eq!(code(&res), "PASSWORD_POLICY", "{password:?}: {res}");
        assert_eq!(
            res["errors"][0]["extensions"]["violations"][0]["rule"],
            rule
        );
    }
    assert_eq!(app.count("customers").await, 0);

    // The strength minimum is a setting: the hardened profile's 3 refuses what 1 allows, and
    // names the score it wants.
    let admin = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation { updatePasswordSettings(input: {minPasswordScore: 3}) { minPasswordScore } }",
            json!({}),
        )
        .await;
    assert_eq!(
        res["data"]["updatePasswordSettings"]["minPasswordScore"], 3,
        "{res}"
    );
    let res = app
        .gql(
            CREATE,
            json!({"i": {"email": "weakweak@example.com", "firstname": "Ann", "lastname": "Lee", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(code(&res), "PASSWORD_POLICY", "{res}");
    assert_eq!(
        res["errors"][0]["extensions"]["violations"][0]["rule"],
        "TOO_WEAK"
    );
    assert_eq!(res["errors"][0]["extensions"]["violations"][0]["limit"], 3);
    assert_eq!(app.count("customers").await, 0);
}

async fn bad_registration_input_gets_a_clear_code_and_stores_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long = "a".repeat(40_000);
    let cases = [
        (
            json!({"email": "not-an-email", "firstname": "A", "lastname": "B", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "a\u{0}b@example.com", "firstname": "A", "lastname": "B", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "a@example.com\r\nBcc: x@evil.example", "firstname": "A", "lastname": "B", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": format!("{long}@example.com"), "firstname": "A", "lastname": "B", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "ok@example.com", "firstname": "Bob\r\nBcc: x@evil.example", "lastname": "B", "password": PASSWORD}),
            "firstname",
        ),
        (
            json!({"email": "ok@example.com", "firstname": "  ", "lastname": "B", "password": PASSWORD}),
            "firstname",
        ),
        (
            json!({"email": "ok@example.com", "firstname": "A", "lastname": long, "password": PASSWORD}),
            "lastname",
        ),
        (
            json!({"email": "ok@example.com", "firstname": "A", "lastname": "B", "password": PASSWORD, "locale": "fr"}),
            "locale",
        ),
    ];
    for (input, field) in cases {
        let res = app.gql(CREATE, json!({"i": input})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], field);
        assert!(
            !res["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("evil")
        );
    }
    // Wrong types and unknown fields are refused by validation.
    for input in [
        json!({"email": 123, "firstname": "A", "lastname": "B", "password": PASSWORD}),
        json!({"email": ["a@example.com", "b@example.com"], "firstname": "A", "lastname": "B", "password": PASSWORD}),
        json!({"email": null, "firstname": "A", "lastname": "B", "password": PASSWORD}),
        json!({"email": "x@example.com", "firstname": "A", "lastname": "B", "password": PASSWORD, "isAdmin": true}),
    ] {
        let res = app.gql(CREATE, json!({"i": input})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    }
    assert_eq!(app.count("customers").await, 0);
    // Japanese and Korean customers keep their locale.
    let res = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { locale firstname } }",
            json!({"i": {"email": "tanaka@example.jp", "firstname": "太郎", "lastname": "田中", "password": PASSWORD, "locale": "ja-JP"}}),
        )
        .await;
    assert_eq!(res["data"]["createCustomer"]["locale"], "ja");
    assert_eq!(res["data"]["createCustomer"]["firstname"], "太郎");
}

async fn ten_wrong_passwords_lock_the_account_for_ten_minutes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("lock@example.com", PASSWORD).await;
    for _ in 0..9 {
        let res = app
            .sign_in_response("lock@example.com", "wrong-guess")
            .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    }
    // Nine failures: still open.
    let token = app.sign_in("lock@example.com", PASSWORD).await;
    assert!(app.whoami(&token).await.is_ok());
    // A success clears the counter; ten fresh failures lock.
    for _ in 0..10 {
        app.sign_in_response("lock@example.com", "wrong-guess")
            .await;
    }
    let locked = app.sign_in_response("lock@example.com", PASSWORD).await;
    let unknown = app.sign_in_response("nobody@example.com", PASSWORD).await;
    assert_eq!(code(&locked), "AUTHENTICATION_FAILED");
    assert_eq!(locked, unknown, "a locked account looks like any failure");
    // Sessions made before the lock keep working: lockout guards sign-in only.
    assert!(app.whoami(&token).await.is_ok());
    app.clock.advance(Duration::minutes(9));
    assert_eq!(
        code(&app.sign_in_response("lock@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    app.clock.advance(Duration::minutes(1));
    app.sign_in("lock@example.com", PASSWORD).await;
}

async fn concurrent_wrong_passwords_are_all_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("race@example.com", PASSWORD).await;
    let attempts = (0..10).map(|_| app.sign_in_response("race@example.com", "wrong-guess"));
    for res in futures::future::join_all(attempts).await {
        assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    }
    assert_eq!(
        code(&app.sign_in_response("race@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED",
        "ten concurrent failures lock the account"
    );
}

async fn changing_the_password_signs_out_other_devices_but_keeps_this_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("change@example.com", PASSWORD).await;
    let this = app.sign_in("change@example.com", PASSWORD).await;
    let other = app.sign_in("change@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&this),
            "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { email } }",
            json!({"c": PASSWORD, "n": "new-Secret-42"}),
        )
        .await;
    assert_eq!(
        res["data"]["changeCustomerPassword"]["email"], "change@example.com",
        "{res}"
    );
    assert!(app.whoami(&this).await.is_ok());
    assert_eq!(app.whoami(&other).await, Err("UNAUTHENTICATED".into()));
    assert_eq!(
        code(&app.sign_in_response("change@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    app.sign_in("change@example.com", "new-Secret-42").await;
}

async fn changing_the_password_requires_the_current_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("guard@example.com", PASSWORD).await;
    let token = app.sign_in("guard@example.com", PASSWORD).await;
    let other = app.sign_in("guard@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&token),
            "mutation { changeCustomerPassword(currentPassword: \"wrong-guess\", newPassword: \"new-Secret-42\") { email } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    // Nothing changed: the old password works, the other device is still signed in.
    app.sign_in("guard@example.com", PASSWORD).await;
    assert!(app.whoami(&other).await.is_ok());
    let anonymous = app
        .gql(
            "mutation { changeCustomerPassword(currentPassword: \"x\", newPassword: \"new-Secret-42\") { email } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
}

async fn every_path_that_sets_a_password_applies_the_same_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("policy@example.com", PASSWORD).await;
    let token = app.sign_in("policy@example.com", PASSWORD).await;
    for weak in ["short", "has space", "qwerty123", "policy2026"] {
        let create = app
            .gql(CREATE, json!({"i": {"email": "policy2@example.com", "firstname": "A", "lastname": "B", "password": weak}}))
            .await;
        let change = app
            .gql_as(
                Some(&token),
                "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { email } }",
                json!({"c": PASSWORD, "n": weak}),
            )
            .await;
        assert_eq!(code(&create), "PASSWORD_POLICY", "{weak}");
        assert_eq!(code(&change), "PASSWORD_POLICY", "{weak}");
    }
    app.sign_in("policy@example.com", PASSWORD).await;
}

async fn passwords_are_never_truncated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long: String = "Zq9-".repeat(25);
    app.create_customer("long@example.com", &long).await;
    app.sign_in("long@example.com", &long).await;
    let res = app.sign_in_response("long@example.com", &long[..99]).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    // Composed and decomposed accents are one password.
    app.create_customer("accent@example.com", "caf\u{e9}-latte-9")
        .await;
    app.sign_in("accent@example.com", "cafe\u{301}-latte-9")
        .await;
}

async fn passwords_and_tokens_never_appear_in_logs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let password = format!("Log-Canary-{}", uuid::Uuid::new_v4().simple());
    app.create_customer("logs@example.com", &password).await;
    let token = app.sign_in("logs@example.com", &password).await;
    app.whoami(&token).await.unwrap();
    app.gql_as(
        Some(&token),
        "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { email } }",
        json!({"c": password, "n": format!("{password}-2")}),
    )
    .await;
    app.sign_in_response("logs@example.com", "wrong-guess")
        .await;
    let logs = logs();
    assert!(!logs.is_empty(), "the log capture works");
    assert!(!logs.contains(&password));
    assert!(!logs.contains(&token));
    assert!(!logs.contains(token.split('.').nth(2).unwrap()));
}
