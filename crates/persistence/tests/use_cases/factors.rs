//! Admins' second factors (`domain::factors`): enrolment needs a right code, a step is
//! accepted once, recovery codes are single use, and nobody touches another admin's factors.

use chrono::Duration;
use domain::{
    Error,
    customer::ClientInfo,
    factors::{FactorUsed, MAX_WRONG_FACTOR_CODES, RECOVERY_CODES, SignInStep},
};

use sea_orm::{ConnectionTrait, Statement};
use sha2::{Digest, Sha256};

use crate::Harness;
use testkit::ADMIN_PASSWORD;

#[tokio::test]
async fn enrolment_needs_a_right_code_and_the_first_factor_brings_recovery_codes() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();

    let res = factors
        .start_totp(&me, "   ", ADMIN_PASSWORD, &ClientInfo::default())
        .await;
    assert!(
        matches!(res, Err(Error::BadUserInput { field: "name", .. })),
        "{res:?}"
    );
    let phone = factors
        .start_totp(&me, "Work phone", ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    assert!(
        phone
            .uri
            .starts_with("otpauth://totp/Test%20Store:ann?secret="),
        "{}",
        phone.uri
    );
    let listed = factors.factors_of(&me, me.admin.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].confirmed);
    // An unconfirmed factor signs nobody in, even with the right code.
    let code = phone.secret.code_at(h.now());
    assert_eq!(factors.verify(me.admin.id, &code).await.unwrap(), None);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res = factors
        .confirm_totp(&me, phone.factor_id, wrong, &ClientInfo::default())
        .await;
    assert!(
        matches!(res, Err(Error::BadUserInput { field: "code", .. })),
        "{res:?}"
    );
    let codes = factors
        .confirm_totp(&me, phone.factor_id, &code, &ClientInfo::default())
        .await
        .unwrap()
        .expect("the first factor comes with recovery codes");
    assert_eq!(codes.len(), RECOVERY_CODES);
    assert!(factors.factors_of(&me, me.admin.id).await.unwrap()[0].confirmed);

    // A second app: confirmed on its own code; the codes already issued stay.
    h.clock.advance(Duration::seconds(30));
    let tablet = factors
        .start_totp(&me, "Tablet", ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let again = factors
        .confirm_totp(
            &me,
            tablet.factor_id,
            &tablet.secret.code_at(h.now()),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM admin_recovery_codes WHERE used_at IS NULL")
            .await,
        RECOVERY_CODES as i64
    );
    // Nothing secret at rest: the codes are keyed hashes, the secret is sealed.
    let stored: Vec<String> =
        h.db.query_all_raw(Statement::from_string(
            h.db.get_database_backend(),
            "SELECT code_hash FROM admin_recovery_codes".to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "code_hash").unwrap())
        .collect();
    assert_eq!(stored.len(), RECOVERY_CODES);
    for code in &codes {
        let plain = code.display().replace('-', "");
        let unkeyed = hex::encode(Sha256::digest(plain.as_bytes()));
        assert!(
            stored
                .iter()
                .all(|s| !s.contains(&plain) && *s != unkeyed && *s != code.display()),
            "a recovery code is readable at rest"
        );
    }
    let sealed: Vec<Vec<u8>> =
        h.db.query_all_raw(Statement::from_string(
            h.db.get_database_backend(),
            "SELECT sealed_secret FROM admin_factors".to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "sealed_secret").unwrap())
        .collect();
    assert_eq!(sealed.len(), 2);
    for secret in [&phone.secret, &tablet.secret] {
        let raw = secret.expose();
        assert!(
            sealed
                .iter()
                .all(|s| !s.windows(raw.len()).any(|w| w == raw)),
            "a TOTP secret is readable at rest"
        );
    }
}

