//! Deletion and export (`domain::erasure`).

use domain::{Error, erasure::ExportPage};

use crate::{Harness, PASSWORD};

#[tokio::test]
async fn deletion_takes_the_password_and_leaves_no_customer_row() {
    let h = Harness::new().await;
    h.customer("leaving@example.com").await;
    h.customer("staying@example.com").await;
    let accounts = h.accounts();
    let client = Harness::client("192.0.2.30");
    let token = accounts
        .sign_in("leaving@example.com", PASSWORD, client.clone(), None)
        .await
        .unwrap();
    let me = h.customer_principal(&token.token).await.unwrap();
    let erasure = h.erasure();
    let wrong = erasure
        .delete_own_account(&me, "wrong-password", &client)
        .await;
    assert!(matches!(wrong, Err(Error::AuthenticationFailed)));
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM customers").await, 2);
    erasure
        .delete_own_account(&me, PASSWORD, &client)
        .await
        .unwrap();
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM customers").await, 1);
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM access_tokens").await, 0);
    assert!(h.customer_principal(&token.token).await.is_none());
}

#[tokio::test]
async fn an_export_is_paged_and_a_page_below_one_is_refused() {
    let h = Harness::new().await;
    h.customer("export@example.com").await;
    let accounts = h.accounts();
    let token = accounts
        .sign_in(
            "export@example.com",
            PASSWORD,
            Harness::client("192.0.2.31"),
            None,
        )
        .await
        .unwrap();
    let me = h.customer_principal(&token.token).await.unwrap();
    let erasure = h.erasure();
    let export = erasure
        .export_own(&me, ExportPage::asked(None).unwrap())
        .await
        .unwrap();
    assert_eq!(export.page.number, 1);
    assert!(!export.page.more);
    assert_eq!(export.sessions.len(), 1);
    assert!(matches!(
        ExportPage::asked(Some(0)),
        Err(Error::BadUserInput { field: "page", .. })
    ));
}
