//! One-time codes (`domain::reset`'s code flows): a reset code works only with the flow id of
//! the client that asked, for five guesses, and dies with a newer mailed request and on use; sign-in
//! by code is off unless the store turns it on, and then mints a session like a password.

use chrono::Duration;
use domain::{Error, admin::SettingsUpdate, clock::Clock, reset::MAX_CODE_ATTEMPTS};

use crate::{Harness, PASSWORD};

/// The raw code in the newest queued mail of `kind` to `to` (kept in the outbox row until
/// it is sent).
async fn mailed_code(h: &Harness, kind: &str, to: &str) -> String {
    h.stores
        .resets
        .resolve_reset_requests(h.clock.now(), 100)
        .await
        .unwrap();
    h.newest_mail::<Option<String>>(kind, to, "code")
        .await
        .expect("the mail carries a code")
}

/// A guess from a client of its own, so the per-client budget of invalid links never answers
/// before the flow's own count does.
fn guesser(n: usize) -> domain::customer::ClientInfo {
    Harness::client(&format!("198.51.100.{n}"))
}

/// A code that is not `code` (same length, one digit changed).
fn wrong(code: &str) -> String {
    let mut digits: Vec<char> = code.chars().collect();
    digits[0] = if digits[0] == '1' { '2' } else { '1' };
    digits.into_iter().collect()
}

#[tokio::test]
async fn a_reset_code_works_only_with_its_own_flow_and_five_wrong_guesses_end_it() {
    let h = Harness::new().await;
    h.customer("code@example.com").await;
    let resets = h.resets();
    let started = resets
        .request_code("code@example.com", &Harness::client("192.0.2.20"), None)
        .await
        .unwrap();
    let code = mailed_code(&h, "password_reset", "code@example.com").await;

    // The right code with someone else's flow id: refused, and the password is unchanged.
    let other = domain::reset::FlowId::generate().unwrap();
    let res = resets
        .reset_with_code(other.expose(), &code, "brand-new-Pass-77", &guesser(1))
        .await;
    assert!(matches!(res, Err(Error::ResetCodeInvalid)), "{res:?}");

    for n in 0..MAX_CODE_ATTEMPTS as usize {
        let res = resets
            .reset_with_code(
                started.flow.expose(),
                &wrong(&code),
                "brand-new-Pass-77",
                &guesser(10 + n),
            )
            .await;
        assert!(matches!(res, Err(Error::ResetCodeInvalid)), "{res:?}");
    }
    // The flow has had its guesses: the right code no longer works either.
    let res = resets
        .reset_with_code(
            started.flow.expose(),
            &code,
            "brand-new-Pass-77",
            &guesser(99),
        )
        .await;
    assert!(matches!(res, Err(Error::ResetCodeInvalid)), "{res:?}");
    h.accounts()
        .sign_in("code@example.com", PASSWORD, guesser(100), None)
        .await
        .expect("the old password still signs in");
}

#[tokio::test]
async fn a_newer_request_kills_the_older_code_and_a_used_code_is_spent() {
    let h = Harness::new().await;
    h.customer("twice@example.com").await;
    let accounts = h.accounts();
    let session = accounts
        .sign_in("twice@example.com", PASSWORD, guesser(1), None)
        .await
        .unwrap();
    let resets = h.resets();
    let client = Harness::client("192.0.2.21");
    let first = resets
        .request_code("twice@example.com", &client, None)
        .await
        .unwrap();
    let first_code = mailed_code(&h, "password_reset", "twice@example.com").await;
    // Requests for one address are spaced 10 minutes apart by default.
    h.clock.advance(Duration::minutes(11));
    let second = resets
        .request_code("twice@example.com", &client, None)
        .await
        .unwrap();
    let second_code = mailed_code(&h, "password_reset", "twice@example.com").await;

    let res = resets
        .reset_with_code(
            first.flow.expose(),
            &first_code,
            "brand-new-Pass-77",
            &guesser(2),
        )
        .await;
    assert!(matches!(res, Err(Error::ResetCodeInvalid)), "{res:?}");

    resets
        .reset_with_code(
            second.flow.expose(),
            &second_code,
            "brand-new-Pass-77",
            &guesser(3),
        )
        .await
        .unwrap();
    assert!(
        h.customer_principal(&session.token).await.is_none(),
        "a reset by code signs every device out"
    );
    let again = resets
        .reset_with_code(
            second.flow.expose(),
            &second_code,
            "another-Pass-88",
            &guesser(4),
        )
        .await;
    assert!(matches!(again, Err(Error::ResetCodeInvalid)), "{again:?}");
    accounts
        .sign_in("twice@example.com", "brand-new-Pass-77", guesser(5), None)
        .await
        .expect("the password set by the code");
}