#[tokio::test]
async fn a_code_is_accepted_once_and_one_step_either_side() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let phone = factors
        .start_totp(&me, "Phone", ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let code = phone.secret.code_at(h.now());
    factors
        .confirm_totp(&me, phone.factor_id, &code, &ClientInfo::default())
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
    // ...and then neither it again nor the step before it, though still within the skew.
    h.clock.advance(Duration::seconds(30));
    assert_eq!(factors.verify(me.admin.id, &next).await.unwrap(), None);
    assert_eq!(factors.verify(me.admin.id, &now_code).await.unwrap(), None);
    let other = h.admin_token("bob", "support").await;
    let bob = h.admin_principal(&other).await.unwrap();
    let fresh = phone.secret.code_at(h.now() + Duration::seconds(30));
    assert_eq!(
        factors.verify(bob.admin.id, &fresh).await.unwrap(),
        None,
        "Ann's factor is not Bob's"
    );
    assert!(
        factors.verify(me.admin.id, &fresh).await.unwrap().is_some(),
        "the same code is Ann's"
    );
    let res = factors
        .remove(
            &bob,
            phone.factor_id,
            ADMIN_PASSWORD,
            &ClientInfo::default(),
        )
        .await;
    assert!(matches!(res, Err(Error::NotFound)), "{res:?}");
    factors
        .remove(&me, phone.factor_id, ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    assert!(
        factors
            .factors_of(&me, me.admin.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_recovery_code_works_once_and_a_new_set_voids_the_old() {
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let res = factors
        .new_recovery_codes(&me, ADMIN_PASSWORD, &ClientInfo::default())
        .await;
    assert!(
        matches!(res, Err(Error::BadUserInput { .. })),
        "no factor yet: {res:?}"
    );
    let phone = factors
        .start_totp(&me, "Phone", ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let first = factors
        .confirm_totp(
            &me,
            phone.factor_id,
            &phone.secret.code_at(h.now()),
            &ClientInfo::default(),
        )
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

    let second = factors
        .new_recovery_codes(&me, ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
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

/// Ann with a confirmed authenticator app: its secret, and her recovery codes.
async fn ann_with_a_factor(
    h: &Harness,
) -> (
    domain::factors::TotpSecret,
    Vec<domain::factors::RecoveryCode>,
) {
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let phone = factors
        .start_totp(&me, "Phone", ADMIN_PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let codes = factors
        .confirm_totp(
            &me,
            phone.factor_id,
            &phone.secret.code_at(h.now()),
            &ClientInfo::default(),
        )
        .await
        .unwrap()
        .unwrap();
    h.clock.advance(Duration::seconds(30));
    (phone.secret, codes)
}

fn challenge_of(step: SignInStep) -> String {
    match step {
        SignInStep::FactorNeeded { challenge, .. } => challenge,
        other => panic!("not a factor step: {other:?}"),
    }
}

#[tokio::test]
async fn an_admin_with_a_factor_signs_in_in_two_steps_and_one_without_in_one() {
    let h = Harness::new().await;
    let factors = h.factors();
    let client = Harness::client("192.0.2.90");
    h.admin_token("bob", "support").await;
    let bob = factors
        .start_sign_in("bob", ADMIN_PASSWORD, client.clone())
        .await
        .unwrap();
    let SignInStep::SignedIn(token) = bob else {
        panic!("no factor, one step: {bob:?}")
    };
    assert!(h.admin_principal(&token.token).await.is_some());

    let (secret, _) = ann_with_a_factor(&h).await;
    let res = factors
        .start_sign_in("ann", "not-the-password", client.clone())
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    let challenge = challenge_of(
        factors
            .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
            .await
            .unwrap(),
    );
    let token = factors
        .complete_sign_in(&challenge, &secret.code_at(h.now()), client.clone())
        .await
        .unwrap();
    let ann = h.admin_principal(&token.token).await.unwrap();
    assert_eq!(ann.admin.username, "ann");
    // The same code again, with the same challenge: a replay.
    let res = factors
        .complete_sign_in(&challenge, &secret.code_at(h.now()), client.clone())
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    // A challenge is good for five minutes.
    h.clock.advance(Duration::minutes(5));
    let res = factors
        .complete_sign_in(&challenge, &secret.code_at(h.now()), client)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
}

#[tokio::test]
async fn wrong_codes_are_counted_per_admin_and_a_new_password_voids_the_challenge() {
    let h = Harness::new().await;
    let factors = h.factors();
    let client = Harness::client("192.0.2.91");
    let (secret, codes) = ann_with_a_factor(&h).await;
    let challenge = challenge_of(
        factors
            .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
            .await
            .unwrap(),
    );
    let right = secret.code_at(h.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..MAX_WRONG_FACTOR_CODES {
        let res = factors
            .complete_sign_in(&challenge, wrong, client.clone())
            .await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    }
    // The budget is spent: even the right code waits, over any challenge.
    let fresh = challenge_of(
        factors
            .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
            .await
            .unwrap(),
    );
    let res = factors
        .complete_sign_in(&fresh, &right, client.clone())
        .await;
    assert!(matches!(res, Err(Error::RateLimited { .. })), "{res:?}");
    h.clock.advance(Duration::minutes(15));

    // A password set between the two steps voids the challenge.
    let challenge = challenge_of(
        factors
            .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
            .await
            .unwrap(),
    );
    h.db.execute_unprepared("UPDATE admin_users SET password_hash = '$test-plain$changed-Pass-1'")
        .await
        .unwrap();
    let res = factors
        .complete_sign_in(&challenge, &secret.code_at(h.now()), client.clone())
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    // ...and spends no recovery code on a sign-in that cannot succeed.
    let unused = "SELECT COUNT(*) AS n FROM admin_recovery_codes WHERE used_at IS NULL";
    let before = h.count(unused).await;
    let res = factors
        .complete_sign_in(&challenge, &codes[0].display(), client)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    assert_eq!(h.count(unused).await, before);
}

#[tokio::test]
async fn factors_change_only_after_the_password_and_each_change_is_audited() {
    use domain::admin::{AuditAction, AuditQuery};
    let h = Harness::new().await;
    let token = h.admin_token("ann", "administrator").await;
    let me = h.admin_principal(&token).await.unwrap();
    let factors = h.factors();
    let client = ClientInfo::default();

    // A stolen token without the password adds nothing and removes nothing.
    let res = factors
        .start_totp(&me, "Thief's phone", "not the password", &client)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    assert!(
        factors
            .factors_of(&me, me.admin.id)
            .await
            .unwrap()
            .is_empty()
    );

    let phone = factors
        .start_totp(&me, "Phone", ADMIN_PASSWORD, &client)
        .await
        .unwrap();
    factors
        .confirm_totp(
            &me,
            phone.factor_id,
            &phone.secret.code_at(h.now()),
            &client,
        )
        .await
        .unwrap()
        .unwrap();
    let res = factors
        .remove(&me, phone.factor_id, "not the password", &client)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    let res = factors
        .new_recovery_codes(&me, "not the password", &client)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    assert_eq!(factors.recovery_codes_left(me.admin.id).await.unwrap(), 10);

    factors
        .new_recovery_codes(&me, ADMIN_PASSWORD, &client)
        .await
        .unwrap();
    // The last confirmed factor takes the recovery codes with it.
    factors
        .remove(&me, phone.factor_id, ADMIN_PASSWORD, &client)
        .await
        .unwrap();
    assert_eq!(factors.recovery_codes_left(me.admin.id).await.unwrap(), 0);

    let log = h
        .admins()
        .audit_log(&AuditQuery {
            action: None,
            customer_id: None,
            first: 10,
            after: None,
        })
        .await
        .unwrap();
    let mut actions: Vec<_> = log.items.iter().map(|(_, e)| e.action).collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            AuditAction::EnrolAdminFactor,
            AuditAction::NewRecoveryCodes,
            AuditAction::RemoveAdminFactor
        ]
    );
    assert!(log.items.iter().all(|(_, e)| e.actor == "ann"));
}

#[tokio::test]
async fn where_a_factor_is_required_the_password_only_opens_an_enrolment() {
    use domain::factors::FactorPolicy;
    let h = Harness::new().await;
    h.admins()
        .create_admin("ann", ADMIN_PASSWORD, "administrator", None)
        .await
        .unwrap();
    let factors = h.factors_with(FactorPolicy::Required);
    let client = ClientInfo::default();

    // The one-step sign-in says why; the two-step one answers an enrolment challenge that
    // signs nobody in.
    let res = factors.sign_in("ann", ADMIN_PASSWORD, client.clone()).await;
    assert!(matches!(res, Err(Error::SecondFactorRequired)), "{res:?}");
    let res = factors
        .sign_in("ann", "wrong-password", client.clone())
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    let step = factors
        .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
        .await
        .unwrap();
    let SignInStep::EnrolmentNeeded { challenge, .. } = step else {
        panic!("{step:?}");
    };
    let res = factors
        .complete_sign_in(&challenge, "000000", client.clone())
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");

    let phone = factors.start_enrolment(&challenge, "Phone").await.unwrap();
    let res = factors
        .complete_enrolment(&challenge, phone.factor_id, "123456", client.clone())
        .await;
    assert!(
        matches!(res, Err(Error::BadUserInput { field: "code", .. })),
        "{res:?}"
    );
    let enrolled = factors
        .complete_enrolment(
            &challenge,
            phone.factor_id,
            &phone.secret.code_at(h.now()),
            client.clone(),
        )
        .await
        .unwrap();
    assert_eq!(enrolled.recovery_codes.len(), RECOVERY_CODES);
    let me = h.admin_principal(&enrolled.token.token).await.unwrap();
    assert_eq!(me.admin.username, "ann");

    // Spent: the challenge enrols nothing more once a factor is confirmed.
    let res = factors.start_enrolment(&challenge, "Another").await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)), "{res:?}");
    // The last factor stays where one is required.
    let res = factors
        .remove(&me, phone.factor_id, ADMIN_PASSWORD, &client)
        .await;
    assert!(matches!(res, Err(Error::BadUserInput { .. })), "{res:?}");
    // From now on, a factor step.
    h.clock.advance(Duration::seconds(30));
    let step = factors
        .start_sign_in("ann", ADMIN_PASSWORD, client.clone())
        .await
        .unwrap();
    let challenge = challenge_of(step);
    factors
        .complete_sign_in(&challenge, &phone.secret.code_at(h.now()), client)
        .await
        .unwrap();
}
