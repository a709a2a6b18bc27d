//! Attack protection that cannot be aimed at a customer: wrong passwords lock a customer's name
//! from the network they came from only, and a name or a network under attack asks for a solved
//! proof-of-work challenge (CHALLENGE_REQUIRED, ALTCHA's format) before any password is checked,
//! any reset mail is sent or anyone is registered. Clients are told apart by `X-Forwarded-For`
//! from a trusted proxy, as behind a store's load balancer.

use base64::Engine;
use chrono::Duration;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    import::{dir_of, import},
    smtp::SmtpReceiver,
};

crate::tests![
    wrong_passwords_from_one_network_lock_the_name_there_only_and_turn_the_challenge_on,
    a_solved_challenge_is_accepted_once_and_only_within_its_lifetime,
    a_network_under_attack_asks_for_the_challenge_on_registration_and_reset_too,
    a_code_sign_in_is_refused_from_the_network_the_name_is_locked_from,
    support_unlocks_a_customer_from_every_network_and_it_is_audited,
    the_customer_is_mailed_an_unlock_link_once_a_day_and_it_unlocks_their_network,
    a_right_password_on_the_breached_list_signs_in_and_asks_for_a_new_one,
    a_stores_own_captcha_token_stands_in_for_the_challenge_where_one_is_configured,
    a_store_that_refuses_breached_passwords_mails_a_reset_link_instead,
];

/// The attacker's network and the customer's.
const NETWORK_A: &str = "203.0.113.7";
const NETWORK_A_NEIGHBOUR: &str = "203.0.113.200";
const NETWORK_B: &str = "198.51.100.9";

const SIGN_IN: &str = "mutation($e: String!, $p: String!, $s: String) { generateCustomerToken(email: $e, password: $p, challengeSolution: $s) { token } }";
const RESET: &str =
    "mutation($e: String!, $s: String) { requestPasswordReset(email: $e, challengeSolution: $s) }";
const REGISTER: &str = "mutation($i: CreateCustomerInput!, $s: String) { createCustomer(input: $i, challengeSolution: $s) { id } }";

/// A server behind a trusted proxy, with the attack settings at their defaults (10 wrong
/// passwords for a name, or 20 from a network, within an hour turn the challenge on).
async fn app(backend: Backend) -> TestApp {
    let app = TestApp::spawn_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    app.set_settings("challenge_after_name_failures = 10, challenge_after_network_failures = 20")
        .await;
    app.without_reset_limits().await;
    app
}

/// A server behind a trusted proxy that mails over SMTP to a receiver the test owns (attack
/// settings as `TestApp` leaves them: the challenge off).
async fn behind_proxy_with_smtp(backend: Backend) -> (TestApp, SmtpReceiver) {
    let smtp = SmtpReceiver::start().await;
    let url = smtp.url();
    let app = TestApp::spawn_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.smtp_url = Some(latchkey::config::Secret::new(url));
    })
    .await;
    (app, smtp)
}

