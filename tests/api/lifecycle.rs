//! The account lifecycle: profile changes and email changes (who can move an account to
//! another address decides who can take it over).

use chrono::Duration;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    smtp::{Received, SmtpReceiver},
};

crate::tests![
    update_customer_changes_names_and_language_and_refuses_bad_input,
    an_email_change_applies_only_when_the_new_address_confirms,
    a_stolen_session_cannot_change_the_email_without_the_current_password,
    an_address_in_use_is_refused_as_registration_refuses_it,
    asking_whether_an_address_is_taken_spends_the_registration_budget,
    email_changes_have_a_budget_per_client_and_the_confirmation_names_nobody,
    the_old_address_cancels_a_pending_change_and_signs_every_device_out,
    every_remediation_kills_a_pending_email_change,
    the_old_address_undoes_a_confirmed_change,
    a_confirmed_change_is_undone_for_48_hours_and_an_admin_decides_who_gets_it,
    the_removed_address_can_give_a_frozen_account_back,
    the_first_notice_undoes_a_chain_of_changes,
    the_thiefs_own_later_notice_leaves_the_owners_working,
    an_address_moved_away_from_stays_the_accounts_while_it_can_be_undone,
    an_email_change_voids_reset_links_sent_before_it,
    confirmation_links_expire_and_a_newer_request_supersedes_the_older,
    email_change_and_reset_tokens_are_not_interchangeable,
    a_customer_deletes_their_account_and_no_row_names_them_afterwards,
    deletion_forgets_the_addresses_an_account_had_before,
    an_admin_deletes_a_customer_and_mail_not_sent_yet_never_goes,
    the_data_export_lists_what_is_stored_and_nothing_secret,
    an_export_costs_like_what_it_reads_and_never_names_staff,
    an_export_pages_its_lists,
];

const CHANGE: &str = "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }";

async fn request_change(app: &TestApp, token: &str, new_email: &str, password: &str) -> Value {
    app.gql_as(Some(token), CHANGE, json!({"e": new_email, "p": password}))
        .await
}

async fn confirm(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { confirmCustomerEmailChange(token: $t) }",
        json!({"t": token}),
    )
    .await
}

async fn cancel(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { cancelCustomerEmailChange(token: $t) }",
        json!({"t": token}),
    )
    .await
}

/// The two messages of one request: (confirmation to the new address, notice to the old).
async fn change_mails(
    smtp: &SmtpReceiver,
    total: usize,
    new: &str,
    old: &str,
) -> (Received, Received) {
    let mails = smtp.wait_for(total).await;
    let find = |to: &str, needle: &str| {
        mails
            .iter()
            .rev()
            .find(|m| m.to == vec![to.to_owned()] && m.text().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} mail to {to}: {mails:?}"))
            .clone()
    };
    (
        find(new, "/account/confirm-email"),
        find(old, "/account/cancel-email-change"),
    )
}

async fn update_customer_changes_names_and_language_and_refuses_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("prof@example.com", PASSWORD).await;
    let token = app.sign_in("prof@example.com", PASSWORD).await;
    let update = "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { email firstname lastname locale } }";
    let res = app
        .gql_as(
            Some(&token),
            update,
            json!({"i": {"firstname": "花子", "locale": "ja-JP"}}),
        )
        .await;
    assert_eq!(
        res["data"]["updateCustomer"],
        json!({"email": "prof@example.com", "firstname": "花子", "lastname": "Lee", "locale": "ja"}),
        "{res}"
    );
    // Refusals change nothing, not even the valid fields beside them.
    for (input, field) in [
        (json!({"firstname": "", "lastname": "Kim"}), "firstname"),
        (json!({"lastname": "a\u{0007}b"}), "lastname"),
        (json!({"firstname": "Ann", "locale": "fr"}), "locale"),
    ] {
        let res = app.gql_as(Some(&token), update, json!({"i": input})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], field, "{res}");
    }
    let me = app
        .gql_as(
            Some(&token),
            "{ customer { firstname lastname locale } }",
            json!({}),
        )
        .await;
    assert_eq!(
        me["data"]["customer"],
        json!({"firstname": "花子", "lastname": "Lee", "locale": "ja"})
    );
    // The admin grid finds the customer by the new name.
    let admin = app.admin_token("administrator").await;
    let found = app
        .gql_as(
            Some(&admin),
            "{ customers(first: 5, filter: {search: \"花子\"}) { edges { node { email } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        found["data"]["customers"]["edges"][0]["node"]["email"], "prof@example.com",
        "{found}"
    );
    let anonymous = app.gql(update, json!({"i": {"firstname": "X"}})).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
}

