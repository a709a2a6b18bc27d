//! Email change (`domain::email_change`): nothing moves until the new address confirms; the
//! old address's "this wasn't me" undoes it and, once confirmed, freezes the account; the
//! removed address can give it back.

use domain::Error;

use crate::{Harness, PASSWORD};

#[tokio::test]
async fn the_change_applies_only_when_the_new_address_confirms() {
    let h = Harness::new().await;
    h.customer("old@example.com").await;
    let accounts = h.accounts();
    let client = Harness::client("192.0.2.20");
    let token = accounts
        .sign_in("old@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let me = h.customer_principal(&token.token).await.unwrap();
    let changes = h.email_changes();
    let wrong = changes
        .request(&me, "new@example.com", "not-the-password", &client)
        .await;
    assert!(matches!(wrong, Err(Error::AuthenticationFailed)));
    changes
        .request(&me, "new@example.com", PASSWORD, &client)
        .await
        .unwrap();
    assert_eq!(
        h.customer_principal(&token.token)
            .await
            .unwrap()
            .customer
            .email
            .as_str(),
        "old@example.com"
    );
    let confirm = h
        .link_token("email_change_confirm", "new@example.com")
        .await;
    let moved = changes.confirm(&confirm, &client).await.unwrap();
    assert_eq!(moved.email.as_str(), "new@example.com");
    assert!(matches!(
        changes.confirm(&confirm, &client).await,
        Err(Error::LinkInvalid)
    ));
}

#[tokio::test]
async fn a_revert_after_confirmation_freezes_and_the_removed_address_can_give_it_back() {
    let h = Harness::new().await;
    h.customer("owner@example.com").await;
    let accounts = h.accounts();
    let client = Harness::client("192.0.2.21");
    let token = accounts
        .sign_in("owner@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let me = h.customer_principal(&token.token).await.unwrap();
    let changes = h.email_changes();
    changes
        .request(&me, "typo@example.com", PASSWORD, &client)
        .await
        .unwrap();
    let confirm = h
        .link_token("email_change_confirm", "typo@example.com")
        .await;
    let cancel = h
        .link_token("email_change_notice", "owner@example.com")
        .await;
    changes.confirm(&confirm, &client).await.unwrap();
    changes.cancel(&cancel, &client).await.unwrap();
    // Back at the old address, frozen, signed out, the password void.
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM customers WHERE email = 'owner@example.com' AND frozen_at IS NOT NULL")
            .await,
        1
    );
    assert!(h.customer_principal(&token.token).await.is_none());
    assert!(matches!(
        accounts
            .sign_in("owner@example.com", PASSWORD, client.clone(), None)
            .await,
        Err(Error::AuthenticationFailed)
    ));
    // The removed address agrees: unfrozen, once; audited with the customer as actor.
    let release = h.link_token("account_frozen", "typo@example.com").await;
    changes.release(&release, &client).await.unwrap();
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM customers WHERE frozen_at IS NOT NULL")
            .await,
        0
    );
    assert!(matches!(
        changes.release(&release, &client).await,
        Err(Error::LinkInvalid)
    ));
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'RELEASE_FROZEN_ACCOUNT' AND actor = 'customer'")
            .await,
        1
    );
}
