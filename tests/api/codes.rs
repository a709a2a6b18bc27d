//! Reset by one-time code, bound to the client that asked: the flow id goes to that client
//! only, the code to the mailbox only, and a code works only with its flow id.

use chrono::Duration;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    smtp::SmtpReceiver,
};

crate::tests![
    a_code_resets_the_password_once_in_the_client_that_asked,
    a_code_typed_without_its_flow_or_into_another_flow_fails_and_counts,
    the_sixth_guess_in_a_flow_is_refused_even_with_the_right_code,
    wrong_codes_are_capped_per_address_over_every_flow_and_network,
    a_newer_request_kills_the_old_code,
    codes_expire_after_their_lifetime,
    known_and_unknown_addresses_start_flows_alike,
    stores_choose_link_code_or_both,
    a_code_sign_in_is_a_session_that_force_sign_in_ends,
    sign_in_codes_are_off_by_default_bound_to_their_flow_and_alike_for_every_address,
];

const REQUEST: &str =
    "mutation($e: String!) { requestPasswordResetCode(email: $e) { flowId expiresAt codeLength } }";
const RESET: &str = "mutation($f: String!, $c: String!, $p: String!) { resetPasswordWithCode(flowId: $f, code: $c, newPassword: $p) }";

/// A server that believes `X-Forwarded-For` from the tests, so each test client has its own
/// address (and its own budget of invalid links).
async fn app(backend: Backend) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let url = smtp.url();
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(latchkey::config::Secret::new(url));
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    app.without_reset_limits().await;
    (app, smtp)
}

