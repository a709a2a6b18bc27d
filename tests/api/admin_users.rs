//! Admin users from the API: invitations (the admin sets their own password), roles, disabling,
//! Force Sign In for admins, and the last administrator's protection.

use chrono::Duration;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, code},
    smtp::{Received, SmtpReceiver},
};

crate::tests![
    an_invited_admin_sets_their_own_password_once,
    invitation_links_expire_and_are_not_reset_links,
    the_last_active_administrator_cannot_be_demoted_or_disabled,
    two_administrators_demoting_each_other_at_once_leave_one,
    a_disabled_admin_can_neither_sign_in_nor_use_a_token,
    disabling_an_invited_admin_voids_the_invitation_link,
    revoke_admin_tokens_signs_an_admin_out_everywhere,
    forgot_password_in_the_console_mails_only_active_admins_with_an_address,
    the_cli_gives_the_first_administrator_an_address_for_forgot_password,
    admin_links_live_shorter_and_a_new_admin_password_is_announced,
];

const INVITE: &str = "mutation($u: String!, $e: String!, $r: AdminRole!) { createAdminUser(username: $u, email: $e, role: $r) { id username email role disabled } }";
const SET: &str =
    "mutation($t: String!, $p: String!) { setAdminPassword(token: $t, newPassword: $p) }";
const UPDATE: &str = "mutation($id: ID!, $r: AdminRole, $d: Boolean) { updateAdminUser(id: $id, role: $r, disabled: $d) { id role disabled } }";
const NEW_PASSWORD: &str = "Invited-Admin-2026";

async fn invite(app: &TestApp, token: &str, username: &str, role: &str) -> Value {
    app.gql_as(
        Some(token),
        INVITE,
        json!({"u": username, "e": format!("{username}@example.com"), "r": role.to_uppercase()}),
    )
    .await
}

async fn invitation(smtp: &SmtpReceiver, n: usize, to: &str) -> Received {
    smtp.wait_for(n)
        .await
        .into_iter()
        .rev()
        .find(|m| m.to == vec![to.to_owned()])
        .unwrap_or_else(|| panic!("no mail to {to}"))
}

async fn admin_sign_in(app: &TestApp, username: &str, password: &str) -> Value {
    app.admin_sign_in(username, password).await
}

