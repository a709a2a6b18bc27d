//! Admins' second factors (`domain::factors`): enrolment needs a right code, a step is
//! accepted once, recovery codes are single use, and nobody touches another admin's factors.

use chrono::Duration;
use domain::{
    Error,
    factors::{FactorUsed, RECOVERY_CODES},
};

use crate::Harness;

#[tokio::test]
async fn enrolment_needs_a_right_code_and_the_first_factor_brings_recovery_codes() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();

    let res = factors.start_totp(&me, "   ").await;
    assert!(
        matches!(res, Err(Error::BadUserInput { field: "name", .. })),
        "{res:?}"
    );
    let phone = factors.start_totp(&me, "Work phone").await.unwrap();
    assert!(
        phone
            .uri
            .starts_with("otpauth://totp/Test%20Store:ann?secret="),
        "{}",
        phone.uri
    );
    let listed = factors.factors(&me).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].confirmed);
    // An unconfirmed factor signs nobody in, even with the right code.
    let code = phone.secret.code_at(h.now());
    assert_eq!(factors.verify(me.admin.id, &code).await.unwrap(), None);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res = factors.confirm_totp(&me, phone.factor_id, wrong).await;
    assert!(
        matches!(res, Err(Error::BadUserInput { field: "code", .. })),
        "{res:?}"
    );
    let codes = factors
        .confirm_totp(&me, phone.factor_id, &code)
        .await
        .unwrap()
        .expect("the first factor comes with recovery codes");
    assert_eq!(codes.len(), RECOVERY_CODES);
    assert!(factors.factors(&me).await.unwrap()[0].confirmed);

    // A second app: confirmed on its own code; the codes already issued stay.
    h.clock.advance(Duration::seconds(30));
    let tablet = factors.start_totp(&me, "Tablet").await.unwrap();
    let again = factors
        .confirm_totp(&me, tablet.factor_id, &tablet.secret.code_at(h.now()))
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM admin_recovery_codes WHERE used_at IS NULL")
            .await,
        RECOVERY_CODES as i64
    );
    // Nothing secret at rest: the secret is sealed, the codes are hashes.
    assert_eq!(
        h.count(&format!(
            "SELECT COUNT(*) AS n FROM admin_recovery_codes WHERE code_hash = '{}'",
            codes[0].display()
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn a_code_is_accepted_once_and_one_step_either_side() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let phone = factors.start_totp(&me, "Phone").await.unwrap();
    let code = phone.secret.code_at(h.now());
    factors
        .confirm_totp(&me, phone.factor_id, &code)
        .await
        .unwrap();
    // The code that confirmed the factor is spent.
    assert_eq!(factors.verify(me.admin.id, &code).await.unwrap(), None);

    h.clock.advance(Duration::seconds(30));
    let now_code = phone.secret.code_at(h.now());
    assert_eq!(
        factors.verify(me.admin.id, &now_code).await.unwrap(),
        Some(FactorUsed::Totp {
            factor_id: phone.factor_id
        })
    );
    assert_eq!(
        factors.verify(me.admin.id, &now_code).await.unwrap(),
        None,
        "replayed"
    );
    // The next step's code, 30 s early (a phone clock ahead), still works...
    let next = phone.secret.code_at(h.now() + Duration::seconds(30));
    assert!(factors.verify(me.admin.id, &next).await.unwrap().is_some());
    // ...and then no code of an older step does.
    h.clock.advance(Duration::seconds(30));
    assert_eq!(factors.verify(me.admin.id, &next).await.unwrap(), None);
    let other = h.admin_token("bob", "support").await;
    let bob = h.admin_principal(&other).await.unwrap();
    let bob_code = phone.secret.code_at(h.now() + Duration::seconds(60));
    assert_eq!(
        factors.verify(bob.admin.id, &bob_code).await.unwrap(),
        None,
        "Ann's factor is not Bob's"
    );
    let res = factors.remove(&bob, phone.factor_id).await;
    assert!(matches!(res, Err(Error::NotFound)), "{res:?}");
    factors.remove(&me, phone.factor_id).await.unwrap();
    assert!(factors.factors(&me).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_recovery_code_works_once_and_a_new_set_voids_the_old() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let res = factors.new_recovery_codes(&me).await;
    assert!(
        matches!(res, Err(Error::BadUserInput { .. })),
        "no factor yet: {res:?}"
    );
    let phone = factors.start_totp(&me, "Phone").await.unwrap();
    let first = factors
        .confirm_totp(&me, phone.factor_id, &phone.secret.code_at(h.now()))
        .await
        .unwrap()
        .unwrap();
    // Typed in capitals, without the hyphen.
    let typed = first[0].display().to_uppercase().replace('-', "");
    assert_eq!(
        factors.verify(me.admin.id, &typed).await.unwrap(),
        Some(FactorUsed::RecoveryCode)
    );
    assert_eq!(
        factors.verify(me.admin.id, &typed).await.unwrap(),
        None,
        "spent"
    );

    let second = factors.new_recovery_codes(&me).await.unwrap();
    assert_eq!(
        factors
            .verify(me.admin.id, &first[1].display())
            .await
            .unwrap(),
        None,
        "the old set is void"
    );
    assert_eq!(
        factors
            .verify(me.admin.id, &second[0].display())
            .await
            .unwrap(),
        Some(FactorUsed::RecoveryCode)
    );
}