async fn from(app: &TestApp, ip: &str, query: &str, variables: Value) -> Value {
    app.client
        .post(app.url("/graphql"))
        .header("x-forwarded-for", ip)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The challenge a CHALLENGE_REQUIRED answer carries, and why it was asked.
fn challenge(res: &Value) -> (Value, String) {
    assert_eq!(code(res), "CHALLENGE_REQUIRED", "{res}");
    let ext = &res["errors"][0]["extensions"];
    (
        ext["challenge"].clone(),
        ext["reason"].as_str().unwrap().to_owned(),
    )
}

/// What any client does (and the storefront pages do in the browser): try numbers until one
/// hashes, after the salt, to the challenge; answer base64 JSON.
fn solve(challenge: &Value) -> String {
    let salt = challenge["salt"].as_str().unwrap();
    let target = challenge["challenge"].as_str().unwrap();
    let max = challenge["maxnumber"].as_u64().unwrap();
    let number = (0..=max)
        .find(|n| hex(&Sha256::digest(format!("{salt}{n}").as_bytes())) == target)
        .expect("the number lies within maxnumber");
    let payload = json!({
        "algorithm": challenge["algorithm"], "challenge": target, "number": number,
        "salt": salt, "signature": challenge["signature"],
    });
    base64::engine::general_purpose::STANDARD.encode(payload.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks `query` from `ip` without a solution, solves the challenge it answers with, and asks
/// again with the solution.
async fn solved(app: &TestApp, ip: &str, query: &str, mut variables: Value) -> Value {
    let first = from(app, ip, query, variables.clone()).await;
    let (c, reason) = challenge(&first);
    assert_eq!(reason, "REQUIRED");
    variables["s"] = json!(solve(&c));
    from(app, ip, query, variables).await
}

async fn wrong_passwords_from_one_network_lock_the_name_there_only_and_turn_the_challenge_on(
    backend: Backend,
) {
    let app = app(backend).await;
    app.create_customer("victim@example.com", PASSWORD).await;
    // 500 wrong passwords from network A, fifty to a document (each field call counts).
    let mut answers = Vec::new();
    for round in 0..10 {
        let fields: String = (0..50)
            .map(|i| format!("a{i}: generateCustomerToken(email: \"victim@example.com\", password: \"guess-{round}-{i}\") {{ token }} "))
            .collect();
        let res = from(
            &app,
            NETWORK_A,
            &format!("mutation {{ {fields} }}"),
            json!({}),
        )
        .await;
        let errors = res["errors"].as_array().unwrap().clone();
        assert_eq!(errors.len(), 50, "{res}");
        answers.extend(errors.into_iter().map(|e| e["extensions"]["code"].clone()));
    }
    // Ten were checked (the lockout's budget); from then on the name is under attack and
    // every guess must bring a solved challenge first.
    let failed = answers
        .iter()
        .filter(|c| *c == "AUTHENTICATION_FAILED")
        .count();
    let challenged = answers
        .iter()
        .filter(|c| *c == "CHALLENGE_REQUIRED")
        .count();
    assert_eq!((failed, challenged), (10, 490), "{answers:?}");
    // A solved challenge does not open network A: the name is locked from there (its
    // neighbours in the same /24 included), even for the right password.
    for ip in [NETWORK_A, NETWORK_A_NEIGHBOUR] {
        let res = solved(
            &app,
            ip,
            SIGN_IN,
            json!({"e": "victim@example.com", "p": PASSWORD}),
        )
        .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    // From the customer's own network the challenge is asked too (the storefront solves it),
    // and then the right password signs in.
    let res = solved(
        &app,
        NETWORK_B,
        SIGN_IN,
        json!({"e": "victim@example.com", "p": PASSWORD}),
    )
    .await;
    let token = res["data"]["generateCustomerToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"));
    assert_eq!(app.whoami(token).await, Ok("victim@example.com".into()));
    // A name without an account answers the same way: the challenge tells nothing.
    for i in 0..10 {
        let res = from(
            &app,
            NETWORK_A,
            SIGN_IN,
            json!({"e": "nobody@example.com", "p": format!("guess-{i}")}),
        )
        .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    let (unknown, known) = (
        from(
            &app,
            NETWORK_B,
            SIGN_IN,
            json!({"e": "nobody@example.com", "p": PASSWORD}),
        )
        .await,
        from(
            &app,
            NETWORK_B,
            SIGN_IN,
            json!({"e": "victim@example.com", "p": PASSWORD}),
        )
        .await,
    );
    assert_eq!(challenge(&unknown).1, challenge(&known).1);
    // The admins' grid notes the lock (from one network) until it ends.
    let admin = app.admin_token("support").await;
    let res = app
        .gql_as(
            Some(&admin),
            "{ customers(filter: {search: \"victim@example.com\"}) { edges { node { email lockedUntil } } } }",
            json!({}),
        )
        .await;
    let node = &res["data"]["customers"]["edges"][0]["node"];
    assert_eq!(node["email"], "victim@example.com", "{res}");
    assert!(node["lockedUntil"].is_string(), "{res}");
    // Ten minutes on, network A may try again (with a solved challenge, for the hour the
    // name stays under attack).
    app.clock.advance(Duration::minutes(11));
    let res = solved(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "victim@example.com", "p": PASSWORD}),
    )
    .await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    // An hour after the last failure the challenge is no longer asked.
    app.clock.advance(Duration::minutes(61));
    let res = from(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "victim@example.com", "p": PASSWORD}),
    )
    .await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
}