async fn admin_id(app: &TestApp, token: &str) -> String {
    app.gql_as(Some(token), "{ currentAdmin { id } }", json!({}))
        .await["data"]["currentAdmin"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn an_invited_admin_sets_their_own_password_once(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    let res = invite(&app, &root, "kim", "support").await;
    assert_eq!(
        res["data"]["createAdminUser"]["email"], "kim@example.com",
        "{res}"
    );
    assert_eq!(res["data"]["createAdminUser"]["role"], "SUPPORT");
    let mail = invitation(&smtp, 1, "kim@example.com").await;
    assert!(
        mail.link().contains("/admin/set-password?token="),
        "{}",
        mail.link()
    );
    // Until then nobody can sign in as the new admin.
    assert_eq!(
        code(&admin_sign_in(&app, "kim", NEW_PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    // Admin passwords have at least 12 characters.
    let res = app
        .gql(SET, json!({"t": mail.token(), "p": "Short-2026"}))
        .await;
    assert_eq!(code(&res), "PASSWORD_POLICY", "{res}");
    let res = app
        .gql(SET, json!({"t": mail.token(), "p": NEW_PASSWORD}))
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    let signed_in = admin_sign_in(&app, "kim", NEW_PASSWORD).await;
    let token = signed_in["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{signed_in}"))
        .to_owned();
    let me = app
        .gql_as(
            Some(&token),
            "{ currentAdmin { username role } }",
            json!({}),
        )
        .await;
    assert_eq!(
        me["data"]["currentAdmin"],
        json!({"username": "kim", "role": "SUPPORT"})
    );
    // Once only: the link cannot set the password again (say, from a forwarded mail).
    let res = app
        .gql(SET, json!({"t": mail.token(), "p": "Another-Admin-2027"}))
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_INVALID");
    admin_sign_in(&app, "kim", NEW_PASSWORD).await["token"]
        .as_str()
        .expect("the first password stands");
    // The list, the taken name, and the audit trail.
    let list = app
        .gql_as(
            Some(&root),
            "{ adminUsers { username email role disabled } }",
            json!({}),
        )
        .await;
    assert!(
        list["data"]["adminUsers"]
            .as_array()
            .unwrap()
            .contains(&json!({"username": "kim", "email": "kim@example.com", "role": "SUPPORT", "disabled": false})),
        "{list}"
    );
    assert_eq!(
        code(&invite(&app, &root, "KIM", "viewer").await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        code(&invite(&app, &root, "lee", "superuser").await),
        "BAD_USER_INPUT"
    );
    let audit = app
        .gql_as(
            Some(&root),
            "{ auditLog(filter: {action: CREATE_ADMIN_USER}) { totalCount edges { node { detail } } } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["data"]["auditLog"]["totalCount"], 1, "{audit}");
    let text = audit.to_string();
    assert!(
        !text.contains(&mail.token()) && !text.contains(NEW_PASSWORD),
        "{text}"
    );
    // A support admin cannot manage admins.
    assert_eq!(
        code(&invite(&app, &token, "lee", "viewer").await),
        "FORBIDDEN"
    );
}

async fn invitation_links_expire_and_are_not_reset_links(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    invite(&app, &root, "late", "viewer").await;
    let mail = invitation(&smtp, 1, "late@example.com").await;
    // A customer reset token is no invitation, and the invitation is no reset token.
    app.create_customer("shopper@example.com", crate::helpers::PASSWORD)
        .await;
    app.request_reset("shopper@example.com").await;
    let reset = invitation(&smtp, 2, "shopper@example.com").await;
    assert_eq!(
        code(
            &app.gql(SET, json!({"t": reset.token(), "p": NEW_PASSWORD}))
                .await
        ),
        "RESET_TOKEN_INVALID"
    );
    assert_eq!(
        code(&app.reset_password(&mail.token(), NEW_PASSWORD).await),
        "RESET_TOKEN_INVALID"
    );
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    assert_eq!(
        code(
            &app.gql(SET, json!({"t": mail.token(), "p": NEW_PASSWORD}))
                .await
        ),
        "RESET_TOKEN_EXPIRED"
    );
    for junk in ["", "x", &"y".repeat(3000)] {
        assert_eq!(
            code(&app.gql(SET, json!({"t": junk, "p": NEW_PASSWORD})).await),
            "RESET_TOKEN_INVALID"
        );
    }
}

async fn the_last_active_administrator_cannot_be_demoted_or_disabled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let root = app.admin_token("administrator").await;
    let root_id = admin_id(&app, &root).await;
    for change in [json!({"r": "SUPPORT"}), json!({"d": true})] {
        let mut vars = change.clone();
        vars["id"] = json!(root_id);
        let res = app.gql_as(Some(&root), UPDATE, vars).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{change}: {res}");
        assert!(
            res["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("last active administrator"),
            "{res}"
        );
    }
    // Nothing changed, and nothing was audited.
    let me = app
        .gql_as(Some(&root), "{ currentAdmin { role disabled } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["currentAdmin"],
        json!({"role": "ADMINISTRATOR", "disabled": false})
    );
    assert_eq!(app.audited().await, 0);
    // A disabled administrator does not count as one.
    let second = app.admin_token("administrator").await;
    let second_id = admin_id(&app, &second).await;
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": second_id, "d": true}))
        .await;
    assert_eq!(res["data"]["updateAdminUser"]["disabled"], true, "{res}");
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": root_id, "r": "VIEWER"}))
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    // Enabled again, the second administrator lets the first step down.
    app.gql_as(Some(&root), UPDATE, json!({"id": second_id, "d": false}))
        .await;
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": root_id, "r": "VIEWER"}))
        .await;
    assert_eq!(res["data"]["updateAdminUser"]["role"], "VIEWER", "{res}");
    // The role change holds from the next request.
    assert_eq!(
        code(&invite(&app, &root, "after", "viewer").await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(
            &app.gql_as(
                Some(&root),
                UPDATE,
                json!({"id": "not-an-id", "r": "VIEWER"})
            )
            .await
        ),
        "FORBIDDEN"
    );
    // Disabling signed the second administrator out; enabling does not bring tokens back.
    assert_eq!(
        code(
            &app.gql_as(Some(&second), "{ currentAdmin { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    let third = app.admin_token("administrator").await;
    assert_eq!(
        code(
            &app.gql_as(
                Some(&third),
                UPDATE,
                json!({"id": uuid::Uuid::nil().to_string(), "r": "VIEWER"})
            )
            .await
        ),
        "NOT_FOUND"
    );
}

async fn two_administrators_demoting_each_other_at_once_leave_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..5 {
        let a = app.admin_token("administrator").await;
        let b = app.admin_token("administrator").await;
        // Every other administrator made so far steps down first.
        let list = app
            .gql_as(Some(&a), "{ adminUsers { id role disabled } }", json!({}))
            .await;
        let (a_id, b_id) = (admin_id(&app, &a).await, admin_id(&app, &b).await);
        for other in list["data"]["adminUsers"].as_array().unwrap() {
            let id = other["id"].as_str().unwrap();
            if id != a_id && id != b_id && other["role"] == "ADMINISTRATOR" {
                app.gql_as(Some(&a), UPDATE, json!({"id": id, "r": "VIEWER"}))
                    .await;
            }
        }
        let (ra, rb) = tokio::join!(
            app.gql_as(Some(&a), UPDATE, json!({"id": b_id, "r": "SUPPORT"})),
            app.gql_as(Some(&b), UPDATE, json!({"id": a_id, "r": "SUPPORT"})),
        );
        let list = app
            .gql_as(Some(&a), "{ adminUsers { role disabled } }", json!({}))
            .await;
        let list = if list["errors"].is_null() {
            list
        } else {
            app.gql_as(Some(&b), "{ adminUsers { role disabled } }", json!({}))
                .await
        };
        let administrators = list["data"]["adminUsers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["role"] == "ADMINISTRATOR" && a["disabled"] == false)
            .count();
        assert_eq!(administrators, 1, "{ra} {rb} {list}");
    }
}

async fn a_disabled_admin_can_neither_sign_in_nor_use_a_token(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    invite(&app, &root, "temp", "support").await;
    let mail = invitation(&smtp, 1, "temp@example.com").await;
    app.gql(SET, json!({"t": mail.token(), "p": NEW_PASSWORD}))
        .await;
    let token = admin_sign_in(&app, "temp", NEW_PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = admin_id(&app, &token).await;
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": id, "d": true}))
        .await;
    assert_eq!(res["data"]["updateAdminUser"]["disabled"], true, "{res}");
    assert_eq!(
        code(
            &app.gql_as(Some(&token), "{ currentAdmin { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    // The right password answers exactly as a wrong one does.
    let right = admin_sign_in(&app, "temp", NEW_PASSWORD).await;
    let wrong = admin_sign_in(&app, "temp", "Wrong-Password-2026").await;
    assert_eq!(code(&right), "AUTHENTICATION_FAILED");
    assert_eq!(right["errors"][0]["message"], wrong["errors"][0]["message"]);
    app.gql_as(Some(&root), UPDATE, json!({"id": id, "d": false}))
        .await;
    admin_sign_in(&app, "temp", NEW_PASSWORD).await["token"]
        .as_str()
        .expect("enabled again, the same password works");
}

async fn revoke_admin_tokens_signs_an_admin_out_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let root = app.admin_token("administrator").await;
    let laptop = app.admin_token("support").await;
    let id = admin_id(&app, &laptop).await;
    let res = app
        .gql_as(
            Some(&root),
            "mutation($id: ID!) { revokeAdminTokens(adminId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(res["data"]["revokeAdminTokens"]["revokedCount"], 1, "{res}");
    assert_eq!(
        code(
            &app.gql_as(Some(&laptop), "{ currentAdmin { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    assert!(
        app.gql_as(Some(&root), "{ currentAdmin { id } }", json!({}))
            .await["errors"]
            .is_null()
    );
    let audit = app
        .gql_as(
            Some(&root),
            "{ auditLog(filter: {action: REVOKE_ADMIN_TOKENS}) { edges { node { detail } } } }",
            json!({}),
        )
        .await;
    assert!(
        audit["data"]["auditLog"]["edges"][0]["node"]["detail"]
            .as_str()
            .unwrap()
            .contains(&id),
        "{audit}"
    );
}

async fn forgot_password_in_the_console_mails_only_active_admins_with_an_address(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    invite(&app, &root, "amy", "support").await;
    let mail = invitation(&smtp, 1, "amy@example.com").await;
    app.gql(SET, json!({"t": mail.token(), "p": NEW_PASSWORD}))
        .await;
    let session = admin_sign_in(&app, "amy", NEW_PASSWORD).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forgot = "mutation($u: String!) { requestAdminPasswordReset(username: $u) }";
    // No mail, and not one row more, for a name without an active admin with an address: an
    // unknown name, a CLI-made admin (no address), a disabled admin.
    let cli_admin = app.admin_token("viewer").await;
    let cli_name = app
        .gql_as(Some(&cli_admin), "{ currentAdmin { username } }", json!({}))
        .await["data"]["currentAdmin"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    invite(&app, &root, "gone", "viewer").await;
    let gone_id = app
        .gql_as(Some(&root), "{ adminUsers { id username } }", json!({}))
        .await["data"]["adminUsers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "gone")
        .unwrap()["id"]
        .clone();
    app.gql_as(Some(&root), UPDATE, json!({"id": gone_id, "d": true}))
        .await;
    smtp.wait_for(2).await;
    let (tokens, outbox) = (
        app.count("admin_password_tokens").await,
        app.count("email_outbox").await,
    );
    for name in ["ghost", cli_name.as_str(), "gone", "not a username!"] {
        let res = app.gql(forgot, json!({"u": name})).await;
        assert_eq!(
            res["data"]["requestAdminPasswordReset"], true,
            "{name}: {res}"
        );
    }
    assert_eq!(app.count("admin_password_tokens").await, tokens);
    assert_eq!(app.count("email_outbox").await, outbox);

    let res = app.gql(forgot, json!({"u": "AMY"})).await;
    assert_eq!(res["data"]["requestAdminPasswordReset"], true, "{res}");
    let reset = invitation(&smtp, 4, "amy@example.com").await;
    assert!(reset.subject().contains("Reset"), "{}", reset.subject());
    let res = app
        .gql(SET, json!({"t": reset.token(), "p": "Renewed-Admin-2027"}))
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    assert_eq!(
        code(
            &app.gql_as(Some(&session), "{ currentAdmin { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED",
        "a new password signs every session out"
    );
    assert_eq!(
        code(&admin_sign_in(&app, "amy", NEW_PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    admin_sign_in(&app, "amy", "Renewed-Admin-2027").await["token"]
        .as_str()
        .expect("the new password works");
    // Limited per username (and per client address): five an hour.
    for _ in 0..4 {
        app.gql(forgot, json!({"u": "amy"})).await;
    }
    assert_eq!(
        code(&app.gql(forgot, json!({"u": "amy"})).await),
        "RATE_LIMITED"
    );
}

async fn the_cli_gives_the_first_administrator_an_address_for_forgot_password(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let create = |email: &str| {
        app.command(&[
            "admin",
            "create",
            "--username",
            "ops",
            "--role",
            "administrator",
            "--email",
            email,
        ])
        .env("LATCHKEY_ADMIN_PASSWORD", "First-Admin-Pass-2026")
        .output()
        .unwrap()
    };
    let refused = create("not an address");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("email"));
    let made = create("ops@example.com");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let res = app
        .gql(
            "mutation { requestAdminPasswordReset(username: \"ops\") }",
            json!({}),
        )
        .await;
    assert_eq!(res["data"]["requestAdminPasswordReset"], true, "{res}");
    let mail = invitation(&smtp, 1, "ops@example.com").await;
    let res = app
        .gql(
            SET,
            json!({"t": mail.token(), "p": "Second-Admin-Pass-2027"}),
        )
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    admin_sign_in(&app, "ops", "Second-Admin-Pass-2027").await["token"]
        .as_str()
        .expect("signed in with the new password");
}

/// An invitation went to the wrong address: the administrator disables the invitee. The link
/// must die with that, so nobody holds a password that works the day the admin is enabled.
async fn disabling_an_invited_admin_voids_the_invitation_link(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    let res = invite(&app, &root, "lee", "support").await;
    let id = res["data"]["createAdminUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = invitation(&smtp, 1, "lee@example.com").await.token();
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": id, "d": true}))
        .await;
    assert_eq!(res["data"]["updateAdminUser"]["disabled"], true, "{res}");
    let used = app.gql(SET, json!({"t": link, "p": NEW_PASSWORD})).await;
    assert_eq!(code(&used), "RESET_TOKEN_INVALID", "{used}");
    let res = app
        .gql_as(Some(&root), UPDATE, json!({"id": id, "d": false}))
        .await;
    assert_eq!(res["data"]["updateAdminUser"]["disabled"], false, "{res}");
    assert_eq!(
        code(&admin_sign_in(&app, "lee", NEW_PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    assert_eq!(
        code(&app.gql(SET, json!({"t": link, "p": NEW_PASSWORD})).await),
        "RESET_TOKEN_INVALID"
    );
}

/// A console account opens more than a customer's: its reset links live an hour (invitations
/// a day), a password made of the admin's own name is refused, and setting one tells the
/// admin at their address.
async fn admin_links_live_shorter_and_a_new_admin_password_is_announced(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    invite(&app, &root, "lena", "support").await;
    let mail = invitation(&smtp, 1, "lena@example.com").await;
    // A day, less a minute, later the invitation still works; her name is no password.
    app.clock
        .advance(Duration::hours(24) - Duration::minutes(1));
    let res = app
        .gql(SET, json!({"t": mail.token(), "p": "Lena-Console-Pass-77"}))
        .await;
    assert_eq!(code(&res), "PASSWORD_POLICY", "{res}");
    let res = app
        .gql(SET, json!({"t": mail.token(), "p": NEW_PASSWORD}))
        .await;
    assert_eq!(res["data"]["setAdminPassword"], true, "{res}");
    let notice = smtp.wait_for_mail("lena@example.com", "was just set").await;
    assert!(
        notice.subject().contains("admin account"),
        "{}",
        notice.subject()
    );
    // "Forgot your password?": the link lives an hour.
    let forgot = "mutation($u: String!) { requestAdminPasswordReset(username: $u) }";
    app.gql(forgot, json!({"u": "lena"})).await;
    let reset = invitation(&smtp, 3, "lena@example.com").await;
    assert_ne!(reset.token(), mail.token());
    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let res = app
        .gql(
            SET,
            json!({"t": reset.token(), "p": "Another-Console-2026"}),
        )
        .await;
    assert_eq!(code(&res), "RESET_TOKEN_EXPIRED", "{res}");
    assert!(
        admin_sign_in(&app, "lena", NEW_PASSWORD).await["errors"].is_null(),
        "the old password still works"
    );
}
