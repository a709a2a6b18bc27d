//! "This wasn't me" (`domain::report`): the link in a security mail secures the account in one
//! step, and a link from before the password the customer has set since does nothing.

use chrono::Duration;
use domain::{Error, clock::Clock};
use uuid::Uuid;

use crate::{Harness, PASSWORD};

/// The id of the newest queued mail of `kind` to `to`: its "this wasn't me" link names it.
async fn mail_id(h: &Harness, kind: &str, to: &str) -> Uuid {
    h.newest_mail(kind, to, "id").await
}

#[tokio::test]
async fn the_report_link_signs_out_voids_the_password_and_is_audited() {
    let h = Harness::new().await;
    h.customer("victim@example.com").await;
    let accounts = h.accounts();
    let session = accounts
        .sign_in(
            "victim@example.com",
            PASSWORD,
            Harness::client("192.0.2.30"),
            None,
        )
        .await
        .unwrap();
    h.resets()
        .request(
            "victim@example.com",
            None,
            &Harness::client("192.0.2.31"),
            None,
        )
        .await
        .unwrap();
    h.stores
        .resets
        .resolve_reset_requests(h.clock.now(), 100)
        .await
        .unwrap();
    let link = h.link_token("password_reset", "victim@example.com").await;
    let mail = mail_id(&h, "password_reset", "victim@example.com").await;
    let reports = h.reports();

    let forged = h.report_links().token(Uuid::now_v7());
    let res = reports
        .report(&forged, &Harness::client("192.0.2.32"))
        .await;
    assert!(matches!(res, Err(Error::LinkInvalid)), "{res:?}");
    assert!(h.customer_principal(&session.token).await.is_some());

    h.clock.advance(Duration::minutes(1));
    reports
        .report(
            &h.report_links().token(mail),
            &Harness::client("192.0.2.33"),
        )
        .await
        .unwrap();
    assert!(h.customer_principal(&session.token).await.is_none());
    let res = accounts
        .sign_in(
            "victim@example.com",
            PASSWORD,
            Harness::client("192.0.2.34"),
            None,
        )
        .await;
    assert!(res.is_err(), "the password is void: {res:?}");
    let res = h
        .resets()
        .reset(
            None,
            &link,
            "brand-new-Pass-77",
            &Harness::client("192.0.2.35"),
        )
        .await;
    assert!(res.is_err(), "the reset link in that mail is dead: {res:?}");
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'REPORTED_NOT_ME'")
            .await,
        1
    );
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM email_outbox WHERE kind = 'account_reported'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_report_from_before_the_password_set_since_changes_nothing() {
    let h = Harness::new().await;
    let customer = h.customer("later@example.com").await;
    let accounts = h.accounts();
    let token = h.customer_token("later@example.com").await;
    let me = h.customer_principal(&token).await.unwrap();
    accounts
        .change_password(
            &me,
            PASSWORD,
            "brand-new-Pass-77",
            &Harness::client("192.0.2.38"),
        )
        .await
        .unwrap();
    let notice = mail_id(&h, "password_changed", "later@example.com").await;
    h.clock.advance(Duration::minutes(5));
    accounts
        .change_password(
            &me,
            "brand-new-Pass-77",
            "third-Pass-99x",
            &Harness::client("192.0.2.38"),
        )
        .await
        .unwrap();
    h.reports()
        .report(
            &h.report_links().token(notice),
            &Harness::client("192.0.2.36"),
        )
        .await
        .unwrap();
    assert!(h.customer_principal(&token).await.is_some(), "{customer:?}");
    accounts
        .sign_in(
            "later@example.com",
            "third-Pass-99x",
            Harness::client("192.0.2.37"),
            None,
        )
        .await
        .expect("the password set after the mail stands");
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'REPORTED_NOT_ME'")
            .await,
        0
    );
}