async fn a_solved_challenge_is_accepted_once_and_only_within_its_lifetime(backend: Backend) {
    let app = app(backend).await;
    app.set_settings("challenge_after_network_failures = 1, challenge_max_number = 5000")
        .await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let wrong = from(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "someone@example.com", "p": "guess"}),
    )
    .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED");
    let ask = json!({"e": "ann@example.com", "p": PASSWORD});
    // None sent.
    let first = from(&app, NETWORK_A, SIGN_IN, ask.clone()).await;
    let (c, reason) = challenge(&first);
    assert_eq!(reason, "REQUIRED");
    assert_eq!(c["algorithm"], "SHA-256");
    assert_eq!(c["maxnumber"], 5000);
    // Unsolved: a wrong number, junk, a solution of another server's challenge.
    let mut unsolved: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(solve(&c))
            .unwrap(),
    )
    .unwrap();
    unsolved["number"] = json!(unsolved["number"].as_u64().unwrap() + 1);
    let unsolved = base64::engine::general_purpose::STANDARD.encode(unsolved.to_string());
    for junk in [unsolved.as_str(), "bm90IGpzb24=", "!!"] {
        let res = from(
            &app,
            NETWORK_A,
            SIGN_IN,
            json!({"e": "ann@example.com", "p": PASSWORD, "s": junk}),
        )
        .await;
        assert_eq!(challenge(&res).1, "INVALID", "{res}");
    }
    // Solved: accepted once.
    let solution = solve(&c);
    let with = json!({"e": "ann@example.com", "p": PASSWORD, "s": solution});
    let res = from(&app, NETWORK_A, SIGN_IN, with.clone()).await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    let replayed = from(&app, NETWORK_A, SIGN_IN, with.clone()).await;
    assert_eq!(challenge(&replayed).1, "SPENT", "{replayed}");
    // Another replica holds the same key and the same record of spent solutions.
    let replica = app.replica().await;
    let res = from(&replica, NETWORK_A, SIGN_IN, with).await;
    assert_eq!(challenge(&res).1, "SPENT", "{res}");
    // Solved but late: ten minutes is its lifetime.
    let (c, _) = challenge(&from(&app, NETWORK_A, SIGN_IN, ask.clone()).await);
    let late = solve(&c);
    app.clock.advance(Duration::minutes(10));
    let res = from(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "ann@example.com", "p": PASSWORD, "s": late}),
    )
    .await;
    assert_eq!(challenge(&res).1, "EXPIRED", "{res}");
    // Each refusal changed nothing: the failure still counts and the customer signs in with
    // a fresh solution.
    let res = solved(&app, NETWORK_A, SIGN_IN, ask).await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
}