async fn an_email_change_applies_only_when_the_new_address_confirms(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("old@example.com", PASSWORD).await;
    let token = app.sign_in("old@example.com", PASSWORD).await;
    let res = request_change(&app, &token, " New@Example.com ", PASSWORD).await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let (confirmation, notice) = change_mails(&smtp, 2, "New@Example.com", "old@example.com").await;
    assert!(
        confirmation.subject().contains("Confirm"),
        "{}",
        confirmation.subject()
    );
    assert!(
        notice.text().contains("signs every device out"),
        "{}",
        notice.text()
    );
    // Nothing changed yet: the account still signs in with the old address only.
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("old@example.com"));
    assert_eq!(
        code(&app.sign_in_response("new@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );

    let res = confirm(&app, &confirmation.token()).await;
    assert_eq!(res["data"]["confirmCustomerEmailChange"], true, "{res}");
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("New@Example.com"));
    app.sign_in("new@example.com", PASSWORD).await;
    assert_eq!(
        code(&app.sign_in_response("old@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    // A confirmation link works once.
    assert_eq!(
        code(&confirm(&app, &confirmation.token()).await),
        "LINK_INVALID"
    );
    // Reset mail now goes to the new address.
    app.request_reset("new@example.com").await;
    let mails = smtp.wait_for(3).await;
    assert!(
        mails
            .iter()
            .any(|m| m.to == vec!["New@Example.com".to_owned()]
                && m.text().contains("/account/reset-password")),
        "{mails:?}"
    );
    // The links were only in the outbox until sent, and stored as hashes only.
    let links = app
        .count("email_outbox WHERE link IS NOT NULL AND status = 'sent'")
        .await;
    assert_eq!(links, 0);
    let raw = app
        .count(&format!(
            "email_changes WHERE confirm_hash = '{}' OR cancel_hash = '{}'",
            confirmation.token(),
            notice.token()
        ))
        .await;
    assert_eq!(raw, 0, "a raw token is stored");
}

async fn a_stolen_session_cannot_change_the_email_without_the_current_password(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("victim@example.com", PASSWORD).await;
    let stolen = app.sign_in("victim@example.com", PASSWORD).await;
    for password in ["wrong-password-1", ""] {
        let res = request_change(&app, &stolen, "thief@example.com", password).await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    let res = app
        .gql(CHANGE, json!({"e": "thief@example.com", "p": PASSWORD}))
        .await;
    assert_eq!(code(&res), "UNAUTHENTICATED");
    assert_eq!(app.count("email_changes").await, 0);
    assert!(smtp.settled(&app).await.is_empty(), "mail was sent");
    // Wrong passwords count like sign-ins: enough of them lock the account.
    app.set_settings("lockout_failures = 3").await;
    for _ in 0..3 {
        request_change(&app, &stolen, "thief@example.com", "wrong-password-1").await;
    }
    let res = request_change(&app, &stolen, "thief@example.com", PASSWORD).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "locked: {res}");
    assert_eq!(app.count("email_changes").await, 0);
}

async fn an_address_in_use_is_refused_as_registration_refuses_it(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("mine@example.com", PASSWORD).await;
    app.create_customer("taken@example.com", PASSWORD).await;
    let token = app.sign_in("mine@example.com", PASSWORD).await;
    let res = request_change(&app, &token, "TAKEN@example.com", PASSWORD).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    let registration = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": "taken@example.com", "firstname": "A", "lastname": "B", "password": PASSWORD}}),
        )
        .await;
    // The same words as createCustomer's (each names its own argument).
    let reason = |r: &Value| {
        r["errors"][0]["message"]
            .as_str()
            .and_then(|m| m.split_once(": ").map(|(_, why)| why.to_owned()))
    };
    assert_eq!(reason(&res), reason(&registration), "{res} {registration}");
    assert!(reason(&res).is_some());
    for same in ["mine@example.com", "bad address"] {
        let res = request_change(&app, &token, same, PASSWORD).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], "newEmail");
    }
    assert_eq!(app.count("email_changes").await, 0);
    assert!(smtp.settled(&app).await.is_empty());

    // Taken between the request and the confirmation: the confirmation is refused.
    let res = request_change(&app, &token, "later@example.com", PASSWORD).await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let (confirmation, _) = change_mails(&smtp, 2, "later@example.com", "mine@example.com").await;
    app.create_customer("later@example.com", PASSWORD).await;
    let res = confirm(&app, &confirmation.token()).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("mine@example.com"));
}

/// Each account may ask five times an hour, but accounts are cheap: the questions from one
/// client spend its registration budget too, so they never add up to more than registering
/// could answer.
async fn asking_whether_an_address_is_taken_spends_the_registration_budget(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("taken@example.com", PASSWORD).await;
    app.create_customer("asker@example.com", PASSWORD).await;
    app.set_settings("max_registrations_per_ip_per_hour = 4")
        .await;
    let asker = app.sign_in("asker@example.com", PASSWORD).await;
    let taken = request_change(&app, &asker, "taken@example.com", PASSWORD).await;
    assert_eq!(code(&taken), "BAD_USER_INPUT", "{taken}");
    let free = request_change(&app, &asker, "free@example.com", PASSWORD).await;
    assert_eq!(free["data"]["requestCustomerEmailChange"], true, "{free}");
    // Two registrations and two questions: the client's four are spent, the account's five
    // are not.
    let refused = request_change(&app, &asker, "taken@example.com", PASSWORD).await;
    assert_eq!(code(&refused), "RATE_LIMITED", "{refused}");
    let register = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": "third@example.com", "firstname": "Ann", "lastname": "Lee", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(code(&register), "RATE_LIMITED", "{register}");
}

