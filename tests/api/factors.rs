//! Admins' second factors from the API: enrolling an authenticator app (codes computed here,
//! by an HOTP of the test's own from the key the API shows), the two-step sign-in, a code
//! accepted once, recovery codes spent once, wrong codes locking the factor step, and the
//! one-step `generateAdminToken` answering SECOND_FACTOR_REQUIRED.

use chrono::Duration;
use domain::clock::Clock;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, code, totp},
    smtp::SmtpReceiver,
};

crate::tests![
    an_admin_with_an_authenticator_app_signs_in_in_two_steps_and_a_code_works_once,
    a_recovery_code_signs_in_once_and_a_new_set_voids_the_old,
    wrong_factor_codes_lock_the_factor_step_of_that_admin_only,
    factors_change_only_with_the_password_and_the_last_one_takes_the_codes,
    where_a_factor_is_required_no_path_gives_an_admin_token_without_one,
    a_lost_factor_is_reset_by_an_administrator_or_the_operator_and_enrolled_again,
    a_remembered_browser_skips_the_factor_never_the_password_until_revoked,
    a_passkey_answer_that_does_not_check_out_counts_as_a_wrong_code,
    one_code_and_one_challenge_sign_in_once_even_at_the_same_moment,
];

const PASSWORD: &str = "admin-Password-2026";
const START: &str = "mutation($u: String!, $p: String!) { startAdminSignIn(username: $u, password: $p) { token { token expiresAt } challenge challengeExpiresAt enrolmentRequired } }";
const COMPLETE: &str = "mutation($c: String!, $code: String!) { completeAdminSignIn(challenge: $c, code: $code) { token expiresAt } }";
const ENROL: &str = "mutation($n: String!, $p: String!) { startTotpEnrolment(name: $n, password: $p) { factorId secret uri qrCodeSvg } }";
const CONFIRM: &str = "mutation($id: ID!, $code: String!) { confirmTotpEnrolment(factorId: $id, code: $code) { factor { id name kind confirmed } recoveryCodes } }";
const ONE_STEP: &str = "mutation($u: String!, $p: String!) { generateAdminToken(username: $u, password: $p) { token } }";

/// A server where admins may sign in without a second factor (`LATCHKEY_ADMIN_2FA=optional`).
async fn optional(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.admin_2fa = latchkey::config::AdminTwoFactor::Optional;
    })
    .await
}

