//! "This wasn't me" on every security mail: the reset mail (by link, by code) and the
//! "password changed" notice each carry a link that secures the account with one button.
//! (The email-change notice's "this wasn't me" is its cancel link: `lifecycle.rs`.)

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    smtp::{Received, SmtpReceiver},
};

crate::tests![
    this_wasnt_me_from_a_reset_mail_secures_the_account,
    this_wasnt_me_from_a_code_mail_kills_the_code,
    this_wasnt_me_from_the_password_changed_notice_shuts_out_who_changed_it,
    this_wasnt_me_from_a_sign_in_code_mail_kills_the_code,
    forged_or_foreign_report_links_change_nothing,
    browser_the_report_page_changes_nothing_until_its_button,
];

const REPORT: &str = "mutation($t: String!) { reportUnrecognizedActivity(token: $t) }";

async fn report(app: &TestApp, token: &str) -> Value {
    app.gql(REPORT, json!({"t": token})).await
}

/// What an admin sees of the customer (found in the grid: the customer cannot sign in).
async fn seen_by_admin(app: &TestApp, admin: &str, email: &str) -> Value {
    let res = app
        .gql_as(
            Some(admin),
            "query($e: String!) { customers(first: 1, filter: {search: $e}) { edges { node { id reportedAt passwordState activeTokenCount } } } }",
            json!({"e": email}),
        )
        .await;
    res["data"]["customers"]["edges"][0]["node"].clone()
}

