//! One limiter, one sign-in core: every password check, registration and invalid reset link is
//! counted before the expensive or sensitive part, atomically, so bursts, aliases and replicas
//! cannot outrun a limit.
//!
//! Tests that count argon2 hashes run the real binary as a child process: its metrics registry
//! is its own, where the in-process servers of parallel tests share one.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    process::ServerProcess,
};

crate::tests![
    a_burst_of_guesses_gets_the_lockout_budget_of_hashes_and_no_more,
    an_admin_burst_of_guesses_gets_the_lockout_budget_and_no_more,
    aliased_sign_ins_count_against_the_per_client_limit_before_hashing,
    unknown_and_known_addresses_spend_the_same_budget,
    concurrent_invalid_reset_links_are_throttled_exactly,
    every_emailed_link_shares_one_budget_of_invalid_guesses,
    a_sign_in_still_hashing_when_the_password_is_reset_gets_no_lasting_session,
    registration_is_limited_per_client_and_a_refusal_creates_nothing,
    lockout_cannot_be_switched_off,
    concurrent_right_passwords_all_sign_in_and_guesses_still_lock,
];

/// A server process with one hashing slot (so a burst queues behind it, as on a busy server).
async fn process(app: &TestApp) -> ServerProcess {
    ServerProcess::start(
        &app.config,
        &[("LATCHKEY_HASH_CONCURRENCY", "1".to_owned())],
    )
    .await
}