/// An administrator named `username` with [`PASSWORD`], signed in with the password alone.
async fn admin(app: &TestApp, username: &str) -> String {
    latchkey::create_admin(&app.config, username, "administrator", PASSWORD)
        .await
        .unwrap();
    let res = app.gql(START, json!({"u": username, "p": PASSWORD})).await;
    res["data"]["startAdminSignIn"]["token"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no factor yet, so one step: {res}"))
        .to_owned()
}

/// Enrols an authenticator app for the admin of `token`: its key and the confirmation.
async fn enrol(app: &TestApp, token: &str, name: &str) -> (String, Value) {
    let res = app
        .gql_as(Some(token), ENROL, json!({"n": name, "p": PASSWORD}))
        .await;
    let enrolment = &res["data"]["startTotpEnrolment"];
    let key = enrolment["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned();
    let confirmed = app
        .gql_as(
            Some(token),
            CONFIRM,
            json!({"id": enrolment["factorId"], "code": totp(&key, app.clock.now())}),
        )
        .await;
    assert!(confirmed["errors"].is_null(), "{confirmed}");
    (key, confirmed["data"]["confirmTotpEnrolment"].clone())
}

async fn challenge(app: &TestApp, username: &str) -> String {
    let res = app.gql(START, json!({"u": username, "p": PASSWORD})).await;
    assert!(res["data"]["startAdminSignIn"]["token"].is_null(), "{res}");
    res["data"]["startAdminSignIn"]["challenge"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

async fn complete(app: &TestApp, challenge: &str, code: &str) -> Value {
    app.gql(COMPLETE, json!({"c": challenge, "code": code}))
        .await
}

fn token_of(res: &Value) -> String {
    res["data"]["completeAdminSignIn"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("not signed in: {res}"))
        .to_owned()
}

async fn an_admin_with_an_authenticator_app_signs_in_in_two_steps_and_a_code_works_once(
    backend: Backend,
) {
    let app = optional(backend).await;
    let token = admin(&app, "ann").await;

    // The enrolment: a key to type, the otpauth URI, and its QR code drawn by the server.
    let res = app
        .gql_as(
            Some(&token),
            ENROL,
            json!({"n": "Work phone", "p": PASSWORD}),
        )
        .await;
    let enrolment = &res["data"]["startTotpEnrolment"];
    let key = enrolment["secret"].as_str().unwrap().to_owned();
    let uri = enrolment["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={key}")),
        "{uri}"
    );
    assert!(
        enrolment["qrCodeSvg"].as_str().unwrap().contains("<svg"),
        "{res}"
    );
    // Not confirmed yet: the password alone still signs in.
    let one_step = app.gql(ONE_STEP, json!({"u": "ann", "p": PASSWORD})).await;
    assert!(
        one_step["data"]["generateAdminToken"]["token"].is_string(),
        "{one_step}"
    );
    let wrong = app
        .gql_as(
            Some(&token),
            CONFIRM,
            json!({"id": enrolment["factorId"], "code": totp(&key, app.clock.now() + Duration::minutes(5))}),
        )
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT", "{wrong}");
    let confirmed = app
        .gql_as(
            Some(&token),
            CONFIRM,
            json!({"id": enrolment["factorId"], "code": totp(&key, app.clock.now())}),
        )
        .await;
    let confirmation = &confirmed["data"]["confirmTotpEnrolment"];
    assert_eq!(confirmation["factor"]["name"], "Work phone", "{confirmed}");
    assert_eq!(confirmation["factor"]["kind"], "TOTP");
    assert_eq!(confirmation["recoveryCodes"].as_array().unwrap().len(), 10);

    // An admin app built for one step learns why, but only from the right password.
    let res = app.gql(ONE_STEP, json!({"u": "ann", "p": PASSWORD})).await;
    assert_eq!(code(&res), "SECOND_FACTOR_REQUIRED", "{res}");
    assert!(
        res["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("startAdminSignIn"),
        "{res}"
    );
    assert!(res["data"].is_null() || res["data"]["generateAdminToken"].is_null());
    let res = app
        .gql(ONE_STEP, json!({"u": "ann", "p": "Wrong-Password-2026"}))
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let res = app
        .gql(START, json!({"u": "ann", "p": "Wrong-Password-2026"}))
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");

    // The code the enrolment used is spent; the next one (one step ahead: clock skew) signs
    // in, once.
    let first = challenge(&app, "ann").await;
    let res = complete(&app, &first, &totp(&key, app.clock.now())).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "replayed: {res}");
    let next = totp(&key, app.clock.now() + Duration::seconds(30));
    let signed_in = token_of(&complete(&app, &first, &next).await);
    let me = app
        .gql_as(
            Some(&signed_in),
            "{ currentAdmin { username factors { name confirmed lastUsedAt } recoveryCodesLeft } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["currentAdmin"]["username"], "ann", "{me}");
    assert_eq!(
        me["data"]["currentAdmin"]["factors"][0]["name"],
        "Work phone"
    );
    assert!(me["data"]["currentAdmin"]["factors"][0]["lastUsedAt"].is_string());
    assert_eq!(me["data"]["currentAdmin"]["recoveryCodesLeft"], 10);
    let again = challenge(&app, "ann").await;
    let res = complete(&app, &again, &next).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "replayed: {res}");

    // Two steps out of step are refused; the clock's next minute brings a code that works.
    app.clock.advance(Duration::seconds(60));
    for off in [-90, 90] {
        let late = totp(&key, app.clock.now() + Duration::seconds(off));
        let res = complete(&app, &again, &late).await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{off} s: {res}");
    }
    token_of(&complete(&app, &again, &totp(&key, app.clock.now())).await);
    // A challenge lives five minutes.
    let stale = challenge(&app, "ann").await;
    app.clock.advance(Duration::minutes(6));
    let res = complete(&app, &stale, &totp(&key, app.clock.now())).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "expired: {res}");

    // Administrators see who has which factors; the enrolment is in the audit log.
    let users = app
        .gql_as(
            Some(&signed_in),
            "{ adminUsers { username factors { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        users["data"]["adminUsers"][0]["factors"][0]["name"], "Work phone",
        "{users}"
    );
    let log = app
        .gql_as(
            Some(&signed_in),
            "{ auditLog(filter: {action: ENROL_ADMIN_FACTOR}) { edges { node { actor detail } } } }",
            json!({}),
        )
        .await;
    let entry = &log["data"]["auditLog"]["edges"][0]["node"];
    assert_eq!(entry["actor"], "ann", "{log}");
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains(confirmation["factor"]["id"].as_str().unwrap())
    );
}

