//! The admin side (`domain::admins`, `domain::admin_users`): settings within their ranges,
//! Force Sign In, and the last administrator who cannot be removed.

use domain::{Error, admin::SettingsUpdate};

use crate::Harness;

#[tokio::test]
async fn a_setting_out_of_range_changes_nothing_and_one_in_range_is_audited() {
    let h = Harness::new().await;
    let token = h.admin_token("root", "administrator").await;
    let admins = h.admins();
    let me = h.admin_principal(&token).await.unwrap();
    let client = Harness::client("192.0.2.40");
    let off = SettingsUpdate {
        lockout_failures: Some(0),
        ..SettingsUpdate::default()
    };
    let res = admins.update_settings(&me, &off, &client).await;
    assert!(
        matches!(
            &res,
            Err(Error::BadUserInput {
                field: "lockoutFailures",
                ..
            })
        ),
        "{res:?}"
    );
    assert_eq!(admins.settings().await.unwrap().lockout.failures, 10);
    let five = SettingsUpdate {
        lockout_failures: Some(5),
        ..SettingsUpdate::default()
    };
    admins.update_settings(&me, &five, &client).await.unwrap();
    assert_eq!(admins.settings().await.unwrap().lockout.failures, 5);
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'UPDATE_PASSWORD_SETTINGS'")
            .await,
        1
    );
}

#[tokio::test]
async fn force_sign_in_ends_every_session_of_one_customer_only() {
    let h = Harness::new().await;
    let target = h.customer("target@example.com").await;
    h.customer("bystander@example.com").await;
    let a = h.customer_token("target@example.com").await;
    let b = h.customer_token("target@example.com").await;
    let other = h.customer_token("bystander@example.com").await;
    let token = h.admin_token("helper", "support").await;
    let admins = h.admins();
    let me = h.admin_principal(&token).await.unwrap();
    let revoked = admins
        .revoke_customer_tokens(&me, target.id, &Harness::client("192.0.2.41"))
        .await
        .unwrap();
    assert_eq!(revoked, 2);
    for t in [&a, &b] {
        assert!(h.customer_principal(t).await.is_none());
    }
    assert!(h.customer_principal(&other).await.is_some());
    // The customer signs in again at once: Force Sign In is not a lock.
    h.customer_token("target@example.com").await;
}

#[tokio::test]
async fn the_last_active_administrator_cannot_be_demoted_or_disabled() {
    let h = Harness::new().await;
    let token = h.admin_token("only", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let users = h.admin_users();
    let client = Harness::client("192.0.2.42");
    for (role, disabled) in [(Some("viewer"), None), (None, Some(true))] {
        let res = users
            .update(&me, me.admin.id, role, disabled, &client)
            .await;
        assert!(
            matches!(&res, Err(Error::BadUserInput { .. })),
            "{role:?} {disabled:?}: {res:?}"
        );
    }
    // With a second active administrator, the first may step down.
    h.admin_token("second", "administrator").await;
    let demoted = users
        .update(&me, me.admin.id, Some("viewer"), None, &client)
        .await
        .unwrap();
    assert_eq!(demoted.role.as_str(), "viewer");
}