#[tokio::test]
async fn a_code_outlives_neither_its_lifetime_nor_a_store_that_resets_by_link_only() {
    let h = Harness::new().await;
    h.customer("late@example.com").await;
    let resets = h.resets();
    let started = resets
        .request_code("late@example.com", &Harness::client("192.0.2.22"), None)
        .await
        .unwrap();
    let code = mailed_code(&h, "password_reset", "late@example.com").await;
    // 15 minutes by default.
    h.clock.advance(Duration::minutes(16));
    let res = resets
        .reset_with_code(
            started.flow.expose(),
            &code,
            "brand-new-Pass-77",
            &guesser(1),
        )
        .await;
    assert!(matches!(res, Err(Error::ResetCodeExpired)), "{res:?}");
    h.accounts()
        .sign_in("late@example.com", PASSWORD, guesser(3), None)
        .await
        .expect("the old password still signs in");
    // A fresh code, then the store stops resetting by code: the code stops with it.
    let fresh = resets
        .request_code("late@example.com", &Harness::client("192.0.2.25"), None)
        .await
        .unwrap();
    let fresh_code = mailed_code(&h, "password_reset", "late@example.com").await;

    let token = h.admin_token("root", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let links_only = SettingsUpdate {
        reset_by_code: Some(false),
        ..SettingsUpdate::default()
    };
    h.admins()
        .update_settings(&me, &links_only, &guesser(2))
        .await
        .unwrap();
    let res = resets
        .request_code("late@example.com", &Harness::client("192.0.2.23"), None)
        .await;
    assert!(matches!(res, Err(Error::BadUserInput { .. })), "{res:?}");
    let res = resets
        .reset_with_code(
            fresh.flow.expose(),
            &fresh_code,
            "brand-new-Pass-77",
            &guesser(4),
        )
        .await;
    assert!(matches!(res, Err(Error::ResetCodeInvalid)), "{res:?}");
}

#[tokio::test]
async fn sign_in_by_code_is_off_by_default_and_on_mints_a_session_once() {
    let h = Harness::new().await;
    let customer = h.customer("nopass@example.com").await;
    let resets = h.resets();
    let client = Harness::client("192.0.2.24");
    let res = resets
        .request_sign_in_code("nopass@example.com", &client, None)
        .await;
    assert!(matches!(res, Err(Error::BadUserInput { .. })), "{res:?}");

    let token = h.admin_token("root", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let on = SettingsUpdate {
        sign_in_by_code: Some(true),
        ..SettingsUpdate::default()
    };
    h.admins()
        .update_settings(&me, &on, &guesser(1))
        .await
        .unwrap();
    let started = resets
        .request_sign_in_code("nopass@example.com", &client, None)
        .await
        .unwrap();
    let code = mailed_code(&h, "sign_in_code", "nopass@example.com").await;
    let issued = resets
        .sign_in_with_code(started.flow.expose(), &code, &client)
        .await
        .unwrap();
    let principal = h.customer_principal(&issued.token).await.unwrap();
    assert_eq!(principal.customer.id, customer.id);
    let again = resets
        .sign_in_with_code(started.flow.expose(), &code, &client)
        .await;
    assert!(matches!(again, Err(Error::SignInCodeInvalid)), "{again:?}");
}