async fn a_recovery_code_signs_in_once_and_a_new_set_voids_the_old(backend: Backend) {
    let app = optional(backend).await;
    let token = admin(&app, "ann").await;
    let (_, confirmation) = enrol(&app, &token, "Phone").await;
    let codes: Vec<String> = confirmation["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(
        codes.iter().collect::<std::collections::HashSet<_>>().len(),
        10
    );

    let signed_in = token_of(&complete(&app, &challenge(&app, "ann").await, &codes[0]).await);
    let res = complete(&app, &challenge(&app, "ann").await, &codes[0]).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "spent: {res}");
    let left = app
        .gql_as(
            Some(&signed_in),
            "{ currentAdmin { recoveryCodesLeft } }",
            json!({}),
        )
        .await;
    assert_eq!(left["data"]["currentAdmin"]["recoveryCodesLeft"], 9);

    let res = app
        .gql_as(
            Some(&signed_in),
            "mutation($p: String!) { generateRecoveryCodes(password: $p) }",
            json!({"p": PASSWORD}),
        )
        .await;
    let fresh = res["data"]["generateRecoveryCodes"].as_array().unwrap();
    assert_eq!(fresh.len(), 10, "{res}");
    let res = complete(&app, &challenge(&app, "ann").await, &codes[1]).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "the old set: {res}");
    // Typed in capitals without the hyphen, as people copy them.
    let typed = fresh[3].as_str().unwrap().to_uppercase().replace('-', "");
    token_of(&complete(&app, &challenge(&app, "ann").await, &typed).await);
    let log = app
        .gql_as(
            Some(&signed_in),
            "{ auditLog(filter: {action: NEW_RECOVERY_CODES}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(log["data"]["auditLog"]["totalCount"], 1, "{log}");
}