async fn a_network_under_attack_asks_for_the_challenge_on_registration_and_reset_too(
    backend: Backend,
) {
    let (app, smtp) = behind_proxy_with_smtp(backend).await;
    app.set_settings("challenge_after_network_failures = 20")
        .await;
    app.without_reset_limits().await;
    app.create_customer("ann@example.com", PASSWORD).await;
    // Twenty wrong passwords from network A, spread over twenty names (credential stuffing).
    for i in 0..20 {
        let res = from(
            &app,
            NETWORK_A,
            SIGN_IN,
            json!({"e": format!("list-{i}@example.com"), "p": "Summer2026!"}),
        )
        .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    let register = |email: &str| json!({"i": {"email": email, "firstname": "Ann", "lastname": "Lee", "password": PASSWORD}});
    // From network A: each of the three asks first.
    let res = from(
        &app,
        NETWORK_A_NEIGHBOUR,
        REGISTER,
        register("new-a@example.com"),
    )
    .await;
    assert_eq!(challenge(&res).1, "REQUIRED");
    let res = solved(&app, NETWORK_A, REGISTER, register("new-a@example.com")).await;
    assert!(res["data"]["createCustomer"]["id"].is_string(), "{res}");
    let res = from(&app, NETWORK_A, RESET, json!({"e": "ann@example.com"})).await;
    assert_eq!(challenge(&res).1, "REQUIRED");
    assert!(smtp.settled(&app).await.is_empty(), "nothing mailed before");
    let res = solved(&app, NETWORK_A, RESET, json!({"e": "ann@example.com"})).await;
    assert_eq!(res["data"]["requestPasswordReset"], true, "{res}");
    assert_eq!(smtp.wait_for(1).await.len(), 1);
    // From network B nothing is asked.
    let res = from(&app, NETWORK_B, REGISTER, register("new-b@example.com")).await;
    assert!(res["data"]["createCustomer"]["id"].is_string(), "{res}");
    let res = from(&app, NETWORK_B, RESET, json!({"e": "ann@example.com"})).await;
    assert_eq!(res["data"]["requestPasswordReset"], true, "{res}");
}

async fn a_code_sign_in_is_refused_from_the_network_the_name_is_locked_from(backend: Backend) {
    let (app, smtp) = behind_proxy_with_smtp(backend).await;
    app.set_settings("sign_in_by_code = true").await;
    app.without_reset_limits().await;
    app.create_customer("ann@example.com", PASSWORD).await;
    const REQUEST: &str = "mutation($e: String!) { requestSignInCode(email: $e) { flowId } }";
    const WITH_CODE: &str =
        "mutation($f: String!, $c: String!) { signInWithCode(flowId: $f, code: $c) { token } }";
    // The code mailed for a flow (other mail, the one about wrong passwords, comes between).
    let start = async |ip: &str| {
        let codes = |all: Vec<crate::smtp::Received>| -> Vec<String> {
            all.iter().filter_map(|m| m.maybe_code()).collect()
        };
        let before = codes(smtp.settled(&app).await).len();
        let res = from(&app, ip, REQUEST, json!({"e": "ann@example.com"})).await;
        let flow = res["data"]["requestSignInCode"]["flowId"]
            .as_str()
            .unwrap_or_else(|| panic!("{res}"))
            .to_owned();
        let mut mailed = codes(smtp.settled(&app).await);
        assert_eq!(mailed.len(), before + 1);
        (flow, mailed.pop().unwrap())
    };
    // A flow started from network A before the lock; then ten wrong passwords from there.
    let (flow, mailed_code) = start(NETWORK_A).await;
    for i in 0..10 {
        let res = from(
            &app,
            NETWORK_A,
            SIGN_IN,
            json!({"e": "ann@example.com", "p": format!("guess-{i}")}),
        )
        .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    // The lock holds where the token would be minted: the flow finished from network A gets
    // none.
    let res = from(
        &app,
        NETWORK_A,
        WITH_CODE,
        json!({"f": flow, "c": mailed_code}),
    )
    .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    // The refusal did not spend the code: the same one signs in from the customer's own
    // network; and from network A once its lock ended.
    let res = from(
        &app,
        NETWORK_B,
        WITH_CODE,
        json!({"f": flow, "c": mailed_code}),
    )
    .await;
    assert!(res["data"]["signInWithCode"]["token"].is_string(), "{res}");
    app.clock.advance(Duration::minutes(11));
    let (flow, mailed_code) = start(NETWORK_A).await;
    let res = from(
        &app,
        NETWORK_A,
        WITH_CODE,
        json!({"f": flow, "c": mailed_code}),
    )
    .await;
    assert!(res["data"]["signInWithCode"]["token"].is_string(), "{res}");
}

async fn support_unlocks_a_customer_from_every_network_and_it_is_audited(backend: Backend) {
    let app = app(backend).await;
    app.create_customer("office@example.com", PASSWORD).await;
    // Ten wrong passwords from the customer's own office network: locked there, and the name
    // asks for a challenge everywhere.
    for i in 0..10 {
        let res = from(
            &app,
            NETWORK_A,
            SIGN_IN,
            json!({"e": "office@example.com", "p": format!("typo-{i}")}),
        )
        .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    }
    let locked =
        "{ customers(filter: {locked: true}) { edges { node { id email lockedUntil } } } }";
    let support = app.admin_token("support").await;
    let res = app.gql_as(Some(&support), locked, json!({})).await;
    let node = &res["data"]["customers"]["edges"][0]["node"];
    assert_eq!(node["email"], "office@example.com", "{res}");
    assert!(node["lockedUntil"].is_string(), "{res}");
    let id = node["id"].clone();
    const UNLOCK: &str = "mutation($id: ID!) { unlockCustomer(customerId: $id) }";
    // A viewer may look, not unlock.
    let viewer = app.admin_token("viewer").await;
    let res = app.gql_as(Some(&viewer), UNLOCK, json!({"id": id})).await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    let res = app.gql_as(Some(&support), UNLOCK, json!({"id": id})).await;
    assert_eq!(res["data"]["unlockCustomer"], true, "{res}");
    // Unlocked from the office, no challenge asked, and the grid no longer lists them.
    let res = from(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "office@example.com", "p": PASSWORD}),
    )
    .await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    let res = app.gql_as(Some(&support), locked, json!({})).await;
    assert_eq!(res["data"]["customers"]["edges"], json!([]), "{res}");
    let log = app
        .gql_as(
            Some(&app.admin_token("administrator").await),
            "{ auditLog(first: 5) { edges { node { action customerId } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<&Value> = log["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["action"])
        .collect();
    assert!(actions.iter().any(|a| *a == "UNLOCK_CUSTOMER"), "{log}");
    // An unknown customer.
    let res = app
        .gql_as(
            Some(&support),
            UNLOCK,
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(code(&res), "NOT_FOUND", "{res}");
}

/// A customer brought over from Magento 1 whose password, `password123`, is on the breached
/// list (it could never be set here: the policy refuses it). md5("pepper" ‖ "password123").
async fn import_breached(app: &TestApp, email: &str) {
    let csv = format!(
        "email,firstname,lastname,locale,password_hash\n{email},Ann,Lee,ja,5da4616bdae43366660087cca31867c4:pepper\n"
    );
    let path = dir_of(app).join("breached.csv");
    std::fs::write(&path, csv).unwrap();
    let out = import(app, &[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

const SIGN_IN_FLAGGED: &str = "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token passwordChangeRequired } }";

async fn a_right_password_on_the_breached_list_signs_in_and_asks_for_a_new_one(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    import_breached(&app, "reused@example.com").await;
    let ask = json!({"e": "reused@example.com", "p": "password123"});
    // A wrong password says nothing about the list.
    let wrong = app
        .gql(
            SIGN_IN_FLAGGED,
            json!({"e": "reused@example.com", "p": "password1234"}),
        )
        .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED", "{wrong}");
    let res = app.gql(SIGN_IN_FLAGGED, ask.clone()).await;
    let signed_in = &res["data"]["generateCustomerToken"];
    assert_eq!(signed_in["passwordChangeRequired"], true, "{res}");
    let token = signed_in["token"].as_str().unwrap().to_owned();
    let me = "{ customer { passwordChangeRequired } }";
    let res = app.gql_as(Some(&token), me, json!({})).await;
    assert_eq!(
        res["data"]["customer"]["passwordChangeRequired"], true,
        "{res}"
    );
    // The notice, in the customer's language, with "this wasn't me"; once.
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(
        mail.subject().contains("パスワードを変更"),
        "{}",
        mail.subject()
    );
    assert!(mail.report_token().is_some(), "{}", mail.text());
    assert!(!mail.text().contains("password123"));
    let again = app.gql(SIGN_IN_FLAGGED, ask).await;
    assert_eq!(
        again["data"]["generateCustomerToken"]["passwordChangeRequired"], true,
        "{again}"
    );
    assert_eq!(smtp.settled(&app).await.len(), 1, "one notice");
    // A new password answers it.
    let res = app
        .gql_as(
            Some(&token),
            "mutation($c: String!, $n: String!) { changeCustomerPassword(currentPassword: $c, newPassword: $n) { passwordChangeRequired } }",
            json!({"c": "password123", "n": "a-Fresh-one-2027"}),
        )
        .await;
    assert_eq!(
        res["data"]["changeCustomerPassword"]["passwordChangeRequired"], false,
        "{res}"
    );
    let res = app
        .gql(
            SIGN_IN_FLAGGED,
            json!({"e": "reused@example.com", "p": "a-Fresh-one-2027"}),
        )
        .await;
    assert_eq!(
        res["data"]["generateCustomerToken"]["passwordChangeRequired"], false,
        "{res}"
    );
}

async fn a_store_that_refuses_breached_passwords_mails_a_reset_link_instead(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    import_breached(&app, "reused@example.com").await;
    let admin = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&admin),
            "mutation { updatePasswordSettings(input: {breachedPasswordSignIn: REFUSE}) { breachedPasswordSignIn } }",
            json!({}),
        )
        .await;
    assert_eq!(
        res["data"]["updatePasswordSettings"]["breachedPasswordSignIn"], "REFUSE",
        "{res}"
    );
    let res = app
        .gql(
            SIGN_IN_FLAGGED,
            json!({"e": "reused@example.com", "p": "password123"}),
        )
        .await;
    // Answered as a wrong password: a list of stolen credentials learns nothing.
    let wrong = app
        .gql(
            SIGN_IN_FLAGGED,
            json!({"e": "reused@example.com", "p": "password1234"}),
        )
        .await;
    assert_eq!(res, wrong);
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(mail.link().contains("token="), "{}", mail.text());
    assert_eq!(
        app.query_one("SELECT COUNT(*) AS n FROM access_tokens", vec![])
            .await
            .try_get::<i64>("", "n")
            .unwrap(),
        0,
        "no session"
    );
    // The link sets a new password, which signs in.
    let res = app
        .gql(
            "mutation($t: String!, $p: String!) { resetPassword(resetPasswordToken: $t, newPassword: $p) }",
            json!({"t": mail.token(), "p": "a-Fresh-one-2027"}),
        )
        .await;
    assert_eq!(res["data"]["resetPassword"], true, "{res}");
    let res = app
        .gql(
            SIGN_IN_FLAGGED,
            json!({"e": "reused@example.com", "p": "a-Fresh-one-2027"}),
        )
        .await;
    assert_eq!(
        res["data"]["generateCustomerToken"]["passwordChangeRequired"], false,
        "{res}"
    );
}

async fn the_customer_is_mailed_an_unlock_link_once_a_day_and_it_unlocks_their_network(
    backend: Backend,
) {
    let (app, smtp) = behind_proxy_with_smtp(backend).await;
    app.set_settings("challenge_after_name_failures = 10").await;
    app.create_customer("mina@example.com", PASSWORD).await;
    app.create_customer("bystander@example.com", PASSWORD).await;
    let guess = async |ip: &str, email: &str, i: usize| {
        let res = from(
            &app,
            ip,
            SIGN_IN,
            json!({"e": email, "p": format!("guess-{i}")}),
        )
        .await;
        if code(&res) == "CHALLENGE_REQUIRED" {
            solved(
                &app,
                ip,
                SIGN_IN,
                json!({"e": email, "p": format!("guess-{i}")}),
            )
            .await
        } else {
            res
        }
    };
    // Nine wrong passwords mail nothing; the tenth turns the challenge on and mails once.
    for i in 0..9 {
        assert_eq!(
            code(&guess(NETWORK_A, "mina@example.com", i).await),
            "AUTHENTICATION_FAILED"
        );
    }
    assert!(smtp.settled(&app).await.is_empty());
    assert_eq!(
        code(&guess(NETWORK_A, "mina@example.com", 9).await),
        "AUTHENTICATION_FAILED"
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(
        mail.subject().contains("Wrong passwords"),
        "{}",
        mail.subject()
    );
    let unlock = mail.unlock_token().expect("an unlock link");
    let not_me = mail.report_token().expect("a this-wasn't-me link");
    // More wrong passwords from another network within the hour: no second mail.
    for i in 10..15 {
        assert_eq!(
            code(&guess(NETWORK_B, "mina@example.com", i).await),
            "AUTHENTICATION_FAILED"
        );
    }
    assert_eq!(smtp.settled(&app).await.len(), 1, "once a day");
    // Opening the link changes nothing: network A is still locked out.
    let page = app
        .client
        .get(app.url(&format!("/account/unlock?token={unlock}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let res = solved(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "mina@example.com", "p": PASSWORD}),
    )
    .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    // Its button does, for the network it is pressed on (the customer's: here they typed
    // the first ten themselves): no other network's lock, and the challenge stays.
    const UNLOCK: &str = "mutation($t: String!) { unlockSignIn(token: $t) }";
    let res = from(&app, NETWORK_A, UNLOCK, json!({"t": not_me})).await;
    assert_eq!(
        code(&res),
        "LINK_INVALID",
        "a this-wasn't-me token unlocks nothing: {res}"
    );
    let res = from(&app, NETWORK_A, UNLOCK, json!({"t": unlock})).await;
    assert_eq!(res["data"]["unlockSignIn"], true, "{res}");
    let res = solved(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "mina@example.com", "p": PASSWORD}),
    )
    .await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    let res = from(&app, NETWORK_A, UNLOCK, json!({"t": unlock})).await;
    assert_eq!(res["data"]["unlockSignIn"], true, "again, alike: {res}");
    // A name without an account is counted alike and mails nobody.
    for i in 0..10 {
        guess(NETWORK_B, "ghost@example.com", i).await;
    }
    assert_eq!(smtp.settled(&app).await.len(), 1);
    // A day later the link has expired.
    app.clock.advance(Duration::hours(24));
    let res = from(&app, NETWORK_B, UNLOCK, json!({"t": unlock})).await;
    assert_eq!(code(&res), "LINK_EXPIRED", "{res}");
}

/// A stand-in for Turnstile's, hCaptcha's or reCAPTCHA's `siteverify`, started by the test: it
/// accepts `good-token` under the secret `captcha-secret`, and keeps every form it was sent.
async fn local_siteverify() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Vec<(String, String)>>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    let router = axum::Router::new().route(
        "/siteverify",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let success = field("secret").as_deref() == Some("captcha-secret")
                    && field("response").as_deref() == Some("good-token");
                kept.lock().unwrap().push(form);
                axum::Json(json!({"success": success}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

async fn a_stores_own_captcha_token_stands_in_for_the_challenge_where_one_is_configured(
    backend: Backend,
) {
    let (verifier, seen) = local_siteverify().await;
    let app = TestApp::spawn_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.captcha_verify_url = Some(format!("http://{verifier}/siteverify"));
        c.captcha_secret = Some(latchkey::config::Secret::new("captcha-secret".to_owned()));
    })
    .await;
    app.set_settings("challenge_after_network_failures = 1")
        .await;
    app.create_customer("ann@example.com", PASSWORD).await;
    let wrong = from(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "x@example.com", "p": "guess"}),
    )
    .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED");
    let with = |s: &str| json!({"e": "ann@example.com", "p": PASSWORD, "s": s});
    // The store's CAPTCHA said yes: signed in, and the verifier was asked as its API says.
    let res = from(&app, NETWORK_A, SIGN_IN, with("good-token")).await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    let asked = seen.lock().unwrap()[0].clone();
    assert!(
        asked.contains(&("secret".into(), "captcha-secret".into())),
        "{asked:?}"
    );
    assert!(
        asked.contains(&("response".into(), "good-token".into())),
        "{asked:?}"
    );
    assert!(
        asked.contains(&("remoteip".into(), NETWORK_A.into())),
        "{asked:?}"
    );
    // Once; a token it refuses is no solution; a solved challenge still is.
    let res = from(&app, NETWORK_A, SIGN_IN, with("good-token")).await;
    assert_eq!(challenge(&res).1, "SPENT", "{res}");
    let res = from(&app, NETWORK_A, SIGN_IN, with("bad-token")).await;
    assert_eq!(challenge(&res).1, "INVALID", "{res}");
    let res = solved(
        &app,
        NETWORK_A,
        SIGN_IN,
        json!({"e": "ann@example.com", "p": PASSWORD}),
    )
    .await;
    assert!(
        res["data"]["generateCustomerToken"]["token"].is_string(),
        "{res}"
    );
    // A proof-of-work payload is never sent to the CAPTCHA's provider.
    assert_eq!(seen.lock().unwrap().len(), 3);
}