/// After a report: signed out, the old password refused, the admin sees it reported with the
/// password voided, the audit log has the customer's entry, the customer got one mail with the
/// next step; then a fresh reset from the same address gets in and clears the mark.
async fn assert_secured_then_recovered(
    app: &TestApp,
    smtp: &SmtpReceiver,
    used: &str,
    email: &str,
    sessions: &[&str],
    old_passwords: &[&str],
) {
    let admin = app.admin_token("administrator").await;
    for session in sessions {
        assert_eq!(app.whoami(session).await, Err("UNAUTHENTICATED".into()));
    }
    for password in old_passwords {
        assert_eq!(
            code(&app.sign_in_response(email, password).await),
            "AUTHENTICATION_FAILED"
        );
    }
    let seen = seen_by_admin(app, &admin, email).await;
    assert!(seen["reportedAt"].is_string(), "{seen}");
    assert_eq!(seen["passwordState"], "VOIDED", "{seen}");
    assert_eq!(seen["activeTokenCount"], 0, "{seen}");
    let log = app
        .gql_as(
            Some(&admin),
            "{ auditLog(first: 20) { edges { node { action actor customerId } } } }",
            json!({}),
        )
        .await;
    let id = seen["id"].as_str().unwrap().to_owned();
    assert!(
        log["data"]["auditLog"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"))
            .iter()
            .any(|e| e["node"]["action"] == "REPORTED_NOT_ME"
                && e["node"]["actor"] == "customer"
                && e["node"]["customerId"] == id.as_str()),
        "{log}"
    );
    let secured = smtp.wait_for_mail(email, "signed every device out").await;
    assert!(
        secured.subject().contains("secured"),
        "{}",
        secured.subject()
    );
    assert!(secured.report_token().is_none() && secured.maybe_code().is_none());

    // The way back: "Forgot Your Password?" from the same address, a moment later.
    app.clock.advance(chrono::Duration::seconds(1));
    let before = smtp.messages().len();
    app.request_reset(email).await;
    let mail = smtp
        .wait_for(before + 1)
        .await
        .into_iter()
        .skip(before)
        .find(|m| m.text().contains("token="))
        .unwrap();
    assert_eq!(
        app.reset_password(&mail.token(), "recovered-Pw-9").await["data"]["resetPassword"],
        true
    );
    app.sign_in(email, "recovered-Pw-9").await;
    let seen = seen_by_admin(app, &admin, email).await;
    assert!(
        seen["reportedAt"].is_null(),
        "a new password ends the report: {seen}"
    );
    // The old mail's link, used again, no longer voids the password set since.
    assert_eq!(
        report(app, used).await,
        json!({"data": {"reportUnrecognizedActivity": true}})
    );
    app.sign_in(email, "recovered-Pw-9").await;
}

async fn this_wasnt_me_from_a_reset_mail_secures_the_account(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let phone = app.sign_in("ann@example.com", PASSWORD).await;
    // A pending email change (asked by someone holding a session) dies with the report.
    let res = app
        .gql_as(
            Some(&phone),
            "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
            json!({"e": "elsewhere@example.com", "p": PASSWORD}),
        )
        .await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let confirmation = smtp.wait_for_mail("elsewhere@example.com", "token=").await;
    app.request_reset("ann@example.com").await;
    let mail: Received = smtp.wait_for_mail("ann@example.com", "not-me").await;
    let token = mail.report_token().expect("a this-wasn't-me link");
    assert!(mail.html().contains("not-me?token="), "{}", mail.html());

    assert_eq!(
        report(&app, &token).await,
        json!({"data": {"reportUnrecognizedActivity": true}})
    );
    // The mail's reset link, and the email change, are dead.
    let link = app.reset_password(&mail.token(), "thief-Pw-77").await;
    assert_eq!(code(&link), "RESET_TOKEN_INVALID", "{link}");
    let confirm = app
        .gql(
            "mutation($t: String!) { confirmCustomerEmailChange(token: $t) }",
            json!({"t": confirmation.token()}),
        )
        .await;
    assert_eq!(code(&confirm), "LINK_INVALID", "{confirm}");
    assert_secured_then_recovered(
        &app,
        &smtp,
        &token,
        "ann@example.com",
        &[&phone],
        &[PASSWORD],
    )
    .await;
}

async fn this_wasnt_me_from_a_code_mail_kills_the_code(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    app.set_settings("reset_by_link = false").await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let res = app
        .gql(
            "mutation($e: String!) { requestPasswordResetCode(email: $e) { flowId } }",
            json!({"e": "ann@example.com"}),
        )
        .await;
    let flow = res["data"]["requestPasswordResetCode"]["flowId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(!mail.text().contains("reset-password?token="), "code only");
    let token = mail.report_token().expect("a this-wasn't-me link");
    assert_eq!(
        report(&app, &token).await,
        json!({"data": {"reportUnrecognizedActivity": true}})
    );
    let res = app
        .gql(
            "mutation($f: String!, $c: String!, $p: String!) { resetPasswordWithCode(flowId: $f, code: $c, newPassword: $p) }",
            json!({"f": flow, "c": mail.code(), "p": "thief-Pw-77"}),
        )
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID", "{res}");
    app.set_settings("reset_by_link = true").await;
    assert_secured_then_recovered(
        &app,
        &smtp,
        &token,
        "ann@example.com",
        &[],
        &[PASSWORD, "thief-Pw-77"],
    )
    .await;
}

/// Someone who knew the password signed in and changed it: the owner's notice shuts them out.
async fn this_wasnt_me_from_the_password_changed_notice_shuts_out_who_changed_it(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let thief = app.sign_in("ann@example.com", PASSWORD).await;
    let res = app
        .gql_as(
            Some(&thief),
            "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { id } }",
            json!({"c": PASSWORD, "n": "thief-Pw-77"}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let notice = smtp.wait_for_mail("ann@example.com", "changed").await;
    let token = notice.report_token().expect("a this-wasn't-me link");
    assert_eq!(
        report(&app, &token).await,
        json!({"data": {"reportUnrecognizedActivity": true}})
    );
    assert_secured_then_recovered(
        &app,
        &smtp,
        &token,
        "ann@example.com",
        &[&thief],
        &["thief-Pw-77"],
    )
    .await;
}

/// Someone asked for a sign-in code for the customer's address: the mail's "this wasn't me"
/// secures the account and the code dies with it.
async fn this_wasnt_me_from_a_sign_in_code_mail_kills_the_code(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    app.set_settings("sign_in_by_code = true").await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let phone = app.sign_in("ann@example.com", PASSWORD).await;
    let res = app
        .gql(
            "mutation($e: String!) { requestSignInCode(email: $e) { flowId } }",
            json!({"e": "ann@example.com"}),
        )
        .await;
    let flow = res["data"]["requestSignInCode"]["flowId"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned();
    let mail = smtp.wait_for(1).await.remove(0);
    let token = mail.report_token().expect("a this-wasn't-me link");
    assert_eq!(
        report(&app, &token).await,
        json!({"data": {"reportUnrecognizedActivity": true}})
    );
    let res = app
        .gql(
            "mutation($f: String!, $c: String!) { signInWithCode(flowId: $f, code: $c) { token } }",
            json!({"f": flow, "c": mail.code()}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    assert_secured_then_recovered(
        &app,
        &smtp,
        &token,
        "ann@example.com",
        &[&phone],
        &[PASSWORD],
    )
    .await;
}

/// A link with a flipped character, one cut short, or one made for another server's key: all
/// LINK_INVALID, nothing changes, and each counts against the client's invalid-link budget.
async fn forged_or_foreign_report_links_change_nothing(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let session = app.sign_in("ann@example.com", PASSWORD).await;
    app.request_reset("ann@example.com").await;
    let token = smtp.wait_for(1).await.remove(0).report_token().unwrap();
    let flipped = {
        let mut bytes = token.clone().into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let foreign = domain::report::ReportLinks::new(&[9u8; 32], "http://x")
        .unwrap()
        .token(uuid::Uuid::now_v7());
    for bad in [flipped, token[..40].to_owned(), foreign, String::new()] {
        let res = report(&app, &bad).await;
        assert_eq!(code(&res), "LINK_INVALID", "{bad}: {res}");
    }
    assert!(app.whoami(&session).await.is_ok(), "nothing changed");
    app.sign_in("ann@example.com", PASSWORD).await;
    let mut limited = false;
    for _ in 0..10 {
        if code(&report(&app, "x").await) == "RATE_LIMITED" {
            limited = true;
            break;
        }
    }
    assert!(limited, "guessing report links is throttled per client");
}

/// Opening the link (as a mail scanner does) changes nothing; the one button secures the
/// account, in the customer's language.
async fn browser_the_report_page_changes_nothing_until_its_button(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let session = app.sign_in("ann@example.com", PASSWORD).await;
    app.request_reset("ann@example.com").await;
    let token = smtp.wait_for(1).await.remove(0).report_token().unwrap();
    let driver = crate::browser::Driver::start().await;
    let browser = driver.browser("ko").await;
    browser
        .goto(&app.url(&format!("/account/not-me?token={token}")))
        .await;
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar"
    );
    assert_eq!(browser.text("h1").await, "본인이 아닙니다");
    assert!(
        app.whoami(&session).await.is_ok(),
        "opening the page changed nothing"
    );
    browser.shot("storefront-not-me-ko").await;
    browser.click("#email-link button[type=submit]").await;
    browser.wait_text("#notice", "계정을 보호했습니다").await;
    assert_eq!(app.whoami(&session).await, Err("UNAUTHENTICATED".into()));
    browser.close().await;
}