async fn wrong_factor_codes_lock_the_factor_step_of_that_admin_only(backend: Backend) {
    let app = optional(backend).await;
    let ann = admin(&app, "ann").await;
    let (key, _) = enrol(&app, &ann, "Phone").await;
    let bob = admin(&app, "bob").await;
    let (bob_key, _) = enrol(&app, &bob, "Phone").await;
    app.clock.advance(Duration::seconds(30));

    // Five wrong codes, over fresh challenges: each is AUTHENTICATION_FAILED.
    for _ in 0..5 {
        let res = complete(&app, &challenge(&app, "ann").await, "000000").await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    // Then even the right code waits.
    let right = totp(&key, app.clock.now());
    let res = complete(&app, &challenge(&app, "ann").await, &right).await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
    assert!(
        res["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Bob is not locked by Ann's guesses.
    token_of(
        &complete(
            &app,
            &challenge(&app, "bob").await,
            &totp(&bob_key, app.clock.now()),
        )
        .await,
    );
    // After the window, Ann's right code works, and it was not spent by the refusal.
    app.clock.advance(Duration::minutes(15));
    token_of(
        &complete(
            &app,
            &challenge(&app, "ann").await,
            &totp(&key, app.clock.now()),
        )
        .await,
    );
}

async fn factors_change_only_with_the_password_and_the_last_one_takes_the_codes(backend: Backend) {
    let app = optional(backend).await;
    let token = admin(&app, "ann").await;
    let res = app.gql(ENROL, json!({"n": "Phone", "p": PASSWORD})).await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    // A stolen token alone cannot enrol the thief's phone.
    let res = app
        .gql_as(
            Some(&token),
            ENROL,
            json!({"n": "Thief", "p": "Not-The-Password-1"}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let (_, confirmation) = enrol(&app, &token, "Phone").await;
    let factor = confirmation["factor"]["id"].clone();
    const REMOVE: &str =
        "mutation($id: ID!, $p: String!) { removeAdminFactor(factorId: $id, password: $p) }";
    let res = app
        .gql_as(
            Some(&token),
            REMOVE,
            json!({"id": factor, "p": "Not-The-Password-1"}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let other = admin(&app, "bob").await;
    let res = app
        .gql_as(Some(&other), REMOVE, json!({"id": factor, "p": PASSWORD}))
        .await;
    assert_eq!(code(&res), "NOT_FOUND", "not Bob's: {res}");
    let res = app
        .gql_as(Some(&token), REMOVE, json!({"id": factor, "p": PASSWORD}))
        .await;
    assert_eq!(res["data"]["removeAdminFactor"], true, "{res}");
    // One step again, and the recovery codes went with the factor.
    let res = app.gql(ONE_STEP, json!({"u": "ann", "p": PASSWORD})).await;
    assert!(
        res["data"]["generateAdminToken"]["token"].is_string(),
        "{res}"
    );
    let me = app
        .gql_as(
            Some(&token),
            "{ currentAdmin { factors { id } recoveryCodesLeft } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["currentAdmin"]["recoveryCodesLeft"], 0, "{me}");
    assert_eq!(me["data"]["currentAdmin"]["factors"], json!([]));
}

/// `LATCHKEY_ADMIN_2FA=required` (the default): the right password of an admin without a
/// factor opens only an enrolment. Invited admins and "Forgot Your Password?" lead into it,
/// never around it; the enrolment challenge is no sign-in challenge and no bearer token.
async fn where_a_factor_is_required_no_path_gives_an_admin_token_without_one(backend: Backend) {
    const ENROL_START: &str = "mutation($c: String!, $n: String!) { startAdminEnrolment(challenge: $c, name: $n) { factorId secret qrCodeSvg } }";
    const ENROL_DONE: &str = "mutation($c: String!, $f: ID!, $code: String!) { completeAdminEnrolment(challenge: $c, factorId: $f, code: $code) { token { token } recoveryCodes } }";
    const SET: &str =
        "mutation($t: String!, $p: String!) { setAdminPassword(token: $t, newPassword: $p) }";
    let (app, smtp): (TestApp, SmtpReceiver) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&root),
            "mutation { createAdminUser(username: \"kim\", email: \"kim@example.com\", role: SUPPORT) { id } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let invitation = smtp.wait_for(1).await[0].token();
    let res = app.gql(SET, json!({"t": invitation, "p": PASSWORD})).await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");

    // The invited admin's right password: no token, by either sign-in.
    let res = app.gql(ONE_STEP, json!({"u": "kim", "p": PASSWORD})).await;
    assert_eq!(code(&res), "SECOND_FACTOR_REQUIRED", "{res}");
    let res = app
        .gql(ONE_STEP, json!({"u": "kim", "p": "Wrong-Password-2026"}))
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let res = app.gql(START, json!({"u": "kim", "p": PASSWORD})).await;
    let step = &res["data"]["startAdminSignIn"];
    assert!(step["token"].is_null(), "{res}");
    assert_eq!(step["enrolmentRequired"], true, "{res}");
    let challenge = step["challenge"].as_str().unwrap().to_owned();
    // It signs nobody in: not as a factor step, not as a bearer token.
    let res = complete(&app, &challenge, "000000").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let res = app
        .gql_as(Some(&challenge), "{ currentAdmin { username } }", json!({}))
        .await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    // A forged or expired challenge enrols nothing.
    let res = app
        .gql(
            ENROL_START,
            json!({"c": format!("{challenge}x"), "n": "Phone"}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");

    let res = app
        .gql(ENROL_START, json!({"c": challenge, "n": "Phone"}))
        .await;
    let enrolment = &res["data"]["startAdminEnrolment"];
    assert!(
        enrolment["qrCodeSvg"].as_str().unwrap().contains("<svg"),
        "{res}"
    );
    let key = enrolment["secret"].as_str().unwrap().to_owned();
    let res = app
        .gql(
            ENROL_DONE,
            json!({"c": challenge, "f": enrolment["factorId"], "code": "123456"}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    let res = app
        .gql(
            ENROL_DONE,
            json!({"c": challenge, "f": enrolment["factorId"], "code": totp(&key, app.clock.now())}),
        )
        .await;
    let done = &res["data"]["completeAdminEnrolment"];
    assert_eq!(done["recoveryCodes"].as_array().unwrap().len(), 10, "{res}");
    let token = done["token"]["token"].as_str().unwrap().to_owned();
    // The enrolment challenge is no factor challenge, even with a right code now.
    let res = complete(
        &app,
        &challenge,
        &totp(&key, app.clock.now() + Duration::seconds(30)),
    )
    .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let me = app
        .gql_as(
            Some(&token),
            "{ currentAdmin { username factors { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["currentAdmin"]["username"], "kim", "{me}");
    // Spent: the challenge enrols nothing more now that a factor is confirmed.
    let res = app
        .gql(ENROL_START, json!({"c": challenge, "n": "Another"}))
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    // The last factor stays.
    let res = app
        .gql_as(
            Some(&token),
            "mutation($id: ID!, $p: String!) { removeAdminFactor(factorId: $id, password: $p) }",
            json!({"id": me["data"]["currentAdmin"]["factors"][0]["id"], "p": PASSWORD}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");

    // "Forgot Your Password?" sets a new password, and the factor step still follows.
    let res = app
        .gql(
            "mutation { requestAdminPasswordReset(username: \"kim\") }",
            json!({}),
        )
        .await;
    assert_eq!(res["data"]["requestAdminPasswordReset"], true, "{res}");
    // The invitation, the notice that the password was set, then the link.
    let reset = smtp
        .wait_for(3)
        .await
        .into_iter()
        .rev()
        .find(|m| m.link().contains("/admin/set-password?token="))
        .unwrap()
        .token();
    let renewed = "Renewed-Admin-2027";
    let res = app.gql(SET, json!({"t": reset, "p": renewed})).await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    let res = app.gql(START, json!({"u": "kim", "p": renewed})).await;
    let step = &res["data"]["startAdminSignIn"];
    assert!(step["token"].is_null(), "{res}");
    assert_eq!(step["enrolmentRequired"], false, "{res}");
    let next = totp(&key, app.clock.now() + Duration::seconds(30));
    token_of(&complete(&app, step["challenge"].as_str().unwrap(), &next).await);
}

/// The admin who lost their phone and their recovery codes: an administrator resets their
/// factors (ending every session of theirs, mailing them), or, for the last administrator,
/// the operator does from a shell. Either way the next sign-in enrols a factor again.
async fn a_lost_factor_is_reset_by_an_administrator_or_the_operator_and_enrolled_again(
    backend: Backend,
) {
    let (app, smtp): (TestApp, SmtpReceiver) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    latchkey::create_admin_with_email(
        &app.config,
        "kim",
        "support",
        PASSWORD,
        Some("kim@example.com"),
    )
    .await
    .unwrap();
    let kim = app.admin_sign_in("kim", PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kim_id = app
        .gql_as(Some(&kim), "{ currentAdmin { id } }", json!({}))
        .await["data"]["currentAdmin"]["id"]
        .clone();
    let root_id = app
        .gql_as(Some(&root), "{ currentAdmin { id } }", json!({}))
        .await["data"]["currentAdmin"]["id"]
        .clone();
    const RESET: &str = "mutation($id: ID!, $p: String!) { resetAdminFactors(adminId: $id, password: $p) { revokedCount } }";
    // Not one's own, and not by someone who does not manage admins.
    let root_password = "admin-Password-2026";
    let res = app
        .gql_as(
            Some(&root),
            RESET,
            json!({"id": root_id, "p": root_password}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    let res = app
        .gql_as(Some(&kim), RESET, json!({"id": root_id, "p": PASSWORD}))
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    // A stolen administrator token alone strips nobody's factors.
    let res = app
        .gql_as(
            Some(&root),
            RESET,
            json!({"id": kim_id, "p": "Not-The-Password-1"}),
        )
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    assert!(
        app.gql_as(Some(&kim), "{ currentAdmin { id } }", json!({}))
            .await["errors"]
            .is_null(),
        "nothing changed"
    );

    let res = app
        .gql_as(
            Some(&root),
            RESET,
            json!({"id": kim_id, "p": root_password}),
        )
        .await;
    assert_eq!(res["data"]["resetAdminFactors"]["revokedCount"], 1, "{res}");
    // Kim's token ends with her factors; she is told.
    let res = app
        .gql_as(Some(&kim), "{ currentAdmin { id } }", json!({}))
        .await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    let notice = smtp.wait_for(1).await[0].clone();
    assert_eq!(notice.to, vec!["kim@example.com".to_owned()]);
    assert!(
        notice.subject().contains("Two-factor authentication"),
        "{}",
        notice.subject()
    );
    // Her recovery codes went with her app: the password opens only an enrolment now.
    let res = app.gql(START, json!({"u": "kim", "p": PASSWORD})).await;
    assert_eq!(
        res["data"]["startAdminSignIn"]["enrolmentRequired"], true,
        "{res}"
    );
    let log = app
        .gql_as(
            Some(&root),
            "{ auditLog(filter: {action: RESET_ADMIN_FACTORS}) { edges { node { actor detail } } } }",
            json!({}),
        )
        .await;
    let entry = &log["data"]["auditLog"]["edges"][0]["node"];
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains(kim_id.as_str().unwrap()),
        "{log}"
    );

    // The operator, for the last administrator: from a shell, audited as the OS user.
    let root_name = app
        .gql_as(Some(&root), "{ currentAdmin { username } }", json!({}))
        .await["data"]["currentAdmin"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app
        .command(&["admin", "reset-2fa", &root_name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ended 1 sessions"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let res = app
        .gql_as(Some(&root), "{ currentAdmin { id } }", json!({}))
        .await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    let res = app
        .gql(START, json!({"u": root_name, "p": "admin-Password-2026"}))
        .await;
    assert_eq!(
        res["data"]["startAdminSignIn"]["enrolmentRequired"], true,
        "{res}"
    );
    let fresh = app.admin_token("administrator").await;
    let log = app
        .gql_as(
            Some(&fresh),
            "{ auditLog(filter: {action: RESET_ADMIN_FACTORS}) { edges { node { actor } } } }",
            json!({}),
        )
        .await;
    assert!(
        log["data"]["auditLog"]["edges"][0]["node"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("os:"),
        "{log}"
    );
    let out = app
        .command(&["admin", "reset-2fa", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin is named nobody"));
}

/// "Remember this browser": off by default; where the store offers it, a grant made with a
/// second factor skips the factor at that admin's later sign-ins (the password always), until
/// it expires, is revoked one by one, or goes with Force Sign In or a new password.
async fn a_remembered_browser_skips_the_factor_never_the_password_until_revoked(backend: Backend) {
    const REMEMBER: &str = "mutation($c: String!, $code: String!) { completeAdminSignIn(challenge: $c, code: $code, rememberBrowser: true) { token deviceGrant deviceGrantExpiresAt } }";
    const WITH_GRANT: &str = "mutation($u: String!, $p: String!, $g: String) { startAdminSignIn(username: $u, password: $p, deviceGrant: $g) { token { token } challenge rememberBrowserDays } }";
    const SETTINGS: &str = "mutation($d: Int!) { updatePasswordSettings(input: {rememberBrowserDays: $d}) { rememberBrowserDays } }";
    let (app, smtp): (TestApp, SmtpReceiver) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    latchkey::create_admin_with_email(
        &app.config,
        "kim",
        "support",
        PASSWORD,
        Some("kim@example.com"),
    )
    .await
    .unwrap();
    app.admin_sign_in("kim", PASSWORD).await["token"]
        .as_str()
        .expect("kim enrols");
    let sign_in = |grant: Option<String>, password: &'static str| {
        app.gql(WITH_GRANT, json!({"u": "kim", "p": password, "g": grant}))
    };
    // A grant from a factor step: none while the store offers none (the default).
    let remember = || async {
        let step = sign_in(None, PASSWORD).await;
        let challenge = step["data"]["startAdminSignIn"]["challenge"]
            .as_str()
            .unwrap_or_else(|| panic!("{step}"))
            .to_owned();
        let res = app
            .gql(
                REMEMBER,
                json!({"c": challenge, "code": app.recovery_code("kim")}),
            )
            .await;
        assert!(res["errors"].is_null(), "{res}");
        (step, res["data"]["completeAdminSignIn"].clone())
    };
    let (step, done) = remember().await;
    assert_eq!(step["data"]["startAdminSignIn"]["rememberBrowserDays"], 0);
    assert!(done["deviceGrant"].is_null(), "{done}");

    let res = app.gql_as(Some(&root), SETTINGS, json!({"d": 31})).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "a month at most: {res}");
    let res = app.gql_as(Some(&root), SETTINGS, json!({"d": 30})).await;
    assert_eq!(
        res["data"]["updatePasswordSettings"]["rememberBrowserDays"], 30,
        "{res}"
    );
    let (step, done) = remember().await;
    assert_eq!(step["data"]["startAdminSignIn"]["rememberBrowserDays"], 30);
    let grant = done["deviceGrant"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = done["deviceGrantExpiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((expires - app.clock.now()).num_days(), 30);

    // The grant skips the factor, never the password, and only for kim.
    let res = sign_in(Some(grant.clone()), PASSWORD).await;
    let token = res["data"]["startAdminSignIn"]["token"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("remembered: {res}"))
        .to_owned();
    let res = sign_in(Some(grant.clone()), "Wrong-Password-2026").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let res = sign_in(Some(format!("{grant}x")), PASSWORD).await;
    assert!(
        res["data"]["startAdminSignIn"]["challenge"].is_string(),
        "{res}"
    );
    latchkey::create_admin(&app.config, "lee", "support", PASSWORD)
        .await
        .unwrap();
    app.admin_sign_in("lee", PASSWORD).await["token"]
        .as_str()
        .expect("lee enrols");
    let lee = app
        .gql(WITH_GRANT, json!({"u": "lee", "p": PASSWORD, "g": grant}))
        .await;
    assert!(
        lee["data"]["startAdminSignIn"]["challenge"].is_string(),
        "kim's grant is not lee's: {lee}"
    );
    // Kim sees the browser and may revoke it; root may not read kim's.
    let listed = app
        .gql_as(
            Some(&token),
            "{ currentAdmin { deviceGrants { id userAgent lastUsedAt } } }",
            json!({}),
        )
        .await;
    let grants = listed["data"]["currentAdmin"]["deviceGrants"]
        .as_array()
        .unwrap();
    assert_eq!(grants.len(), 1, "{listed}");
    assert_eq!(grants[0]["userAgent"], "latchkey-tests");
    assert!(grants[0]["lastUsedAt"].is_string());
    let res = app
        .gql_as(
            Some(&root),
            "{ adminUsers { deviceGrants { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    let res = app
        .gql_as(
            Some(&token),
            "mutation($id: ID!) { revokeDeviceGrant(id: $id) }",
            json!({"id": grants[0]["id"]}),
        )
        .await;
    assert_eq!(res["data"]["revokeDeviceGrant"], true, "{res}");
    let res = sign_in(Some(grant), PASSWORD).await;
    assert!(
        res["data"]["startAdminSignIn"]["challenge"].is_string(),
        "revoked: {res}"
    );

    // Force Sign In for kim ends her grants too.
    let (_, done) = remember().await;
    let grant = done["deviceGrant"].as_str().unwrap().to_owned();
    let kim_id = app
        .gql_as(Some(&token), "{ currentAdmin { id } }", json!({}))
        .await["data"]["currentAdmin"]["id"]
        .clone();
    let res = app
        .gql_as(
            Some(&root),
            "mutation($id: ID!) { revokeAdminTokens(adminId: $id) { revokedCount } }",
            json!({"id": kim_id}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let res = sign_in(Some(grant), PASSWORD).await;
    assert!(
        res["data"]["startAdminSignIn"]["challenge"].is_string(),
        "after Force Sign In: {res}"
    );

    // So does a new password.
    let (_, done) = remember().await;
    let grant = done["deviceGrant"].as_str().unwrap().to_owned();
    app.gql(
        "mutation { requestAdminPasswordReset(username: \"kim\") }",
        json!({}),
    )
    .await;
    let link = smtp.wait_for(1).await[0].token();
    let renewed = "Renewed-Admin-2027";
    let res = app
        .gql(
            "mutation($t: String!, $p: String!) { setAdminPassword(token: $t, newPassword: $p) }",
            json!({"t": link, "p": renewed}),
        )
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    let res = app
        .gql(WITH_GRANT, json!({"u": "kim", "p": renewed, "g": grant}))
        .await;
    assert!(
        res["data"]["startAdminSignIn"]["challenge"].is_string(),
        "after a new password: {res}"
    );

    // A grant ends after its days, and when the store stops offering grants.
    let res = app
        .gql(WITH_GRANT, json!({"u": "kim", "p": renewed, "g": null}))
        .await;
    let challenge = res["data"]["startAdminSignIn"]["challenge"]
        .as_str()
        .unwrap();
    let done = app
        .gql(
            REMEMBER,
            json!({"c": challenge, "code": app.recovery_code("kim")}),
        )
        .await;
    let grant = done["data"]["completeAdminSignIn"]["deviceGrant"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"))
        .to_owned();
    let with = || app.gql(WITH_GRANT, json!({"u": "kim", "p": renewed, "g": grant}));
    assert!(with().await["data"]["startAdminSignIn"]["token"].is_object());
    app.gql_as(Some(&root), SETTINGS, json!({"d": 0})).await;
    assert!(
        with().await["data"]["startAdminSignIn"]["challenge"].is_string(),
        "the store stopped"
    );
    app.gql_as(Some(&root), SETTINGS, json!({"d": 30})).await;
    assert!(with().await["data"]["startAdminSignIn"]["token"].is_object());
    app.clock.advance(Duration::days(30) + Duration::minutes(1));
    assert!(
        with().await["data"]["startAdminSignIn"]["challenge"].is_string(),
        "expired"
    );
}

/// The passkey ceremonies themselves run in a browser (tests/api/browser.rs, ChromeDriver's
/// virtual authenticator, where a real answer signs in once). Here, what an attacker without
/// the key can send through the API: garbage in place of the browser's answer is a wrong code,
/// counted toward the lock, and a server whose public URL is an IP address offers no passkeys
/// at all (browsers refuse IP addresses as the relying party); one with a domain name offers
/// registration options naming the store.
async fn a_passkey_answer_that_does_not_check_out_counts_as_a_wrong_code(backend: Backend) {
    const PASSKEY: &str = "mutation($c: String!, $cred: String!) { completeAdminSignInWithPasskey(challenge: $c, credential: $cred) { token } }";
    let ip = TestApp::spawn(backend).await;
    let token = ip.admin_token("administrator").await;
    let res = ip
        .gql_as(
            Some(&token),
            "mutation($p: String!) { startPasskeyEnrolment(name: \"Laptop\", password: $p) { options } }",
            json!({"p": "admin-Password-2026"}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    assert!(
        res["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("domain name"),
        "{res}"
    );
    drop(ip);
    // Where passkeys are offered, the answers reach webauthn and are refused there.
    let app = TestApp::spawn_with(backend, |c| {
        c.public_url = Some("http://localhost".into());
    })
    .await;
    let token = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&token),
            "mutation($p: String!) { startPasskeyEnrolment(name: \"Laptop\", password: $p) { options } }",
            json!({"p": "admin-Password-2026"}),
        )
        .await;
    assert!(
        res["data"]["startPasskeyEnrolment"]["options"]
            .as_str()
            .unwrap_or_else(|| panic!("{res}"))
            .contains("\"rp\":{\"name\""),
        "{res}"
    );
    latchkey::create_admin(&app.config, "ann", "administrator", PASSWORD)
        .await
        .unwrap();
    app.admin_sign_in("ann", PASSWORD).await["token"]
        .as_str()
        .expect("ann enrols");
    for credential in [
        "{}",
        "not json",
        r#"{"id":"x","rawId":"eA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"}}"#,
        "",
        "",
    ] {
        let res = app
            .gql(
                PASSKEY,
                json!({"c": challenge(&app, "ann").await, "cred": credential}),
            )
            .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    let res = complete(
        &app,
        &challenge(&app, "ann").await,
        &app.recovery_code("ann"),
    )
    .await;
    assert_eq!(
        code(&res),
        "RATE_LIMITED",
        "five wrong answers lock the factor step: {res}"
    );
}

/// Two requests at once with one recovery code, or with one challenge and two right codes:
/// exactly one signs in.
async fn one_code_and_one_challenge_sign_in_once_even_at_the_same_moment(backend: Backend) {
    let app = optional(backend).await;
    let token = admin(&app, "ann").await;
    let (key, confirmation) = enrol(&app, &token, "Phone").await;
    let codes = confirmation["recoveryCodes"].as_array().unwrap().clone();
    let code0 = codes[0].as_str().unwrap();
    let (a, b) = (challenge(&app, "ann").await, challenge(&app, "ann").await);
    let (x, y) = tokio::join!(complete(&app, &a, code0), complete(&app, &b, code0));
    let signed_in = [&x, &y].iter().filter(|r| r["errors"].is_null()).count();
    assert_eq!(signed_in, 1, "one recovery code, one sign-in: {x} {y}");

    let one = challenge(&app, "ann").await;
    let next = totp(&key, app.clock.now() + Duration::seconds(30));
    let code1 = codes[1].as_str().unwrap();
    let (x, y) = tokio::join!(complete(&app, &one, &next), complete(&app, &one, code1));
    let signed_in = [&x, &y].iter().filter(|r| r["errors"].is_null()).count();
    assert_eq!(signed_in, 1, "one challenge, one sign-in: {x} {y}");
    // And after it: the challenge is spent, whatever code comes with it.
    let res = complete(&app, &one, codes[2].as_str().unwrap()).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
}