async fn the_old_address_cancels_a_pending_change_and_signs_every_device_out(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("owner@example.com", PASSWORD).await;
    let phone = app.sign_in("owner@example.com", PASSWORD).await;
    let thief = app.sign_in("owner@example.com", PASSWORD).await;
    request_change(&app, &thief, "thief@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 2, "thief@example.com", "owner@example.com").await;

    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    for session in [&phone, &thief] {
        assert_eq!(app.whoami(session).await, Err("UNAUTHENTICATED".to_owned()));
    }
    assert_eq!(
        code(&confirm(&app, &confirmation.token()).await),
        "LINK_INVALID"
    );
    assert_eq!(code(&cancel(&app, &notice.token()).await), "LINK_INVALID");
    // Whoever asked knew the password: it no longer signs in, and the owner sets a new one.
    assert_old_password_void_and_owner_resets(&app, &smtp, "owner@example.com", false).await;
}

/// A thief who knows the password asks to move the account to their address; the owner (or
/// an operator) then takes the account back. Whatever the remedy, the thief's confirmation
/// link must be dead: confirming it would move the account to the thief's mailbox, where
/// "Forgot Your Password?" hands them the same customer id.
async fn every_remediation_kills_a_pending_email_change(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let admin = app.admin_token("administrator").await;
    app.without_reset_limits().await;
    for remedy in [
        "reset",
        "change",
        "force-sign-in",
        "bulk-force-sign-in",
        "bulk-require-new-password",
    ] {
        let owner = format!("owner-{remedy}@example.com");
        let thief_address = format!("thief-{remedy}@example.com");
        app.create_customer(&owner, PASSWORD).await;
        let thief = app.sign_in(&owner, PASSWORD).await;
        let res = request_change(&app, &thief, &thief_address, PASSWORD).await;
        assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
        let confirmation = smtp
            .wait_for_mail(&thief_address, "/account/confirm-email")
            .await;
        let id = app.customer_id(&owner).await;
        match remedy {
            "reset" => {
                app.request_reset(&owner).await;
                let reset = smtp.wait_for_mail(&owner, "/account/reset-password").await;
                let res = app.reset_password(&reset.token(), "owner-Pw-2026").await;
                assert_eq!(res["data"]["resetPassword"], true, "{res}");
            }
            "change" => {
                let own = app.sign_in(&owner, PASSWORD).await;
                let res = app
                    .gql_as(
                        Some(&own),
                        "mutation($c: String!) { changeCustomerPassword(currentPassword: $c, newPassword: \"owner-Pw-2026\") { email } }",
                        json!({"c": PASSWORD}),
                    )
                    .await;
                assert_eq!(
                    res["data"]["changeCustomerPassword"]["email"],
                    owner.as_str(),
                    "{res}"
                );
            }
            "force-sign-in" => {
                let res = app
                    .gql_as(
                        Some(&admin),
                        "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
                        json!({"id": id}),
                    )
                    .await;
                assert!(
                    res["data"]["revokeCustomerTokens"]["revokedCount"].as_u64() >= Some(1),
                    "{res}"
                );
            }
            bulk => {
                let action = if bulk == "bulk-force-sign-in" {
                    "FORCE_SIGN_IN"
                } else {
                    "REQUIRE_NEW_PASSWORD"
                };
                crate::bulk::run_job(&app, &admin, action, json!({"customerIds": [id]})).await;
            }
        }
        let res = confirm(&app, &confirmation.token()).await;
        assert_eq!(code(&res), "LINK_INVALID", "{remedy}: {res}");
        let me = app
            .gql_as(
                Some(&admin),
                "query($id: ID!) { customerById(id: $id) { email } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            me["data"]["customerById"]["email"],
            owner.as_str(),
            "{remedy}: {me}"
        );
        let taken = app.sign_in_response(&thief_address, PASSWORD).await;
        assert_eq!(code(&taken), "AUTHENTICATION_FAILED", "{remedy}: {taken}");
    }
}

/// After a "this wasn't me": the old password is refused, and "Forgot Your Password?" at the
/// owner's address gives them the account back. When the "this wasn't me" undid a confirmed
/// change (`frozen`), the account is frozen first: a reset request sends nothing, the admin's
/// "Reset Password" is refused, and only an admin's recovery (audited) lets the reset through.
async fn assert_old_password_void_and_owner_resets(
    app: &TestApp,
    smtp: &SmtpReceiver,
    owner: &str,
    frozen: bool,
) {
    let old = app.sign_in_response(owner, PASSWORD).await;
    assert_eq!(code(&old), "AUTHENTICATION_FAILED", "{old}");
    app.without_reset_limits().await;
    let is_reset_to_owner = |m: &Received| {
        m.to == vec![owner.to_owned()] && m.text().contains("/account/reset-password")
    };
    if frozen {
        let admin = app.admin_token("administrator").await;
        let found = app
            .gql_as(
                Some(&admin),
                "query($s: String!) { customers(first: 1, filter: {search: $s}) { edges { node { id email frozenAt } } } }",
                json!({"s": owner}),
            )
            .await;
        let node = &found["data"]["customers"]["edges"][0]["node"];
        assert_eq!(node["email"], owner, "{found}");
        assert!(node["frozenAt"].is_string(), "frozen: {found}");
        let id = node["id"].as_str().unwrap().to_owned();
        app.request_reset(owner).await;
        let refused = app
            .gql_as(
                Some(&admin),
                "mutation($id: ID!) { adminResetPassword(customerId: $id) }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
        assert!(
            !smtp.settled(app).await.iter().any(is_reset_to_owner),
            "a frozen account gets no reset link"
        );
        let recovered = app
            .gql_as(
                Some(&admin),
                "mutation($id: ID!) { adminRecoverCustomer(customerId: $id) { email frozenAt } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            recovered["data"]["adminRecoverCustomer"],
            json!({"email": owner, "frozenAt": null}),
            "{recovered}"
        );
        let audit = app
            .gql_as(
                Some(&admin),
                "{ auditLog(first: 10) { edges { node { action customerId } } } }",
                json!({}),
            )
            .await;
        assert!(
            audit["data"]["auditLog"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["node"]["action"] == "RECOVER_CUSTOMER"
                    && e["node"]["customerId"] == id.as_str()),
            "{audit}"
        );
    }
    app.request_reset(owner).await;
    let reset = smtp.wait_for_mail(owner, "/account/reset-password").await;
    let res = app.reset_password(&reset.token(), "fresh-Pw-11").await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    let again = app.sign_in(owner, "fresh-Pw-11").await;
    assert_eq!(app.whoami(&again).await.as_deref(), Ok(owner));
}

async fn the_old_address_undoes_a_confirmed_change(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("owner@example.com", PASSWORD).await;
    let thief = app.sign_in("owner@example.com", PASSWORD).await;
    request_change(&app, &thief, "thief@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 2, "thief@example.com", "owner@example.com").await;
    confirm(&app, &confirmation.token()).await;
    assert_eq!(app.whoami(&thief).await.as_deref(), Ok("thief@example.com"));
    // A reset link the thief asked for at the new address dies with the undo.
    app.without_reset_limits().await;
    app.request_reset("thief@example.com").await;
    let reset = smtp
        .wait_for(3)
        .await
        .into_iter()
        .find(|m| m.text().contains("/account/reset-password"))
        .unwrap();

    // A day later the owner reads the notice (once confirmed, it works for 48 hours).
    app.clock.advance(Duration::days(1));
    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    assert_eq!(app.whoami(&thief).await, Err("UNAUTHENTICATED".to_owned()));
    // The address being removed is told the account is locked until the store has checked.
    let told = smtp.wait_for_mail("thief@example.com", "locked").await;
    assert!(told.subject().contains("locked"), "{}", told.subject());
    assert_eq!(
        code(&app.reset_password(&reset.token(), "thief-Pw-2026").await),
        "RESET_TOKEN_INVALID"
    );
    assert_old_password_void_and_owner_resets(&app, &smtp, "owner@example.com", true).await;
}

/// People change address because they lost the old mailbox; whoever reads it later must not
/// get the account by clicking "this wasn't me". Once confirmed, the link works for 48 hours
/// (`LATCHKEY_EMAIL_CHANGE_REVERT_HOURS`), and using it freezes the account: the new address
/// is told, and an admin who has checked who owns the account can give it to that address.
async fn a_confirmed_change_is_undone_for_48_hours_and_an_admin_decides_who_gets_it(
    backend: Backend,
) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("lost@example.com", PASSWORD).await;
    let owner = app.sign_in("lost@example.com", PASSWORD).await;
    request_change(&app, &owner, "kept@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 2, "kept@example.com", "lost@example.com").await;
    confirm(&app, &confirmation.token()).await;
    // Whoever took over the old mailbox clicks the notice's link a day later.
    app.clock.advance(Duration::days(1));
    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    smtp.wait_for_mail("kept@example.com", "locked").await;
    let res = app.sign_in_response("kept@example.com", PASSWORD).await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    // The old mailbox gets nothing from "Forgot Your Password?".
    app.without_reset_limits().await;
    app.request_reset("lost@example.com").await;
    assert!(
        !smtp
            .settled(&app)
            .await
            .iter()
            .any(|m| m.text().contains("/account/reset-password")),
        "no reset link while frozen"
    );
    // The owner calls the store; the admin gives the account to the address they moved to.
    let admin = app.admin_token("administrator").await;
    let found = app
        .gql_as(
            Some(&admin),
            "{ customers(first: 1, filter: {search: \"lost@example.com\"}) { edges { node { id frozenAt } } } }",
            json!({}),
        )
        .await;
    let id = found["data"]["customers"]["edges"][0]["node"]["id"].clone();
    assert!(
        found["data"]["customers"]["edges"][0]["node"]["frozenAt"].is_string(),
        "{found}"
    );
    let support = app.admin_token("support").await;
    let denied = app
        .gql_as(
            Some(&support),
            "mutation($id: ID!) { adminRecoverCustomer(customerId: $id) { email } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(code(&denied), "FORBIDDEN", "{denied}");
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!, $e: String) { adminRecoverCustomer(customerId: $id, email: $e) { email frozenAt } }",
            json!({"id": id, "e": "kept@example.com"}),
        )
        .await;
    assert_eq!(
        res["data"]["adminRecoverCustomer"],
        json!({"email": "kept@example.com", "frozenAt": null}),
        "{res}"
    );
    let again = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { adminRecoverCustomer(customerId: $id) { email } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        code(&again),
        "BAD_USER_INPUT",
        "nothing left to recover: {again}"
    );
    app.request_reset("kept@example.com").await;
    let reset = smtp
        .wait_for_mail("kept@example.com", "/account/reset-password")
        .await;
    let res = app.reset_password(&reset.token(), "fresh-Pw-11").await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    app.sign_in("kept@example.com", "fresh-Pw-11").await;

    // Past 48 hours from the confirmation, the link no longer undoes anything.
    app.create_customer("late@example.com", PASSWORD).await;
    let token = app.sign_in("late@example.com", PASSWORD).await;
    request_change(&app, &token, "later@example.com", PASSWORD).await;
    let confirmation = smtp
        .wait_for_mail("later@example.com", "/account/confirm-email")
        .await;
    let notice = smtp
        .wait_for_mail("late@example.com", "/account/cancel-email-change")
        .await;
    confirm(&app, &confirmation.token()).await;
    app.clock
        .advance(Duration::hours(48) + Duration::seconds(1));
    assert_eq!(code(&cancel(&app, &notice.token()).await), "LINK_EXPIRED");
    app.sign_in("later@example.com", PASSWORD).await;
}

/// What a thief who knows the password leaves after moving owner@ to first@ (confirmed), then
/// a minute later on to second@ (confirmed), whose notice goes to first@, the thief's own.
struct Chain {
    thief: String,
    /// The owner's notice, for the first change.
    notice: Received,
    /// The thief's own notice, for the second.
    second_notice: Received,
}

async fn move_twice(app: &TestApp, smtp: &SmtpReceiver) -> Chain {
    app.create_customer("owner@example.com", PASSWORD).await;
    let thief = app.sign_in("owner@example.com", PASSWORD).await;
    request_change(app, &thief, "first@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(smtp, 2, "first@example.com", "owner@example.com").await;
    confirm(app, &confirmation.token()).await;
    app.clock.advance(Duration::minutes(1));
    request_change(app, &thief, "second@example.com", PASSWORD).await;
    let (second_confirmation, second_notice) =
        change_mails(smtp, 4, "second@example.com", "first@example.com").await;
    confirm(app, &second_confirmation.token()).await;
    Chain {
        thief,
        notice,
        second_notice,
    }
}

/// Cancelling a later change undoes that one and what came after it, never an earlier one:
/// the thief spending their own notice first leaves the owner's notice working.
async fn the_thiefs_own_later_notice_leaves_the_owners_working(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let Chain {
        notice,
        second_notice,
        ..
    } = move_twice(&app, &smtp).await;

    let res = cancel(&app, &second_notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    assert_old_password_void_and_owner_resets(&app, &smtp, "owner@example.com", true).await;
}

/// A thief who knows the password moves the account to one address, then on to another whose
/// notice goes to the first (theirs). The owner's one notice must still bring it all back.
async fn the_first_notice_undoes_a_chain_of_changes(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let Chain {
        thief,
        notice,
        second_notice,
    } = move_twice(&app, &smtp).await;
    assert_eq!(
        app.whoami(&thief).await.as_deref(),
        Ok("second@example.com")
    );

    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    assert_eq!(app.whoami(&thief).await, Err("UNAUTHENTICATED".to_owned()));
    // The thief's own notice cannot move the account back to their first address.
    assert_eq!(
        code(&cancel(&app, &second_notice.token()).await),
        "LINK_INVALID"
    );
    for address in ["first@example.com", "second@example.com"] {
        let res = app.sign_in_response(address, PASSWORD).await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{address}: {res}");
    }
    assert_old_password_void_and_owner_resets(&app, &smtp, "owner@example.com", true).await;
}

/// A thief moves the account away and registers its old address for themselves, so the
/// owner's "this wasn't me" has no address to put back. While the notice's link works, the old
/// address stays the account's: nobody else can register it or move to it.
async fn an_address_moved_away_from_stays_the_accounts_while_it_can_be_undone(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("owner@example.com", PASSWORD).await;
    app.create_customer("accomplice@example.com", PASSWORD)
        .await;
    let thief = app.sign_in("owner@example.com", PASSWORD).await;
    request_change(&app, &thief, "thief@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 2, "thief@example.com", "owner@example.com").await;
    confirm(&app, &confirmation.token()).await;
    let register = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": "OWNER@example.com", "firstname": "Ann", "lastname": "Lee", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(code(&register), "BAD_USER_INPUT", "{register}");
    let accomplice = app.sign_in("accomplice@example.com", PASSWORD).await;
    let moved = request_change(&app, &accomplice, "owner@example.com", PASSWORD).await;
    assert_eq!(code(&moved), "BAD_USER_INPUT", "{moved}");

    let res = cancel(&app, &notice.token()).await;
    assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
    assert_old_password_void_and_owner_resets(&app, &smtp, "owner@example.com", true).await;

    // Once the link can no longer undo anything, an address an account left is free again.
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("leaver@example.com", PASSWORD).await;
    let token = app.sign_in("leaver@example.com", PASSWORD).await;
    request_change(&app, &token, "arrived@example.com", PASSWORD).await;
    let (confirmation, _) =
        change_mails(&smtp, 2, "arrived@example.com", "leaver@example.com").await;
    confirm(&app, &confirmation.token()).await;
    app.clock.advance(Duration::days(7) + Duration::seconds(1));
    app.create_customer("leaver@example.com", PASSWORD).await;
}

async fn an_email_change_voids_reset_links_sent_before_it(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("before@example.com", PASSWORD).await;
    app.request_reset("before@example.com").await;
    let reset = smtp.wait_for(1).await.remove(0);
    let token = app.sign_in("before@example.com", PASSWORD).await;
    request_change(&app, &token, "after@example.com", PASSWORD).await;
    let (confirmation, _) = change_mails(&smtp, 3, "after@example.com", "before@example.com").await;
    confirm(&app, &confirmation.token()).await;
    assert_eq!(
        code(&app.reset_password(&reset.token(), "fresh-Pw-2026").await),
        "RESET_TOKEN_INVALID"
    );
    app.sign_in("after@example.com", PASSWORD).await;
}

async fn confirmation_links_expire_and_a_newer_request_supersedes_the_older(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("slow@example.com", PASSWORD).await;
    let token = app.sign_in("slow@example.com", PASSWORD).await;
    request_change(&app, &token, "first@example.com", PASSWORD).await;
    let (first, _) = change_mails(&smtp, 2, "first@example.com", "slow@example.com").await;
    request_change(&app, &token, "second@example.com", PASSWORD).await;
    let (second, _) = change_mails(&smtp, 4, "second@example.com", "slow@example.com").await;
    assert_eq!(code(&confirm(&app, &first.token()).await), "LINK_INVALID");
    // The confirmation lives as long as a reset link (24 hours by default).
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    assert_eq!(code(&confirm(&app, &second.token()).await), "LINK_EXPIRED");
    let token = app.sign_in("slow@example.com", PASSWORD).await;
    assert_eq!(app.whoami(&token).await.as_deref(), Ok("slow@example.com"));
    for junk in ["", "short", &"x".repeat(5000)] {
        assert_eq!(code(&confirm(&app, junk).await), "LINK_INVALID");
        assert_eq!(code(&cancel(&app, junk).await), "LINK_INVALID");
    }
}

async fn email_change_and_reset_tokens_are_not_interchangeable(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("purpose@example.com", PASSWORD).await;
    let token = app.sign_in("purpose@example.com", PASSWORD).await;
    request_change(&app, &token, "elsewhere@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 2, "elsewhere@example.com", "purpose@example.com").await;
    for t in [confirmation.token(), notice.token()] {
        assert_eq!(
            code(&app.reset_password(&t, "fresh-Pw-2026").await),
            "RESET_TOKEN_INVALID"
        );
    }
    app.request_reset("purpose@example.com").await;
    let reset = smtp
        .wait_for(3)
        .await
        .into_iter()
        .find(|m| m.text().contains("/account/reset-password"))
        .unwrap();
    assert_eq!(code(&confirm(&app, &reset.token()).await), "LINK_INVALID");
    assert_eq!(code(&cancel(&app, &reset.token()).await), "LINK_INVALID");
    // The confirmation link is not the cancel link either.
    assert_eq!(
        code(&cancel(&app, &confirmation.token()).await),
        "LINK_INVALID"
    );
    assert_eq!(
        app.whoami(&token).await.as_deref(),
        Ok("purpose@example.com")
    );
}

/// Tables (other than `except`) with a row whose text contains `needle`: every column of every
/// table of the app's database, read as text.
async fn tables_mentioning(app: &TestApp, needle: &str, except: &[&str]) -> Vec<String> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let backend = app.db.get_database_backend();
    let list = match backend {
        DatabaseBackend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        _ => {
            "SELECT table_name::text AS t FROM information_schema.tables \
              WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let tables: Vec<String> = app
        .db
        .query_all_raw(Statement::from_string(backend, list))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    let mut found = Vec::new();
    for table in tables {
        if except.contains(&table.as_str()) {
            continue;
        }
        let row_text = match backend {
            DatabaseBackend::Sqlite => {
                let columns: Vec<String> = app
                    .db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT name FROM pragma_table_info('{table}')"),
                    ))
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| {
                        // A blob (a UUID) in hex: cast to text, a blob holding a zero byte
                        // would end the text there for LIKE, hiding every later column.
                        let c = r.try_get::<String>("", "name").unwrap();
                        format!(
                            "COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") \
                             ELSE CAST(\"{c}\" AS TEXT) END, '')"
                        )
                    })
                    .collect();
                if columns.is_empty() {
                    continue;
                }
                columns.join(" || '|' || ")
            }
            _ => "CAST(x AS TEXT)".to_owned(),
        };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM \"{table}\" x WHERE lower({row_text}) LIKE '%{}%'",
            needle.to_lowercase()
        );
        let n: i64 = app
            .db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap();
        if n > 0 {
            found.push(table);
        }
    }
    found
}

const DELETE: &str = "mutation($p: String!) { deleteCustomer(currentPassword: $p) }";

/// Counters and requests are stored under the address they were made for; an account that
/// moved on leaves some under its earlier address. Deleting it forgets those too, but never an
/// address another customer holds now (that would hand a guesser a fresh lockout budget).
async fn deletion_forgets_the_addresses_an_account_had_before(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("earlier@example.com", PASSWORD).await;
    let token = app.sign_in("earlier@example.com", PASSWORD).await;
    app.request_reset("earlier@example.com").await;
    smtp.wait_for(1).await;
    request_change(&app, &token, "later@example.com", PASSWORD).await;
    let (confirmation, _) =
        change_mails(&smtp, 3, "later@example.com", "earlier@example.com").await;
    // Counted under the first address: the reset request, and a wrong password.
    app.sign_in_response("earlier@example.com", "wrong-password-1")
        .await;
    confirm(&app, &confirmation.token()).await;
    assert!(
        !tables_mentioning(&app, "earlier@example.com", &["audit_log"])
            .await
            .is_empty()
    );
    let res = app
        .gql_as(Some(&token), DELETE, json!({"p": PASSWORD}))
        .await;
    assert_eq!(res["data"]["deleteCustomer"], true, "{res}");
    for address in ["earlier@example.com", "later@example.com"] {
        assert_eq!(
            tables_mentioning(&app, address, &["audit_log"]).await,
            Vec::<String>::new(),
            "{address}"
        );
    }

    // An account that moved away from an address someone else has registered since.
    app.create_customer("shared@example.com", PASSWORD).await;
    let mover = app.sign_in("shared@example.com", PASSWORD).await;
    request_change(&app, &mover, "moved@example.com", PASSWORD).await;
    let (confirmation, _) = change_mails(&smtp, 5, "moved@example.com", "shared@example.com").await;
    confirm(&app, &confirmation.token()).await;
    // Free for others once the move can no longer be undone.
    app.clock.advance(Duration::days(7) + Duration::seconds(1));
    app.create_customer("shared@example.com", PASSWORD).await;
    let wrong = app
        .sign_in_response("shared@example.com", "wrong-password-2")
        .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED", "{wrong}");
    let counted = || tables_mentioning(&app, "sign-in:customer:shared@example.com", &[]);
    assert!(
        counted().await.contains(&"limit_events".to_owned()),
        "the new holder's failure was not counted"
    );
    let mover = app.sign_in("moved@example.com", PASSWORD).await;
    let res = app
        .gql_as(Some(&mover), DELETE, json!({"p": PASSWORD}))
        .await;
    assert_eq!(res["data"]["deleteCustomer"], true, "{res}");
    // The new holder's counted failure is theirs, and stays.
    assert!(
        counted().await.contains(&"limit_events".to_owned()),
        "the deletion took the new holder's counter"
    );
}

async fn a_customer_deletes_their_account_and_no_row_names_them_afterwards(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("leaving@example.com", PASSWORD).await;
    let id = app.customer_id("leaving@example.com").await;
    let token = app.sign_in("leaving@example.com", PASSWORD).await;
    let other = app.sign_in("leaving@example.com", PASSWORD).await;
    // A trail: a reset link (mailed), a pending email change, a wrong password counted.
    app.request_reset("leaving@example.com").await;
    let reset = smtp.wait_for(1).await.remove(0);
    request_change(&app, &token, "leaving.new@example.com", PASSWORD).await;
    smtp.wait_for(3).await;
    app.sign_in_response("leaving@example.com", "wrong-password-1")
        .await;
    // An admin acted on them too.
    let admin = app.admin_token("administrator").await;
    app.gql_as(
        Some(&admin),
        "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
        json!({"id": id}),
    )
    .await;
    let token = app.sign_in("leaving@example.com", PASSWORD).await;

    let res = app
        .gql_as(Some(&token), DELETE, json!({"p": "wrong-password-1"}))
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    assert_eq!(
        app.whoami(&token).await.as_deref(),
        Ok("leaving@example.com")
    );
    assert_eq!(
        code(&app.gql(DELETE, json!({"p": PASSWORD})).await),
        "UNAUTHENTICATED"
    );

    let res = app
        .gql_as(Some(&token), DELETE, json!({"p": PASSWORD}))
        .await;
    assert_eq!(res["data"]["deleteCustomer"], true, "{res}");
    // Nothing names them: not the address anywhere, not the id outside the audit log and the
    // session log (which holds it until every replica has read it, then is pruned). (Checked
    // first: the sign-in tried below counts against the address like any unknown one.)
    for needle in ["leaving@example.com", "leaving.new@example.com"] {
        let left = tables_mentioning(&app, needle, &[]).await;
        assert!(left.is_empty(), "{needle} is still in {left:?}");
    }
    let left = tables_mentioning(&app, &id, &["audit_log", "session_log"]).await;
    assert!(left.is_empty(), "the id is still in {left:?}");
    // On SQLite the bytes are gone from the file too: `secure_delete` zeroes freed cells, so
    // once the write-ahead log is checkpointed into the file (SQLite does it every 1,000
    // pages; here at once) no free page still holds the address.
    if let Some(file) = app
        .config
        .database_url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
    {
        use sea_orm::ConnectionTrait;
        app.db
            .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .unwrap();
        let bytes = std::fs::read(file).unwrap();
        let needle = b"leaving@example.com";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{file} still holds the deleted address"
        );
    }
    for session in [&token, &other] {
        assert_eq!(app.whoami(session).await, Err("UNAUTHENTICATED".to_owned()));
    }
    assert_eq!(
        code(&app.reset_password(&reset.token(), "fresh-Pw-2026").await),
        "RESET_TOKEN_INVALID"
    );
    assert_eq!(
        code(&app.sign_in_response("leaving@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED"
    );
    let audit = app
        .gql_as(
            Some(&admin),
            "{ auditLog { edges { node { action actor customerId clientIp } } } }",
            json!({}),
        )
        .await;
    let entries = audit["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        entries.iter().any(|e| e["node"]
            == json!({"action": "DELETE_OWN_ACCOUNT", "actor": "customer", "customerId": id, "clientIp": null})),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["node"]["action"] == "REVOKE_CUSTOMER_TOKENS"),
        "earlier entries stay: {audit}"
    );
    // The address can register again: a new account, a new id.
    let again = app.create_customer("leaving@example.com", PASSWORD).await;
    assert_ne!(again["id"], id);
}

async fn an_admin_deletes_a_customer_and_mail_not_sent_yet_never_goes(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.without_reset_limits().await;
    app.create_customer("gone@example.com", PASSWORD).await;
    app.create_customer("stays@example.com", PASSWORD).await;
    let id = app.customer_id("gone@example.com").await;
    let token = app.sign_in("gone@example.com", PASSWORD).await;
    // The SMTP server refuses for now: the reset mail waits in the outbox, retried.
    smtp.reject_with(Some("451 4.3.0 try again later"));
    app.request_reset("gone@example.com").await;
    let started = std::time::Instant::now();
    while app.count("email_outbox WHERE attempts > 0").await == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never attempted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let support = app.admin_token("support").await;
    let delete = "mutation($id: ID!) { adminDeleteCustomer(customerId: $id) }";
    assert_eq!(
        code(&app.gql_as(Some(&support), delete, json!({"id": id})).await),
        "FORBIDDEN"
    );
    let admin = app.admin_token("administrator").await;
    let res = app.gql_as(Some(&admin), delete, json!({"id": id})).await;
    assert_eq!(res["data"]["adminDeleteCustomer"], true, "{res}");
    assert_eq!(
        code(&app.gql_as(Some(&admin), delete, json!({"id": id})).await),
        "NOT_FOUND"
    );
    assert_eq!(app.whoami(&token).await, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(
        app.count("email_outbox WHERE recipient = 'gone@example.com'")
            .await,
        0,
        "the queued mail went with the customer"
    );
    smtp.reject_with(None);
    // A day later every retry is long due (the worker's clock is the test's): another
    // customer's mail goes through; theirs never does.
    app.clock.advance(Duration::days(1));
    app.request_reset("stays@example.com").await;
    let mails = smtp.wait_for(1).await;
    assert!(
        mails
            .iter()
            .all(|m| m.to == vec!["stays@example.com".to_owned()]),
        "{mails:?}"
    );
    assert!(
        smtp.settled(&app)
            .await
            .iter()
            .all(|m| m.to != vec!["gone@example.com".to_owned()]),
        "mail went to a deleted customer"
    );
    // The day passed for the admin's token too.
    let admin = app.admin_token("administrator").await;
    let audit = app
        .gql_as(Some(&admin), "{ auditLog(filter: {action: DELETE_CUSTOMER}) { edges { node { customerId actor } } } }", json!({}))
        .await;
    assert_eq!(
        audit["data"]["auditLog"]["edges"][0]["node"]["customerId"], id,
        "{audit}"
    );
}

async fn the_data_export_lists_what_is_stored_and_nothing_secret(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("export@example.com", PASSWORD).await;
    let id = app.customer_id("export@example.com").await;
    let token = app.sign_in("export@example.com", PASSWORD).await;
    app.request_reset("export@example.com").await;
    let reset = smtp.wait_for(1).await.remove(0);
    request_change(&app, &token, "export.new@example.com", PASSWORD).await;
    let (confirmation, notice) =
        change_mails(&smtp, 3, "export.new@example.com", "export@example.com").await;

    let res = app
        .gql_as(Some(&token), "{ customerDataExport }", json!({}))
        .await;
    let export = &res["data"]["customerDataExport"];
    assert_eq!(export["customer"]["email"], "export@example.com", "{res}");
    assert_eq!(export["customer"]["id"], id);
    assert!(
        export["sessions"].as_array().unwrap().len() >= 2,
        "{export}"
    );
    assert_eq!(export["passwordResetLinks"].as_array().unwrap().len(), 1);
    assert_eq!(
        export["emailChanges"][0]["newEmail"],
        "export.new@example.com"
    );
    assert!(export["mail"].as_array().unwrap().len() >= 3, "{export}");
    let text = export.to_string();
    for secret in [
        reset.token(),
        confirmation.token(),
        notice.token(),
        "$argon2".to_owned(),
        "token=".to_owned(),
    ] {
        assert!(!text.contains(&secret), "the export holds {secret}");
    }
    // An admin with CUSTOMERS_EXPORT (administrators) exports any customer; a customer only
    // themselves; viewer and support read the console, not everything stored.
    for role in ["viewer", "support"] {
        let token = app.admin_token(role).await;
        let res = app
            .gql_as(
                Some(&token),
                "query($id: ID!) { customerDataExport(customerId: $id) }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(code(&res), "FORBIDDEN", "{role}: {res}");
    }
    let exporter = app.admin_token("administrator").await;
    let by_admin = app
        .gql_as(
            Some(&exporter),
            "query($id: ID!) { customerDataExport(customerId: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        by_admin["data"]["customerDataExport"]["customer"]["id"], id,
        "{by_admin}"
    );
    // It holds more than the console shows (session addresses, earlier addresses, mail), so
    // an admin's export is audited; a customer's own is not.
    let root = app.admin_token("administrator").await;
    let log = app
        .gql_as(
            Some(&root),
            "{ auditLog { edges { node { actor action customerId } } } }",
            json!({}),
        )
        .await;
    let exports: Vec<&Value> = log["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["action"] == "EXPORT_CUSTOMER_DATA")
        .collect();
    assert_eq!(exports.len(), 1, "{log}");
    assert_eq!(exports[0]["customerId"], id);
    assert!(
        exports[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("administrator"),
        "{log}"
    );
    let res = app
        .gql_as(
            Some(&token),
            "query($id: ID!) { customerDataExport(customerId: $id) }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN");
    assert_eq!(
        code(&app.gql("{ customerDataExport }", json!({})).await),
        "UNAUTHENTICATED"
    );
}

/// An export reads every table about a customer: one document holds one (aliases once ran 490
/// of them, 2,947 statements, from one request), each caller gets 10 an hour, and the
/// customer's own copy names store staff, never an admin's console username.
async fn an_export_costs_like_what_it_reads_and_never_names_staff(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("reader@example.com", PASSWORD).await;
    let id = app.customer_id("reader@example.com").await;
    let token = app.sign_in("reader@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    let username = app
        .gql_as(Some(&admin), "{ currentAdmin { username } }", json!({}))
        .await["data"]["currentAdmin"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    // Force Sign In ended that session: sign in again.
    assert_eq!(app.whoami(&token).await, Err("UNAUTHENTICATED".to_owned()));
    let token = app.sign_in("reader@example.com", PASSWORD).await;
    let twice = app
        .gql_as(
            Some(&token),
            "{ a: customerDataExport b: customerDataExport }",
            json!({}),
        )
        .await;
    assert!(twice["data"].is_null(), "refused before running: {twice}");
    assert!(
        twice["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("complex")),
        "{twice}"
    );
    for i in 0..10 {
        let res = app
            .gql_as(Some(&token), "{ customerDataExport }", json!({}))
            .await;
        let export = &res["data"]["customerDataExport"];
        assert_eq!(export["customer"]["id"], id.as_str(), "export {i}: {res}");
        if i == 0 {
            let text = export.to_string();
            assert!(!text.contains(&username), "names the admin: {text}");
            assert!(
                export["audit"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["actor"] == "store staff")),
                "{export}"
            );
        }
    }
    let res = app
        .gql_as(Some(&token), "{ customerDataExport }", json!({}))
        .await;
    assert_eq!(code(&res), "RATE_LIMITED", "{res}");
    // An hour later, the budget is back.
    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let token = app.sign_in("reader@example.com", PASSWORD).await;
    let res = app
        .gql_as(Some(&token), "{ customerDataExport }", json!({}))
        .await;
    assert!(res["errors"].is_null(), "{res}");
}

/// A confirmation goes to an address nobody has confirmed: it carries no name the account
/// holder (or a thief) typed, and one client gets 10 an hour over every account, so many
/// accounts cannot mail arbitrary addresses.
async fn email_changes_have_a_budget_per_client_and_the_confirmation_names_nobody(
    backend: Backend,
) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    for i in 0..11 {
        let email = format!("mover{i}@example.com");
        let res = app
            .gql(
                "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
                json!({"i": {"email": email, "firstname": "Visit evil.example", "lastname": "Now", "password": PASSWORD}}),
            )
            .await;
        assert!(res["errors"].is_null(), "{res}");
        let token = app.sign_in(&email, PASSWORD).await;
        let res = request_change(&app, &token, &format!("target{i}@example.com"), PASSWORD).await;
        if i < 10 {
            assert_eq!(
                res["data"]["requestCustomerEmailChange"], true,
                "{i}: {res}"
            );
        } else {
            assert_eq!(code(&res), "RATE_LIMITED", "{res}");
        }
    }
    let confirmation = smtp
        .wait_for_mail("target0@example.com", "/account/confirm-email")
        .await;
    for part in [confirmation.text(), confirmation.html()] {
        assert!(!part.contains("evil.example"), "{part}");
    }
    // The notice to the account's own address still greets its holder.
    let notice = smtp
        .wait_for_mail("mover0@example.com", "/account/cancel-email-change")
        .await;
    assert!(notice.text().contains("Visit evil.example"));
}

async fn release(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { releaseCustomerAccount(token: $t) }",
        json!({"t": token}),
    )
    .await
}

/// Recovery of a frozen account without staff: when both addresses agree. The old address said
/// "this wasn't me" (which froze the account there); the address it had moved to is told, with
/// a link that gives the account back to the old address. Used, the account unfreezes at the
/// old address (its password still void: its owner resets it), audited with the customer as
/// actor. The link works once, and never undoes an admin's decision: after an admin recovered
/// an account, its link is LINK_INVALID and the account stays where the admin put it.
async fn the_removed_address_can_give_a_frozen_account_back(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let admin = app.admin_token("administrator").await;
    let frozen_notice = |to: &'static str| {
        let smtp = &smtp;
        async move {
            let told = smtp.wait_for_mail(to, "/account/release-account").await;
            assert!(told.subject().contains("locked"), "{}", told.subject());
            told.token()
        }
    };
    let freeze = |from: &'static str, to: &'static str| {
        let (app, smtp) = (&app, &smtp);
        async move {
            app.create_customer(from, PASSWORD).await;
            let token = app.sign_in(from, PASSWORD).await;
            let total = smtp.messages().len() + 2;
            request_change(app, &token, to, PASSWORD).await;
            let (confirmation, notice) = change_mails(smtp, total, to, from).await;
            confirm(app, &confirmation.token()).await;
            let res = cancel(app, &notice.token()).await;
            assert_eq!(res["data"]["cancelCustomerEmailChange"], true, "{res}");
        }
    };
    let node = |email: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let found = app
                .gql_as(
                    Some(admin),
                    "query($s: String!) { customers(first: 1, filter: {search: $s}) { edges { node { id email frozenAt } } } }",
                    json!({"s": email}),
                )
                .await;
            found["data"]["customers"]["edges"][0]["node"].clone()
        }
    };

    // Someone moved their account to a mistyped address and the real owner of the old one
    // said "this wasn't me": the mistyped address agrees to give it back.
    freeze("mine@example.com", "typo@example.com").await;
    let token = frozen_notice("typo@example.com").await;
    assert!(node("mine@example.com").await["frozenAt"].is_string());
    let res = release(&app, &token).await;
    assert_eq!(res["data"]["releaseCustomerAccount"], true, "{res}");
    let account = node("mine@example.com").await;
    assert_eq!(account["frozenAt"], Value::Null, "{account}");
    assert_eq!(code(&release(&app, &token).await), "LINK_INVALID");
    assert_eq!(
        code(&app.sign_in_response("mine@example.com", PASSWORD).await),
        "AUTHENTICATION_FAILED",
        "the password stays void"
    );
    app.without_reset_limits().await;
    app.request_reset("mine@example.com").await;
    let reset = smtp
        .wait_for_mail("mine@example.com", "/account/reset-password")
        .await;
    let res = app.reset_password(&reset.token(), "Blue-harbor-77").await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    app.sign_in("mine@example.com", "Blue-harbor-77").await;
    let audit = app
        .gql_as(
            Some(&admin),
            "{ auditLog(first: 10) { edges { node { action actor customerId } } } }",
            json!({}),
        )
        .await;
    assert!(
        audit["data"]["auditLog"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"]["action"] == "RELEASE_FROZEN_ACCOUNT"
                && e["node"]["actor"] == "customer"
                && e["node"]["customerId"] == account["id"]),
        "{audit}"
    );

    // The store gave another frozen account to the address it had moved to: that address's
    // link cannot hand it back to the old mailbox afterwards.
    freeze("gone@example.com", "moved@example.com").await;
    let token = frozen_notice("moved@example.com").await;
    let account = node("gone@example.com").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!, $e: String) { adminRecoverCustomer(customerId: $id, email: $e) { email frozenAt } }",
            json!({"id": account["id"], "e": "moved@example.com"}),
        )
        .await;
    assert_eq!(
        res["data"]["adminRecoverCustomer"]["email"], "moved@example.com",
        "{res}"
    );
    assert_eq!(code(&release(&app, &token).await), "LINK_INVALID");
    let account = node("moved@example.com").await;
    assert_eq!(account["email"], "moved@example.com", "{account}");
    assert_eq!(account["frozenAt"], Value::Null, "{account}");

    // A link not issued is nothing; nor is an expired one.
    assert_eq!(code(&release(&app, &"A".repeat(43)).await), "LINK_INVALID");
}

/// An export's lists are paged (500 entries each, oldest first), so no reply grows without
/// bound: an account with 520 admin actions on it exports them over two pages, every entry
/// once, and says where the lists go on.
async fn an_export_pages_its_lists(backend: Backend) {
    use domain::clock::Clock;
    let app = TestApp::spawn(backend).await;
    app.create_customer("long@example.com", PASSWORD).await;
    let id = app.customer_id("long@example.com").await;
    let customer = uuid::Uuid::parse_str(&id).unwrap();
    let start = app.clock.now() - Duration::days(400);
    for i in 0..520 {
        // Ten at each instant: the order is total even where times tie.
        let at = start + Duration::hours(i / 10);
        app.execute(
            "INSERT INTO audit_log (id, at, actor_id, actor, action, customer_id, client_ip, detail) \
             VALUES ($1, $2, $3, 'someone', 'REVOKE_CUSTOMER_TOKENS', $4, NULL, $5)",
            vec![
                uuid::Uuid::new_v4().into(),
                at.into(),
                uuid::Uuid::new_v4().into(),
                customer.into(),
                format!("entry {i}").into(),
            ],
        )
        .await;
    }
    let token = app.sign_in("long@example.com", PASSWORD).await;
    let export = |page: Value| {
        let (app, token) = (&app, &token);
        async move {
            app.gql_as(
                Some(token),
                "query($p: Int) { customerDataExport(page: $p) }",
                json!({"p": page}),
            )
            .await
        }
    };
    let first = export(Value::Null).await;
    let first = &first["data"]["customerDataExport"];
    assert_eq!(
        first["page"],
        json!({"number": 1, "size": 500, "more": true}),
        "{first}"
    );
    let second = export(json!(2)).await;
    let second = &second["data"]["customerDataExport"];
    assert_eq!(second["page"]["more"], false, "{second}");
    assert_eq!(second["customer"]["id"], id.as_str());
    let entries: Vec<&Value> = first["audit"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["audit"].as_array().unwrap())
        .collect();
    assert_eq!(first["audit"].as_array().unwrap().len(), 500);
    assert_eq!(entries.len(), 520);
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    // The sessions list is paged alike: all of them on the first page, none on the second.
    let sessions = app.scalar("SELECT COUNT(*) AS n FROM access_tokens").await;
    assert!(sessions >= 1);
    assert_eq!(
        first["sessions"].as_array().map(Vec::len),
        usize::try_from(sessions).ok()
    );
    assert_eq!(second["sessions"].as_array().map(Vec::len), Some(0));
    let res = export(json!(0)).await;
    assert_eq!(code(&res), "BAD_USER_INPUT", "{res}");
}
