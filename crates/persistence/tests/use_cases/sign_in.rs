//! The sign-in core (`domain::sign_in`): lockout, its end, what clears it, and the cap on
//! sessions minted per hour.

use chrono::Duration;
use domain::{Error, sign_in::SessionCaps};

use crate::{Harness, PASSWORD};

#[tokio::test]
async fn ten_wrong_passwords_lock_the_name_until_the_lock_ends() {
    let h = Harness::new().await;
    // The lockout alone: no challenge asked of a name under attack.
    h.set_settings("challenge_after_name_failures = 0").await;
    h.customer("lock@example.com").await;
    let accounts = h.accounts();
    let client = || Harness::client("198.51.100.7");
    for i in 0..10 {
        let res = accounts
            .sign_in("lock@example.com", &format!("wrong-{i}"), client(), None)
            .await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)), "{i}");
    }
    // Locked: the right password is refused, exactly as a wrong one.
    let res = accounts
        .sign_in("lock@example.com", PASSWORD, client(), None)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)));
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM customers WHERE locked_until IS NOT NULL")
            .await,
        1
    );
    // From another network the name is open.
    accounts
        .sign_in(
            "lock@example.com",
            PASSWORD,
            Harness::client("192.0.2.99"),
            None,
        )
        .await
        .unwrap();
    // Ten minutes later it signs in, and the sign-in is a session.
    h.clock
        .advance(Duration::minutes(10) + Duration::seconds(1));
    accounts
        .sign_in("lock@example.com", PASSWORD, client(), None)
        .await
        .unwrap();
    assert_eq!(h.count("SELECT COUNT(*) AS n FROM access_tokens").await, 2);
}

#[tokio::test]
async fn a_name_under_attack_asks_for_a_challenge_before_any_password_is_checked() {
    let h = Harness::new().await;
    h.customer("target@example.com").await;
    let accounts = h.accounts();
    for i in 0..10 {
        let res = accounts
            .sign_in(
                "target@example.com",
                &format!("wrong-{i}"),
                Harness::client(&format!("198.51.{i}.7")),
                None,
            )
            .await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)), "{i}");
    }
    // Ten networks, one failure each: nothing locked, but the name is under attack.
    let res = accounts
        .sign_in(
            "target@example.com",
            PASSWORD,
            Harness::client("192.0.2.99"),
            None,
        )
        .await;
    let Err(Error::ChallengeRequired { challenge, reason }) = res else {
        panic!("{res:?}")
    };
    assert_eq!(reason, domain::guard::WorkRejection::Required);
    assert_eq!(challenge.maxnumber, 100_000);
    // Nothing was counted for it: the failures stay ten.
    assert_eq!(
        h.count("SELECT failed_sign_ins AS n FROM customers").await,
        10
    );
}

/// What a client does: the number whose SHA-256 after the salt is the challenge, as base64 JSON.
fn solve(c: &domain::guard::WorkChallenge) -> String {
    use base64::Engine;
    use sha2::Digest;
    let number = (0..=c.maxnumber)
        .find(|n| {
            let d = sha2::Sha256::digest(format!("{}{n}", c.salt).as_bytes());
            d.iter().map(|b| format!("{b:02x}")).collect::<String>() == c.challenge
        })
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(
        serde_json::json!({"algorithm": c.algorithm, "challenge": c.challenge, "number": number,
            "salt": c.salt, "signature": c.signature})
        .to_string(),
    )
}

