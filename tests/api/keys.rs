//! Tokens other services can verify: the JWKS checked by a third-party library (jose), key
//! rotation across replicas that signs nobody out, retirement, and the move from HS256.

use std::{net::SocketAddr, time::Duration};

use latchkey::config::{Secret, TokenSigning};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp},
    process::ServerProcess,
};

crate::tests![
    node_another_service_verifies_tokens_with_the_jwks_and_jose,
    a_rust_service_verifies_tokens_with_the_jwks_as_the_docs_show,
    a_rotation_signs_nobody_out_and_every_replica_follows_it,
    a_deployment_on_hs256_moves_to_eddsa_without_signing_anyone_out,
];

async fn jwks(addr: SocketAddr) -> (reqwest::header::HeaderMap, Value) {
    let res = reqwest::get(format!("http://{addr}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    (headers, res.json().await.unwrap())
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// One part of a token (0 the header, 1 the claims), read without verifying anything.
fn jwt_part(token: &str, n: usize) -> Value {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> Option<String> {
    jwt_part(token, 0)["kid"].as_str().map(str::to_owned)
}

/// A token's `iat`, in whole seconds.
fn issued_at(token: &str) -> i64 {
    jwt_part(token, 1)["iat"].as_i64().unwrap()
}

/// When the key `kid` starts signing, in whole seconds (as `iat` counts them).
async fn signs_from(app: &TestApp, kid: &str) -> i64 {
    app.query_one(
        "SELECT signs_from FROM signing_keys WHERE kid = $1",
        vec![kid.into()],
    )
    .await
    .try_get::<chrono::DateTime<chrono::Utc>>("", "signs_from")
    .unwrap()
    .timestamp()
}

async fn gql_at(addr: SocketAddr, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn sign_in_at(addr: SocketAddr, email: &str) -> String {
    let res = gql_at(
        addr,
        None,
        "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }",
        json!({"e": email, "p": PASSWORD}),
    )
    .await;
    res["data"]["generateCustomerToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

async fn signed_in_at(addr: SocketAddr, token: &str) -> bool {
    let res = gql_at(addr, Some(token), "{ customer { email } }", json!({})).await;
    res["data"]["customer"]["email"].is_string()
}

async fn node_another_service_verifies_tokens_with_the_jwks_and_jose(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("jose@example.com", PASSWORD).await;
    let token = app.sign_in("jose@example.com", PASSWORD).await;
    let id = app.customer_id("jose@example.com").await;
    let (headers, keys) = jwks(app.addr).await;
    assert_eq!(headers["content-type"], "application/jwk-set+json");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    let key = &keys["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("sig")
        )
    );
    assert!(key.get("d").is_none(), "the private key is never published");
    let url = app.url("/.well-known/jwks.json");
    let (ok, out) = crate::node::run("verify-jwt.mjs", &[&url, "latchkey:customer", &token]).await;
    assert!(ok, "{out}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["payload"]["sub"], json!(id));
    assert_eq!(verified["header"]["alg"], "EdDSA");
    assert_eq!(verified["header"]["kid"], key["kid"]);
    // A changed signature, or a customer token offered as an admin one, does not verify. (A
    // character inside the signature: the last one carries padding bits that base64url
    // decoders ignore, so changing it may change nothing.)
    let at = token.len() - 10;
    let was = token.as_bytes()[at];
    let mut tampered = token.clone();
    tampered.replace_range(at..=at, if was == b'A' { "B" } else { "A" });
    let (ok, out) =
        crate::node::run("verify-jwt.mjs", &[&url, "latchkey:customer", &tampered]).await;
    assert!(!ok, "{out}");
    let (ok, out) = crate::node::run("verify-jwt.mjs", &[&url, "latchkey:admin", &token]).await;
    assert!(!ok, "{out}");
    // Admin tokens are signed by the same keys, for their own audience.
    let admin = app.admin_token("viewer").await;
    let (ok, out) = crate::node::run("verify-jwt.mjs", &[&url, "latchkey:admin", &admin]).await;
    assert!(ok, "{out}");
}

async fn a_rust_service_verifies_tokens_with_the_jwks_as_the_docs_show(backend: Backend) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let app = TestApp::spawn(backend).await;
    app.create_customer("rust@example.com", PASSWORD).await;
    let token = app.sign_in("rust@example.com", PASSWORD).await;
    let id = app.customer_id("rust@example.com").await;
    // docs/other-services.md's snippet, as is.
    let jwks: JwkSet = reqwest::get(app.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["latchkey"]);
    validation.set_audience(&["latchkey:customer"]);
    let claims = decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], json!(id));
    // The same key refuses a token for the admin audience, and a changed payload.
    let mut admin = Validation::new(Algorithm::EdDSA);
    admin.set_issuer(&["latchkey"]);
    admin.set_audience(&["latchkey:admin"]);
    assert!(decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &admin).is_err());
    let parts: Vec<&str> = token.split('.').collect();
    let other = app.sign_in("rust@example.com", PASSWORD).await;
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(decode::<Value>(&spliced, &DecodingKey::from_jwk(jwk).unwrap(), &validation).is_err());
}

/// Two replicas (processes of their own) reload keys every second; JWKS caches keep them a
/// second, so a rotated key signs 3 s after `latchkey keys rotate`.
async fn a_rotation_signs_nobody_out_and_every_replica_follows_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("rotate@example.com", PASSWORD).await;
    let env = [
        ("LATCHKEY_KEY_REFRESH_SECONDS", "1".to_owned()),
        ("LATCHKEY_JWKS_MAX_AGE_SECONDS", "1".to_owned()),
    ];
    let a = ServerProcess::start(&app.config, &env).await;
    let b = ServerProcess::start(&app.config, &env).await;
    let old = sign_in_at(a.addr, "rotate@example.com").await;
    let (_, before) = jwks(b.addr).await;
    let first = kids(&before);
    assert_eq!(first.len(), 1);
    assert_eq!(kid_of(&old), Some(first[0].clone()));

    let cli = |args: &[&str]| {
        let out = app
            .command(args)
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rotated = cli(&["keys", "rotate"]);
    assert!(rotated.starts_with("added key"), "{rotated}");
    // Published on every replica first, signing only later: a token signed now still carries
    // the old key, and both keys verify.
    let mut both = Vec::new();
    for _ in 0..60 {
        let (_, a_keys) = jwks(a.addr).await;
        let (_, b_keys) = jwks(b.addr).await;
        if kids(&a_keys).len() == 2 && kids(&b_keys).len() == 2 {
            both = kids(&b_keys);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(both.len(), 2, "the new key reached both replicas");
    let new_kid = both.iter().find(|k| **k != first[0]).unwrap().clone();
    // Published, not yet signing: a token carries the old key until the new key's
    // `signs_from`, the new one from then on. Judged by the token's own issue time, so the
    // rule is checked however long this machine took (normally well inside the window).
    let early = sign_in_at(b.addr, "rotate@example.com").await;
    let signs_from = signs_from(&app, &new_kid).await;
    let issued = issued_at(&early);
    if issued < signs_from {
        assert_eq!(kid_of(&early), Some(first[0].clone()), "not yet signing");
    } else if issued > signs_from {
        assert_eq!(
            kid_of(&early),
            Some(new_kid.clone()),
            "signing from signs_from"
        );
    }
    // Then, once `signs_from` has passed on the clock the replicas read, the new key signs.
    let now = chrono::Utc::now().timestamp_millis();
    let wait = u64::try_from((signs_from + 1) * 1000 - now).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let new = sign_in_at(b.addr, "rotate@example.com").await;
    assert_eq!(kid_of(&new), Some(new_kid.clone()));
    for addr in [a.addr, b.addr] {
        assert!(signed_in_at(addr, &old).await, "an old token still works");
        assert!(
            signed_in_at(addr, &new).await,
            "a new token works everywhere"
        );
    }
    let listed = cli(&["keys", "list"]);
    assert!(listed.contains(&format!("{new_kid}\tsigning")), "{listed}");
    assert!(
        listed.contains(&format!("{}\tverifying", first[0])),
        "{listed}"
    );
    // Retiring waits for the old key's tokens to expire, unless forced (a leaked key).
    let kept = cli(&["keys", "retire"]);
    assert!(kept.contains(&format!("kept {}", first[0])), "{kept}");
    assert!(signed_in_at(a.addr, &old).await);
    let forced = cli(&["keys", "retire", &first[0], "--force"]);
    assert!(
        forced.contains(&format!("retired {}", first[0])),
        "{forced}"
    );
    let mut refused = false;
    for _ in 0..40 {
        if !signed_in_at(a.addr, &old).await && !signed_in_at(b.addr, &old).await {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "the retired key's tokens stop working on every replica"
    );
    assert!(signed_in_at(a.addr, &new).await);
    let (_, after) = jwks(a.addr).await;
    assert_eq!(kids(&after), vec![new_kid]);
    // The key that signs cannot be retired.
    let signing = cli(&["keys", "retire", &kid_of(&new).unwrap(), "--force"]);
    assert!(signing.contains("kept"), "{signing}");
    assert!(signed_in_at(b.addr, &new).await);
}

async fn a_deployment_on_hs256_moves_to_eddsa_without_signing_anyone_out(backend: Backend) {
    let secret = "an-existing-deployments-hs256-secret-0123456789";
    let mut app = TestApp::spawn_with(backend, |c| {
        c.token_signing = TokenSigning::Hs256;
        c.jwt_secret = Some(Secret::new(secret));
    })
    .await;
    app.create_customer("legacy@example.com", PASSWORD).await;
    let legacy = app.sign_in("legacy@example.com", PASSWORD).await;
    assert_eq!(kid_of(&legacy), None, "HS256 tokens carry no kid");
    let (_, none) = jwks(app.addr).await;
    assert_eq!(none, json!({"keys": []}));

    app.stop().await;
    app.clock.advance(chrono::Duration::seconds(5));
    app.config.token_signing = TokenSigning::Eddsa;
    app.start().await;
    assert_eq!(
        app.whoami(&legacy).await.as_deref(),
        Ok("legacy@example.com"),
        "a token from before the move still works"
    );
    let new = app.sign_in("legacy@example.com", PASSWORD).await;
    let (_, keys) = jwks(app.addr).await;
    assert_eq!(kid_of(&new), Some(kids(&keys)[0].clone()));
    // An HS256 token made with the secret after the move is not one Latchkey issued, even for
    // a live session: the secret signs nothing any more.
    use domain::clock::Clock;
    let now = app.clock.now();
    let codec = domain::token::TokenCodec::new(secret.as_bytes()).unwrap();
    let verified = codec
        .verify(domain::token::TokenKind::Customer, &legacy, now)
        .unwrap();
    let forged = codec
        .sign(
            domain::token::TokenKind::Customer,
            verified.subject,
            verified.session_id,
            now + chrono::Duration::seconds(2),
            now + chrono::Duration::hours(1),
        )
        .unwrap();
    assert_eq!(app.whoami(&forged).await, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(
        app.whoami(&legacy).await.as_deref(),
        Ok("legacy@example.com")
    );
    // A key-encryption key set afterwards: the key sealed under the secret still opens.
    app.stop().await;
    app.config.key_encryption_key = Some(Secret::new("a-key-encryption-key-set-later-0123456789"));
    app.start().await;
    assert_eq!(app.whoami(&new).await.as_deref(), Ok("legacy@example.com"));
    let again = app.sign_in("legacy@example.com", PASSWORD).await;
    assert_eq!(kid_of(&again), kid_of(&new));
}
