//! Accounts (`domain::accounts`): registration, sessions, password change.

use domain::{Error, accounts::CreateCustomerInput};

use crate::{Harness, PASSWORD};

#[tokio::test]
async fn an_address_is_taken_whatever_its_case_and_a_refusal_stores_nothing() {
    let h = Harness::new().await;
    h.customer("Taken@Example.com").await;
    let res = h
        .accounts()
        .create_customer(
            CreateCustomerInput {
                email: "taken@example.COM".to_owned(),
                firstname: "B".to_owned(),
                lastname: "C".to_owned(),
                password: PASSWORD.to_owned(),
                locale: None,
            },
            &Harness::client("192.0.2.2"),
            None,
        )
        .await;
    assert!(
        matches!(&res, Err(Error::BadUserInput { field: "email", .. })),
        "{res:?}"
    );
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM customers").await, 1);
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_keeps_this_one() {
    let h = Harness::new().await;
    h.customer("change@example.com").await;
    let accounts = h.accounts();
    let client = Harness::client("192.0.2.3");
    let laptop = accounts
        .sign_in("change@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let phone = accounts
        .sign_in("change@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let me = h.customer_principal(&laptop.token).await.unwrap();
    accounts
        .change_password(&me, PASSWORD, "new-Secret-2027", &client)
        .await
        .unwrap();
    assert!(h.customer_principal(&laptop.token).await.is_some());
    assert!(h.customer_principal(&phone.token).await.is_none());
    // The old password is gone; the new one signs in.
    assert!(matches!(
        accounts
            .sign_in("change@example.com", PASSWORD, client.clone(), None)
            .await,
        Err(Error::AuthenticationFailed)
    ));
    accounts
        .sign_in("change@example.com", "new-Secret-2027", client, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_signed_out_token_is_refused_on_the_next_call() {
    let h = Harness::new().await;
    h.customer("out@example.com").await;
    let accounts = h.accounts();
    let token = accounts
        .sign_in(
            "out@example.com",
            PASSWORD,
            Harness::client("192.0.2.4"),
            None,
        )
        .await
        .unwrap();
    let me = h.customer_principal(&token.token).await.unwrap();
    accounts.sign_out(&me).await.unwrap();
    assert!(h.customer_principal(&token.token).await.is_none());
}