#[tokio::test]
async fn the_work_grows_with_the_attack_and_a_solution_counts_only_where_it_was_asked() {
    let h = Harness::new().await;
    h.set_settings("challenge_max_number = 1000").await;
    h.customer("target@example.com").await;
    h.customer("other@example.com").await;
    let accounts = h.accounts();
    let from = |i: usize| Harness::client(&format!("198.51.{i}.7"));
    let ask = async |email: &str, password: &str, i: usize, solution: Option<&str>| {
        accounts.sign_in(email, password, from(i), solution).await
    };
    let challenge = |res: Result<_, Error>| match res {
        Err(Error::ChallengeRequired { challenge, .. }) => *challenge,
        other => panic!("{:?}", other.map(|_: domain::sign_in::IssuedToken| ())),
    };
    for i in 0..10 {
        let res = ask("target@example.com", "wrong", i, None).await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)), "{i}");
    }
    for i in 0..10 {
        let res = ask("other@example.com", "wrong", 100 + i, None).await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)), "{i}");
    }
    // Under attack: the settings' work.
    let first = challenge(ask("target@example.com", "wrong", 50, None).await);
    assert_eq!(first.maxnumber, 1000);
    // A solution of the other name's challenge is no proof for this one.
    let elsewhere = challenge(ask("other@example.com", "wrong", 50, None).await);
    let res = ask("target@example.com", "wrong", 50, Some(&solve(&elsewhere))).await;
    let Err(Error::ChallengeRequired { reason, .. }) = res else {
        panic!("accepted")
    };
    assert_eq!(reason, domain::guard::WorkRejection::Invalid);
    // Ten more wrong passwords, each paid for: the work doubles.
    let mut next = first;
    for i in 0..10 {
        let res = ask("target@example.com", "wrong", 60 + i, Some(&solve(&next))).await;
        assert!(
            matches!(res, Err(Error::AuthenticationFailed)),
            "{i}: {res:?}"
        );
        next = challenge(ask("target@example.com", "wrong", 60 + i, None).await);
    }
    assert_eq!(next.maxnumber, 2000);
}

#[tokio::test]
async fn a_right_password_ends_the_run_of_failures() {
    let h = Harness::new().await;
    h.set_settings("challenge_after_name_failures = 0, challenge_after_network_failures = 0")
        .await;
    h.customer("run@example.com").await;
    let accounts = h.accounts();
    let client = || Harness::client("198.51.100.8");
    for round in 0..3 {
        for i in 0..9 {
            let res = accounts
                .sign_in(
                    "run@example.com",
                    &format!("wrong-{round}-{i}"),
                    client(),
                    None,
                )
                .await;
            assert!(matches!(res, Err(Error::AuthenticationFailed)));
        }
        accounts
            .sign_in("run@example.com", PASSWORD, client(), None)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
}

#[tokio::test]
async fn an_unknown_name_spends_the_same_budget_as_a_known_one() {
    let h = Harness::new().await;
    let accounts = h.accounts();
    for i in 0..10 {
        let res = accounts
            .sign_in(
                "nobody@example.com",
                &format!("guess-{i}"),
                Harness::client("203.0.113.5"),
                None,
            )
            .await;
        assert!(matches!(res, Err(Error::AuthenticationFailed)));
    }
    // Ten attempts were counted for the name (and for the client), as for an account.
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM limit_events WHERE key = 'sign-in:customer:nobody@example.com'")
            .await,
        10
    );
    // None of them is still in flight: each settled when its password was checked.
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM limit_events WHERE in_flight = 1")
            .await,
        0
    );
}

#[tokio::test]
async fn sessions_minted_per_hour_are_capped_and_the_cap_tells_a_guesser_nothing() {
    let h = Harness::with_caps(SessionCaps {
        max_live: 100,
        sign_ins_per_hour: 2,
    })
    .await;
    h.customer("hourly@example.com").await;
    let accounts = h.accounts();
    let client = || Harness::client("198.51.100.9");
    for _ in 0..2 {
        accounts
            .sign_in("hourly@example.com", PASSWORD, client(), None)
            .await
            .unwrap();
    }
    let res = accounts
        .sign_in("hourly@example.com", PASSWORD, client(), None)
        .await;
    assert!(
        matches!(res, Err(Error::RateLimited { retry_after_seconds }) if retry_after_seconds == 3600),
        "{res:?}"
    );
    let res = accounts
        .sign_in("hourly@example.com", "wrong-1", client(), None)
        .await;
    assert!(matches!(res, Err(Error::AuthenticationFailed)));
    h.clock.advance(Duration::hours(1));
    accounts
        .sign_in("hourly@example.com", PASSWORD, client(), None)
        .await
        .unwrap();
}