async fn post(addr: std::net::SocketAddr, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(json!({"query": query, "variables": variables}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Password hashes (and verifications) the process has run so far.
async fn hashes(server: &ServerProcess) -> u64 {
    server
        .metric("latchkey_password_hash_seconds_count")
        .await
        .map_or(0, |n| n as u64)
}

const CUSTOMER_SIGN_IN: &str = "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }";
const ADMIN_SIGN_IN: &str = "mutation($u: String!, $p: String!) { generateAdminToken(username: $u, password: $p) { token } }";

/// Fires `guesses` wrong passwords at once, then the right one once the name's whole budget
/// (`budget` attempts, counted under the limit key `key`) is taken by them, while they are
/// still queued for the single hashing slot. Returns the right one's answer and how many
/// hashes ran.
#[allow(clippy::too_many_arguments)]
async fn burst(
    app: &TestApp,
    server: &ServerProcess,
    query: &str,
    (name_var, name, key): (&str, &str, &str),
    right: &str,
    guesses: usize,
    budget: i64,
) -> (Value, u64) {
    let before = hashes(server).await;
    let wrong: Vec<_> = (0..guesses)
        .map(|i| {
            let (addr, query) = (server.addr, query.to_owned());
            let variables = json!({name_var: name, "p": format!("wrong-guess-{i}")});
            tokio::spawn(async move { post(addr, &query, variables).await })
        })
        .collect();
    let wrong = tokio::spawn(join_all(wrong));
    // The barrier: every attempt of the budget is reserved (in flight or settled).
    let started = std::time::Instant::now();
    while app
        .scalar(&format!(
            "SELECT COUNT(*) AS n FROM limit_events WHERE key = '{key}'"
        ))
        .await
        < budget
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the guesses never took the budget"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let answer = post(server.addr, query, json!({name_var: name, "p": right})).await;
    for res in wrong.await.unwrap() {
        let res = res.unwrap();
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    (answer, hashes(server).await - before)
}

async fn a_burst_of_guesses_gets_the_lockout_budget_of_hashes_and_no_more(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("burst@example.com", PASSWORD).await;
    app.set_settings("lockout_failures = 5").await;
    let server = process(&app).await;
    let (right, hashed) = burst(
        &app,
        &server,
        CUSTOMER_SIGN_IN,
        (
            "e",
            "burst@example.com",
            "sign-in:customer:burst@example.com",
        ),
        PASSWORD,
        40,
        5,
    )
    .await;
    assert_eq!(
        code(&right),
        "AUTHENTICATION_FAILED",
        "the right password, sent after the budget of guesses was spent, must not sign in: {right}"
    );
    assert_eq!(
        hashed, 5,
        "41 attempts with a lockout of 5 ran {hashed} password hashes"
    );
    // The account is locked now, for the right password too, as after ten sequential failures.
    assert_eq!(
        code(&app.sign_in_response("burst@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
}

async fn an_admin_burst_of_guesses_gets_the_lockout_budget_and_no_more(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let password = "admin-Password-2026";
    latchkey::create_admin(&app.config, "burst-admin", "administrator", password)
        .await
        .unwrap();
    app.set_settings("lockout_failures = 5").await;
    let server = process(&app).await;
    let (right, hashed) = burst(
        &app,
        &server,
        ADMIN_SIGN_IN,
        ("u", "burst-admin", "sign-in:admin:burst-admin"),
        password,
        40,
        5,
    )
    .await;
    assert_eq!(code(&right), "AUTHENTICATION_FAILED", "{right}");
    assert_eq!(hashed, 5, "{hashed} hashes for a lockout of 5");
}

async fn aliased_sign_ins_count_against_the_per_client_limit_before_hashing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("alias@example.com", PASSWORD).await;
    app.set_settings("max_failed_sign_ins_per_ip_per_hour = 10")
        .await;
    let server = process(&app).await;
    // A correct password never spends the budget.
    for _ in 0..12 {
        app.sign_in("alias@example.com", PASSWORD).await;
    }
    // Sixty sign-ins in one document, each for another address: before the fix, sixty hashes.
    let fields: String = (0..60)
        .map(|i| {
            format!(
                "a{i}: generateCustomerToken(email: \"victim{i}@example.com\", password: \"guess-{i}\") {{ token }} "
            )
        })
        .collect();
    let before = hashes(&server).await;
    let res = post(server.addr, &format!("mutation {{ {fields} }}"), json!({})).await;
    let hashed = hashes(&server).await - before;
    let errors = res["errors"].as_array().unwrap();
    let count = |c: &str| {
        errors
            .iter()
            .filter(|e| e["extensions"]["code"] == c)
            .count()
    };
    assert_eq!(count("AUTHENTICATION_FAILED"), 10, "{res}");
    assert_eq!(count("RATE_LIMITED"), 50, "{res}");
    assert_eq!(
        hashed, 10,
        "every field past the limit must be refused before hashing"
    );
    assert!(
        errors
            .iter()
            .filter(|e| e["extensions"]["code"] == "RATE_LIMITED")
            .all(|e| e["extensions"]["retryAfterSeconds"].as_u64().unwrap() > 0)
    );
    // The client is over its budget for every account now, even with the right password.
    let res = post(
        server.addr,
        CUSTOMER_SIGN_IN,
        json!({"e": "alias@example.com", "p": PASSWORD}),
    )
    .await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
}

async fn unknown_and_known_addresses_spend_the_same_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("known@example.com", PASSWORD).await;
    app.set_settings("lockout_failures = 3").await;
    let server = process(&app).await;
    let mut answers = Vec::new();
    for email in ["known@example.com", "unknown@example.com"] {
        let before = hashes(&server).await;
        let mut seen = Vec::new();
        for i in 0..6 {
            seen.push(
                post(
                    server.addr,
                    CUSTOMER_SIGN_IN,
                    json!({"e": email, "p": format!("wrong-{i}")}),
                )
                .await,
            );
        }
        answers.push((seen, hashes(&server).await - before));
    }
    assert_eq!(
        answers[0].1, 3,
        "a locked account is refused before hashing"
    );
    assert_eq!(
        answers[0], answers[1],
        "an address without an account must answer and cost exactly like a locked one"
    );
}

async fn concurrent_invalid_reset_links_are_throttled_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let links: Vec<String> = (0..30).map(|i| format!("{i:0>43}")).collect();
    let answers = join_all(links.iter().map(|t| app.reset_password(t, "fresh-Pw-11"))).await;
    let count = |c: &str| answers.iter().filter(|r| code(r) == c).count();
    assert_eq!(
        count("RESET_TOKEN_INVALID"),
        10,
        "ten invalid links per client per 15 minutes, even when sent at once"
    );
    assert_eq!(count("RATE_LIMITED"), 20);
}

/// Reset links, email-change confirmations and cancellations, and admin invitations are all
/// 256-bit links sent by mail: a client guessing at any of them spends one budget, so it cannot
/// take ten guesses at each kind (nor find the kind that was never throttled).
async fn every_emailed_link_shares_one_budget_of_invalid_guesses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let guess = |i: usize| {
        let token = format!("{i:0>43}");
        let (query, variables) = match i % 4 {
            0 => (
                "mutation($t: String!) { r: resetPassword(resetPasswordToken: $t, newPassword: \"fresh-Pw-11\") }",
                json!({"t": token}),
            ),
            1 => (
                "mutation($t: String!) { r: confirmCustomerEmailChange(token: $t) }",
                json!({"t": token}),
            ),
            2 => (
                "mutation($t: String!) { r: cancelCustomerEmailChange(token: $t) }",
                json!({"t": token}),
            ),
            _ => (
                "mutation($t: String!) { r: setAdminPassword(token: $t, newPassword: \"fresh-Admin-Pw-11\") }",
                json!({"t": token}),
            ),
        };
        app.gql(query, variables)
    };
    let answers = join_all((0..30).map(guess)).await;
    let count = |codes: &[&str]| answers.iter().filter(|r| codes.contains(&code(r))).count();
    assert_eq!(
        count(&["RESET_TOKEN_INVALID", "LINK_INVALID"]),
        10,
        "ten invalid links per client per 15 minutes, whatever the kind: {:?}",
        answers.iter().map(code).collect::<Vec<_>>()
    );
    assert_eq!(count(&["RATE_LIMITED"]), 20);
    for i in 0..4 {
        assert_eq!(code(&guess(100 + i).await), "RATE_LIMITED", "kind {i}");
    }
    app.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(code(&guess(201).await), "LINK_INVALID");
    assert_eq!(code(&guess(203).await), "RESET_TOKEN_INVALID");
}

/// Someone who knows the old password keeps signing in while the owner resets it. A sign-in
/// that read the old hash before the reset and stores its session after the reset's sign-out
/// must not come away with a working token: the session is stored only while the account
/// still has the hash that was verified.
async fn a_sign_in_still_hashing_when_the_password_is_reset_gets_no_lasting_session(
    backend: Backend,
) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    // One hashing slot: the sign-ins read the credentials at once, then queue to verify them.
    let server = process(&app).await;
    let mut overlapped = false;
    // The reset has to land while sign-ins are still queued; on a loaded machine a round may
    // miss that, so up to three rounds, each with an account of its own.
    for round in 0..3 {
        let email = format!("inflight{round}@example.com");
        app.create_customer(&email, PASSWORD).await;
        app.request_reset(&email).await;
        let link = smtp.wait_for(round + 1).await[round].token();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Fewer than the lockout's ten, so every wrong password stays counted.
        for _ in 0..8 {
            let (tx, addr, email) = (tx.clone(), server.addr, email.clone());
            tokio::spawn(async move {
                let answer = post(addr, CUSTOMER_SIGN_IN, json!({"e": email, "p": PASSWORD}));
                let _ = tx.send(answer.await);
            });
        }
        drop(tx);
        // Once the first sign-in is answered the others are waiting for the hashing slot
        // with the old hash in hand; the reset runs on another server (its own hashing
        // slots), as on another replica.
        let mut answers = vec![rx.recv().await.unwrap()];
        let reset = app.reset_password(&link, "fresh-Pw-11").await;
        assert_eq!(reset["data"]["resetPassword"], true, "{reset}");
        while let Some(answer) = rx.recv().await {
            answers.push(answer);
        }
        let mut refused = 0;
        for answer in &answers {
            match answer["data"]["generateCustomerToken"]["token"].as_str() {
                Some(token) => {
                    let me = app
                        .gql_as(Some(token), "{ customer { email } }", json!({}))
                        .await;
                    assert!(
                        me["data"].is_null() && code(&me) == "UNAUTHENTICATED",
                        "a session from the old password outlived the reset: {me}"
                    );
                }
                None => {
                    assert_eq!(code(answer), "AUTHENTICATION_FAILED", "{answer}");
                    refused += 1;
                }
            }
        }
        // A refusal is either a sign-in that read the new hash (a wrong password, counted on
        // the account) or one overtaken by the reset (its password was right: not counted).
        let wrong = app
            .scalar(&format!(
                "SELECT CAST(failed_sign_ins AS BIGINT) AS n FROM customers WHERE email_key = '{email}'"
            ))
            .await;
        let old = app.sign_in_response(&email, PASSWORD).await;
        assert_eq!(code(&old), "AUTHENTICATION_FAILED", "{old}");
        if refused > wrong {
            overlapped = true;
            break;
        }
    }
    assert!(
        overlapped,
        "in no round was a sign-in overtaken by the reset"
    );
}

async fn registration_is_limited_per_client_and_a_refusal_creates_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.set_settings("max_registrations_per_ip_per_hour = 3")
        .await;
    let register = |email: &str| {
        app.gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": email, "firstname": "Ann", "lastname": "Lee", "password": PASSWORD}}),
        )
    };
    assert!(register("one@example.com").await["errors"].is_null());
    assert!(register("two@example.com").await["errors"].is_null());
    // Asking whether an address is taken counts too.
    assert_eq!(code(&register("one@example.com").await), "BAD_USER_INPUT");
    // An invalid request is refused before it counts.
    assert_eq!(code(&register("not-an-address").await), "BAD_USER_INPUT");
    let refused = register("three@example.com").await;
    assert_eq!(code(&refused), "RATE_LIMITED", "{refused}");
    assert!(
        refused["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(app.count("customers").await, 2);
    app.clock.advance(chrono::Duration::hours(1));
    assert!(register("three@example.com").await["errors"].is_null());
}

async fn lockout_cannot_be_switched_off(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation { updatePasswordSettings(input: {lockoutFailures: 0}) { lockoutFailures } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    let read = app
        .gql_as(
            Some(&admin),
            "{ passwordSettings { lockoutFailures maxFailedSignInsPerIpPerHour maxRegistrationsPerIpPerHour } }",
            json!({}),
        )
        .await;
    assert_eq!(
        read["data"]["passwordSettings"],
        json!({"lockoutFailures": 10, "maxFailedSignInsPerIpPerHour": 100, "maxRegistrationsPerIpPerHour": 30})
    );
}

/// Keycloak #48272: concurrent sign-ins with the right password locked the account out, because
/// each counted as an attempt while it was checked. Here the lockout is the default 10 and the
/// server hashes one password at a time, so sixteen sign-ins queue: the ones past the budget
/// wait for those in flight to give their places back, and all sixteen get a token. Guesses
/// still lock: 47 wrong passwords, then the right one, stays refused, with 10 hashes.
async fn concurrent_right_passwords_all_sign_in_and_guesses_still_lock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("sixteen@example.com", PASSWORD).await;
    app.create_customer("guessed@example.com", PASSWORD).await;
    let server = process(&app).await;
    let before = hashes(&server).await;
    let answers = join_all((0..16).map(|_| {
        post(
            server.addr,
            CUSTOMER_SIGN_IN,
            json!({"e": "sixteen@example.com", "p": PASSWORD}),
        )
    }))
    .await;
    for res in &answers {
        assert!(
            res["data"]["generateCustomerToken"]["token"].is_string(),
            "a right password was refused: {res}"
        );
    }
    assert_eq!(hashes(&server).await - before, 16);
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM access_tokens").await,
        16,
        "one session per sign-in"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM customers WHERE locked_until IS NOT NULL")
            .await,
        0
    );
    let (right, hashed) = burst(
        &app,
        &server,
        CUSTOMER_SIGN_IN,
        (
            "e",
            "guessed@example.com",
            "sign-in:customer:guessed@example.com",
        ),
        PASSWORD,
        47,
        10,
    )
    .await;
    assert_eq!(code(&right), "AUTHENTICATION_FAILED", "{right}");
    assert_eq!(hashed, 10, "47 guesses and a lockout of 10");
}
