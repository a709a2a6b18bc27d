//! Password reset (`domain::reset`): the same answer for every address, a link that works
//! once and for its lifetime, and what a reset ends.

use chrono::Duration;
use domain::{Error, clock::Clock};

use crate::{Harness, PASSWORD};

/// What the mail worker does first: turns recorded requests into links and mail.
async fn resolve(h: &Harness) {
    h.stores
        .resets
        .resolve_reset_requests(h.clock.now(), 100)
        .await
        .unwrap();
}

#[tokio::test]
async fn known_and_unknown_addresses_get_the_same_answer_and_only_accounts_get_mail() {
    let h = Harness::new().await;
    h.customer("known@example.com").await;
    let resets = h.resets();
    // From two clients: one client's requests are spaced 10 minutes apart by default.
    for (email, ip) in [
        ("known@example.com", "192.0.2.10"),
        ("unknown@example.com", "192.0.2.13"),
    ] {
        resets
            .request(email, None, &Harness::client(ip), None)
            .await
            .unwrap();
    }
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM reset_requests").await, 2);
    resolve(&h).await;
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM reset_requests").await, 0);
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM email_outbox WHERE kind = 'password_reset'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_link_works_once_and_the_reset_ends_every_session() {
    let h = Harness::new().await;
    h.customer("reset@example.com").await;
    let accounts = h.accounts();
    let client = Harness::client("192.0.2.11");
    let session = accounts
        .sign_in("reset@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let resets = h.resets();
    resets
        .request("reset@example.com", None, &client, None)
        .await
        .unwrap();
    resolve(&h).await;
    let token = h.link_token("password_reset", "reset@example.com").await;
    resets
        .reset(None, &token, "fresh-Secret-2027", &client)
        .await
        .unwrap();
    assert!(h.customer_principal(&session.token).await.is_none());
    let again = resets
        .reset(None, &token, "other-Secret-2027", &client)
        .await;
    assert!(matches!(again, Err(Error::ResetTokenInvalid)), "{again:?}");
    accounts
        .sign_in("reset@example.com", "fresh-Secret-2027", client, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_link_expires_after_its_lifetime_and_changes_nothing() {
    let h = Harness::new().await;
    h.customer("late@example.com").await;
    let client = Harness::client("192.0.2.12");
    let resets = h.resets();
    resets
        .request("late@example.com", None, &client, None)
        .await
        .unwrap();
    resolve(&h).await;
    let token = h.link_token("password_reset", "late@example.com").await;
    h.clock.advance(Duration::hours(24) + Duration::seconds(1));
    let res = resets
        .reset(None, &token, "fresh-Secret-2027", &client)
        .await;
    assert!(matches!(res, Err(Error::ResetTokenExpired)), "{res:?}");
    h.accounts()
        .sign_in("late@example.com", PASSWORD, client, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_older_request_resolved_after_a_newer_link_went_out_leaves_that_link_live() {
    let h = Harness::new().await;
    let customer = h.customer("behind@example.com").await;
    // The customer asks for a code (a link alone within a minute of a newer link would be
    // left unmailed anyway); the worker is behind and has not resolved it yet.
    h.resets()
        .request_code("behind@example.com", &Harness::client("192.0.2.60"), None)
        .await
        .unwrap();
    // Meanwhile a newer link goes out: an admin's bulk reset (or, on PostgreSQL, another
    // worker resolving a newer request of the same address first).
    h.clock.advance(Duration::minutes(1));
    let token = h.admin_token("bulk-admin", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let bulk = h.bulk();
    bulk.start(
        &me,
        domain::bulk::BulkAction::SendResetEmail,
        domain::bulk::Selection::Ids(vec![customer.id]),
        &Harness::client("192.0.2.61"),
    )
    .await
    .unwrap();
    while bulk.work(100).await.unwrap().is_some() {}
    let newer = h.link_token("password_reset", "behind@example.com").await;

    // Now the worker resolves the older request: it must not supersede the newer link.
    resolve(&h).await;
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM reset_requests").await, 0);
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM email_outbox WHERE kind = 'password_reset'")
            .await,
        1,
        "one mail: the newer link's"
    );
    h.resets()
        .reset(
            None,
            &newer,
            "brand-new-Pass-77",
            &Harness::client("192.0.2.62"),
        )
        .await
        .expect("the newer link still works");
}

#[tokio::test]
async fn a_second_link_request_within_a_minute_mails_nothing_and_the_first_link_stands() {
    let h = Harness::new().await;
    h.customer("again@example.com").await;
    let token = h.admin_token("root", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    // The request limits off, as under a flood the limits do not stop.
    h.admins()
        .update_settings(
            &me,
            &domain::admin::SettingsUpdate {
                reset_request_limit_method: Some(domain::settings::LimitMethod::Off),
                ..Default::default()
            },
            &Harness::client("192.0.2.70"),
        )
        .await
        .unwrap();
    let resets = h.resets();
    let client = Harness::client("192.0.2.71");
    let mails = "SELECT COUNT(*) AS n FROM email_outbox WHERE kind = 'password_reset'";
    resets
        .request("again@example.com", None, &client, None)
        .await
        .unwrap();
    resolve(&h).await;
    let first = h.link_token("password_reset", "again@example.com").await;
    for _ in 0..5 {
        h.clock.advance(Duration::seconds(10));
        resets
            .request("again@example.com", None, &client, None)
            .await
            .unwrap();
        resolve(&h).await;
    }
    assert_eq!(h.count(mails).await, 1, "50 s of requests, one mail");
    assert_eq!(
        h.link_token("password_reset", "again@example.com").await,
        first,
        "the mail on its way is the first one, and its link still works"
    );

    // A minute after the link went out, a request mails a new link that replaces it.
    h.clock.advance(Duration::seconds(11));
    resets
        .request("again@example.com", None, &client, None)
        .await
        .unwrap();
    resolve(&h).await;
    // (No worker sends here: the first mail, still unsent, is replaced by the new one.)
    assert_eq!(h.count(mails).await, 1);
    let second = h.link_token("password_reset", "again@example.com").await;
    assert_ne!(first, second);
    let res = resets
        .reset(
            None,
            &first,
            "brand-new-Pass-77",
            &Harness::client("192.0.2.72"),
        )
        .await;
    assert!(matches!(res, Err(Error::ResetTokenInvalid)), "{res:?}");
    resets
        .reset(
            None,
            &second,
            "brand-new-Pass-77",
            &Harness::client("192.0.2.73"),
        )
        .await
        .unwrap();
}