async fn gql_from(app: &TestApp, ip: &str, query: &str, variables: Value) -> Value {
    app.client
        .post(app.url("/graphql"))
        .header("x-forwarded-for", ip)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Starts a flow for `email` from `ip`; the flow id.
async fn start(app: &TestApp, ip: &str, email: &str) -> String {
    let res = gql_from(app, ip, REQUEST, json!({"e": email})).await;
    res["data"]["requestPasswordResetCode"]["flowId"]
        .as_str()
        .unwrap_or_else(|| panic!("no flow: {res}"))
        .to_owned()
}

async fn reset(app: &TestApp, ip: &str, flow: &str, code: &str, password: &str) -> Value {
    gql_from(app, ip, RESET, json!({"f": flow, "c": code, "p": password})).await
}

async fn customer(app: &TestApp, email: &str) {
    let res = app.create_customer(email, PASSWORD).await;
    assert!(res["errors"].is_null(), "{res}");
}

const CUSTOMER: &str = "198.51.100.10";
const ATTACKER: &str = "203.0.113.66";

async fn a_code_resets_the_password_once_in_the_client_that_asked(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let session = app.sign_in("ann@example.com", PASSWORD).await;
    let res = gql_from(&app, CUSTOMER, REQUEST, json!({"e": "ann@example.com"})).await;
    let started = &res["data"]["requestPasswordResetCode"];
    assert_eq!(started["codeLength"], 8, "{res}");
    let flow = started["flowId"].as_str().unwrap().to_owned();
    let mail = smtp.wait_for(1).await.remove(0);
    let mailed = mail.code();
    assert_eq!(mailed.len(), 8);
    assert!(
        !mail.text().contains(&flow),
        "the flow id never travels by mail"
    );
    assert!(mail.text().contains("15 minutes"), "{}", mail.text());
    // The code, typed as the mail shows it (two groups), in the client that asked.
    let typed = format!("{} {}", &mailed[..4], &mailed[4..]);
    assert_eq!(
        reset(&app, CUSTOMER, &flow, &typed, "brand-New-pw7").await,
        json!({"data": {"resetPasswordWithCode": true}})
    );
    assert_eq!(app.whoami(&session).await, Err("UNAUTHENTICATED".into()));
    app.sign_in("ann@example.com", "brand-New-pw7").await;
    // Once: the code, and the link of the same mail, are spent.
    let again = reset(&app, CUSTOMER, &flow, &mailed, "other-New-pw8").await;
    assert_eq!(code(&again), "RESET_TOKEN_INVALID", "{again}");
    let link = app.reset_password(&mail.token(), "other-New-pw8").await;
    assert_eq!(code(&link), "RESET_TOKEN_INVALID", "{link}");
    let notice = smtp.wait_for_mail("ann@example.com", "changed").await;
    assert!(notice.maybe_code().is_none() && !notice.text().contains(&mailed));
}

/// The phishing case: a code read out of the customer's mail is worthless to whoever holds
/// another flow (their own request for the same address) or none at all, and every such try
/// counts against that flow and that client.
async fn a_code_typed_without_its_flow_or_into_another_flow_fails_and_counts(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let attackers_flow = start(&app, ATTACKER, "ann@example.com").await;
    smtp.wait_for(1).await;
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    let mailed = smtp.wait_for(2).await.remove(1).code();

    let stolen = reset(&app, ATTACKER, &attackers_flow, &mailed, "attacker-Pw-1").await;
    assert_eq!(code(&stolen), "RESET_TOKEN_INVALID", "{stolen}");
    for no_flow in ["", "not-a-flow", &flow[1..]] {
        let res = reset(&app, ATTACKER, no_flow, &mailed, "attacker-Pw-1").await;
        assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{no_flow:?}: {res}");
    }
    // Each counted: the attacker's own flow has one attempt fewer, and the attacker's
    // address spends its budget of invalid links (10 per 15 minutes) until it is refused.
    let attempts = app
        .query_one("SELECT attempts FROM code_flows WHERE attempts > 0", vec![])
        .await
        .try_get::<i32>("", "attempts")
        .unwrap();
    assert_eq!(attempts, 1, "only the attacker's flow was guessed at");
    let mut refused = None;
    for i in 0..10 {
        let res = reset(&app, ATTACKER, "", &mailed, "attacker-Pw-1").await;
        if code(&res) == "RATE_LIMITED" {
            refused = Some(i);
            break;
        }
    }
    assert_eq!(refused, Some(6), "4 tries above, then 6 more, then refused");
    // Nothing the attacker did touched the customer's flow.
    assert_eq!(
        reset(&app, CUSTOMER, &flow, &mailed, "brand-New-pw7").await,
        json!({"data": {"resetPasswordWithCode": true}})
    );
    app.sign_in("ann@example.com", "brand-New-pw7").await;
}

async fn the_sixth_guess_in_a_flow_is_refused_even_with_the_right_code(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    let mailed = smtp.wait_for(1).await.remove(0).code();
    let wrong = if mailed == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for _ in 0..5 {
        let res = reset(&app, CUSTOMER, &flow, wrong, "brand-New-pw7").await;
        assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
    }
    let sixth = reset(&app, CUSTOMER, &flow, &mailed, "brand-New-pw7").await;
    assert_eq!(code(&sixth), "RESET_TOKEN_INVALID", "{sixth}");
    assert_eq!(
        code(
            &app.sign_in_response("ann@example.com", "brand-New-pw7")
                .await
        ),
        "AUTHENTICATION_FAILED",
        "the password did not change"
    );
    app.sign_in("ann@example.com", PASSWORD).await;
    // The link of the same mail is the mailbox's other way in, and still works.
}

/// Many flows from many networks do not multiply the guesses one account takes: 20 wrong
/// codes a day per address, then codes for it are refused; the link still works.
async fn wrong_codes_are_capped_per_address_over_every_flow_and_network(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    for round in 0..4 {
        let ip = format!("203.0.113.{round}");
        let flow = start(&app, &ip, "ann@example.com").await;
        smtp.wait_for(round + 1).await;
        for _ in 0..5 {
            let res = reset(&app, &ip, &flow, "00000000", "attacker-Pw-1").await;
            assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
        }
    }
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    let mail = smtp.wait_for(5).await.remove(4);
    let res = reset(&app, CUSTOMER, &flow, &mail.code(), "brand-New-pw7").await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
    assert!(
        res["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    // An unknown address is capped alike (nothing tells them apart).
    for round in 0..4 {
        let ip = format!("203.0.113.{}", 10 + round);
        let flow = start(&app, &ip, "nobody@example.com").await;
        app.mail_settled().await;
        for _ in 0..5 {
            let res = reset(&app, &ip, &flow, "00000000", "attacker-Pw-1").await;
            assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
        }
    }
    let flow = start(&app, "203.0.113.20", "nobody@example.com").await;
    app.mail_settled().await;
    let res = reset(&app, "203.0.113.20", &flow, "00000000", "attacker-Pw-1").await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
    // The mailbox's other way in is untouched; a day later codes work again.
    assert_eq!(
        app.reset_password(&mail.token(), "brand-New-pw7").await["data"]["resetPassword"],
        true
    );
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    // After the "password changed" notice of the link's reset: the newest mail with a code.
    let mail = smtp
        .wait_for(7)
        .await
        .into_iter()
        .rev()
        .find(|m| m.maybe_code().is_some())
        .unwrap();
    assert_eq!(
        reset(&app, CUSTOMER, &flow, &mail.code(), "newer-Pw-42x").await,
        json!({"data": {"resetPasswordWithCode": true}})
    );
}

async fn a_newer_request_kills_the_old_code(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let first = start(&app, CUSTOMER, "ann@example.com").await;
    let first_code = smtp.wait_for(1).await.remove(0).code();
    let second = start(&app, CUSTOMER, "ann@example.com").await;
    let second_code = smtp.wait_for(2).await.remove(1).code();
    let old = reset(&app, CUSTOMER, &first, &first_code, "brand-New-pw7").await;
    assert_eq!(code(&old), "RESET_TOKEN_INVALID", "{old}");
    // A link request is a newer request too (once a minute has passed: within a minute of a
    // live link a link request mails nothing, the mail just sent carries one).
    app.clock.advance(Duration::seconds(61));
    app.request_reset("ann@example.com").await;
    smtp.wait_for(3).await;
    let res = reset(&app, CUSTOMER, &second, &second_code, "brand-New-pw7").await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
    let third = start(&app, CUSTOMER, "ann@example.com").await;
    let third_code = smtp.wait_for(4).await.remove(3).code();
    assert_eq!(
        reset(&app, CUSTOMER, &third, &third_code, "brand-New-pw7").await,
        json!({"data": {"resetPasswordWithCode": true}})
    );
}

async fn codes_expire_after_their_lifetime(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    app.set_settings("reset_code_lifetime_minutes = 5").await;
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(mail.text().contains("5 minutes"), "{}", mail.text());
    app.clock
        .advance(Duration::minutes(5) + Duration::seconds(1));
    let res = reset(&app, CUSTOMER, &flow, &mail.code(), "brand-New-pw7").await;
    assert_eq!(code(&res), "RESET_TOKEN_EXPIRED", "{res}");
    // The link beside it lives its own (longer) life.
    assert_eq!(
        app.reset_password(&mail.token(), "brand-New-pw7").await["data"]["resetPassword"],
        true
    );
}

/// The answer has the same shape and size, the same rows are written at request time, and
/// once resolved both flows exist and answer a guess alike: nothing tells a caller whether
/// the address has an account.
async fn known_and_unknown_addresses_start_flows_alike(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "known@example.com").await;
    let tables = [
        "reset_requests",
        "limit_events",
        "code_flows",
        "email_outbox",
    ];
    let counts = || async {
        let mut counts = Vec::new();
        for t in tables {
            counts.push(app.count(t).await);
        }
        counts
    };
    app.set_settings("reset_request_limit_method = 'BY_IP_AND_EMAIL', max_reset_requests_per_hour = 10, min_seconds_between_reset_requests = 0").await;
    let mut answers = Vec::new();
    for email in ["known@example.com", "unknown@example.com"] {
        // One client each, so the per-client limit events are alike too.
        app.mail_settled().await;
        let before = counts().await;
        let res = app
            .client
            .post(app.url("/graphql"))
            .header(
                "x-forwarded-for",
                if email.starts_with('k') {
                    "198.51.100.1"
                } else {
                    "198.51.100.2"
                },
            )
            .json(&json!({"query": REQUEST, "variables": {"e": email}}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        let written: Vec<i64> = counts()
            .await
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        answers.push((status, body, written));
    }
    let (known, unknown) = (&answers[0], &answers[1]);
    assert_eq!(known.0, unknown.0);
    let shape = |v: &Value| {
        let flow = &v["data"]["requestPasswordResetCode"];
        (
            flow["flowId"].as_str().unwrap().len(),
            flow["codeLength"].clone(),
        )
    };
    assert_eq!(shape(&known.1), shape(&unknown.1));
    assert_ne!(known.1, unknown.1, "each flow id is its own");
    assert_eq!(
        known.2, unknown.2,
        "the same rows at request time ({tables:?})"
    );
    // Resolved: a flow for each (the known one with its mail).
    app.mail_settled().await;
    assert_eq!(app.count("code_flows").await, 2);
    assert_eq!(smtp.messages().len(), 1);
    for (i, ip) in [(0, "198.51.100.1"), (1, "198.51.100.2")] {
        let flow = answers[i].1["data"]["requestPasswordResetCode"]["flowId"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = reset(&app, ip, &flow, "00000001", "brand-New-pw7").await;
        assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
        assert_eq!(res["errors"][0]["message"], answers_message());
    }
}

fn answers_message() -> Value {
    json!(
        "this code is invalid: it must be typed where it was requested, and a new request replaces it"
    )
}

async fn stores_choose_link_code_or_both(backend: Backend) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let admin = app.admin_token("administrator").await;
    let set = |input: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.gql_as(
                Some(&admin),
                "mutation($i: PasswordSettingsInput!) { updatePasswordSettings(input: $i) { resetByLink resetByCode resetCodeLifetimeMinutes } }",
                json!({"i": input}),
            )
            .await
        }
    };
    // Both by default: the mail of a code flow carries the link too.
    start(&app, CUSTOMER, "ann@example.com").await;
    let both = smtp.wait_for(1).await.remove(0);
    assert!(both.maybe_code().is_some() && both.text().contains("token="));
    // Code only: the mail has no link, and a link request is refused with a clear error.
    let res = set(json!({"resetByLink": false})).await;
    assert_eq!(
        res["data"]["updatePasswordSettings"]["resetByLink"], false,
        "{res}"
    );
    let flow = start(&app, CUSTOMER, "ann@example.com").await;
    let only = smtp.wait_for(2).await.remove(1);
    assert!(
        !only.text().contains("reset-password?token=")
            && !only.html().contains("reset-password?token=")
    );
    let refused = app.request_reset("ann@example.com").await;
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
    assert_eq!(
        reset(&app, CUSTOMER, &flow, &only.code(), "brand-New-pw7").await,
        json!({"data": {"resetPasswordWithCode": true}})
    );
    // Not neither; and link only refuses code requests.
    let neither = set(json!({"resetByCode": false})).await;
    assert_eq!(code(&neither), "BAD_USER_INPUT", "{neither}");
    set(json!({"resetByLink": true, "resetByCode": false})).await;
    let res = gql_from(&app, CUSTOMER, REQUEST, json!({"e": "ann@example.com"})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    for minutes in [0, 61] {
        let res = set(json!({"resetCodeLifetimeMinutes": minutes})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{minutes}: {res}");
    }
}

const SIGN_IN_REQUEST: &str =
    "mutation($e: String!) { requestSignInCode(email: $e) { flowId expiresAt codeLength } }";
const SIGN_IN: &str = "mutation($f: String!, $c: String!) { signInWithCode(flowId: $f, code: $c) { token expiresAt } }";

async fn start_sign_in(app: &TestApp, ip: &str, email: &str) -> String {
    let res = gql_from(app, ip, SIGN_IN_REQUEST, json!({"e": email})).await;
    res["data"]["requestSignInCode"]["flowId"]
        .as_str()
        .unwrap_or_else(|| panic!("no flow: {res}"))
        .to_owned()
}

async fn sign_in_with(app: &TestApp, ip: &str, flow: &str, code: &str) -> Value {
    gql_from(app, ip, SIGN_IN, json!({"f": flow, "c": code})).await
}

async fn a_code_sign_in_is_a_session_that_force_sign_in_ends(backend: Backend) {
    let (app, smtp) = app(backend).await;
    app.set_settings("sign_in_by_code = true").await;
    customer(&app, "ann@example.com").await;
    // A reset link asked for earlier stays usable: a sign-in code is not a reset.
    app.request_reset("ann@example.com").await;
    let reset_mail = smtp.wait_for(1).await.remove(0);
    let flow = start_sign_in(&app, CUSTOMER, "ann@example.com").await;
    let mail = smtp.wait_for(2).await.remove(1);
    assert!(
        mail.subject().contains("sign-in code"),
        "{}",
        mail.subject()
    );
    assert!(
        !mail.text().contains("reset-password?token="),
        "a code alone"
    );
    assert!(
        mail.report_token().is_some(),
        "with its this-wasn't-me link"
    );
    let res = sign_in_with(&app, CUSTOMER, &flow, &mail.code()).await;
    let token = res["data"]["signInWithCode"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned();
    assert_eq!(app.whoami(&token).await, Ok("ann@example.com".into()));
    // Once.
    let again = sign_in_with(&app, CUSTOMER, &flow, &mail.code()).await;
    assert_eq!(code(&again), "AUTHENTICATION_FAILED", "{again}");
    // Force Sign In ends it like any session.
    let admin = app.admin_token("support").await;
    let id = app.customer_id("ann@example.com").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    assert_eq!(app.whoami(&token).await, Err("UNAUTHENTICATED".into()));
    assert_eq!(
        app.reset_password(&reset_mail.token(), "brand-New-pw7")
            .await["data"]["resetPassword"],
        true
    );
}

async fn sign_in_codes_are_off_by_default_bound_to_their_flow_and_alike_for_every_address(
    backend: Backend,
) {
    let (app, smtp) = app(backend).await;
    customer(&app, "ann@example.com").await;
    let off = gql_from(
        &app,
        CUSTOMER,
        SIGN_IN_REQUEST,
        json!({"e": "ann@example.com"}),
    )
    .await;
    assert_eq!(code(&off), "BAD_USER_INPUT", "{off}");
    app.set_settings("sign_in_by_code = true").await;

    // Known and unknown addresses: the same answer's shape, the same rows at request time.
    let before = (
        app.count("reset_requests").await,
        app.count("limit_events").await,
    );
    let known = gql_from(
        &app,
        CUSTOMER,
        SIGN_IN_REQUEST,
        json!({"e": "ann@example.com"}),
    )
    .await;
    let mid = (
        app.count("reset_requests").await,
        app.count("limit_events").await,
    );
    let unknown = gql_from(
        &app,
        ATTACKER,
        SIGN_IN_REQUEST,
        json!({"e": "nobody@example.com"}),
    )
    .await;
    let after = (
        app.count("reset_requests").await,
        app.count("limit_events").await,
    );
    assert_eq!(
        (mid.0 - before.0, mid.1 - before.1),
        (after.0 - mid.0, after.1 - mid.1)
    );
    let flow_of = |v: &Value| {
        v["data"]["requestSignInCode"]["flowId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(flow_of(&known).len(), flow_of(&unknown).len());
    let mailed = smtp.wait_for(1).await.remove(0).code();
    app.mail_settled().await;
    assert_eq!(smtp.messages().len(), 1, "mail for the account only");
    let unknown_try = sign_in_with(&app, ATTACKER, &flow_of(&unknown), &mailed).await;
    assert_eq!(code(&unknown_try), "AUTHENTICATION_FAILED", "{unknown_try}");

    // The code read out of the mailbox, typed into the attacker's own flow or none: refused.
    let attackers = start_sign_in(&app, ATTACKER, "ann@example.com").await;
    let newest = smtp.wait_for(2).await.remove(1).code();
    for flow in [attackers.as_str(), ""] {
        let res = sign_in_with(&app, ATTACKER, flow, &mailed).await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    // The newer request (the attacker's) killed the customer's first code.
    let old = sign_in_with(&app, CUSTOMER, &flow_of(&known), &mailed).await;
    assert_eq!(code(&old), "AUTHENTICATION_FAILED", "{old}");

    // A customer without a usable password (imported, "reset required") gets in by code.
    app.execute("UPDATE customers SET password_hash = ''", vec![])
        .await;
    let flow = start_sign_in(&app, CUSTOMER, "ann@example.com").await;
    let code_now = smtp.wait_for(3).await.remove(2).code();
    assert_ne!(code_now, newest);
    let res = sign_in_with(&app, CUSTOMER, &flow, &code_now).await;
    assert!(res["data"]["signInWithCode"]["token"].is_string(), "{res}");
}
