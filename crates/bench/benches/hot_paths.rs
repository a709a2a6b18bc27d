//! Micro-benchmarks of the hot paths: reset token generation + SHA-256, JWT sign and verify,
//! the revocation check (a live-session look-up on SQLite), the password policy on long inputs,
//! argon2id with production parameters, and the proof-of-work challenge's issue and check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, sync::Arc};

use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use domain::{
    accounts::store::{AccountStore, NewCustomer},
    auth::SessionStore,
    customer::{ClientInfo, Locale},
    email::Email,
    limits::PrincipalKind,
    password::{NewPassword, PasswordPolicy},
    ports::PasswordHasher,
    reset::RawResetToken,
    sign_in::{CredentialStore, NewSession, VerifiedHashes},
    token::{TokenCodec, TokenKind},
};
use latchkey::hashing::{Argon2Hasher, SharedHasher};
use uuid::Uuid;

fn tokens(c: &mut Criterion) {
    c.bench_function("reset token: generate + sha256", |b| {
        b.iter(|| {
            let t = RawResetToken::generate().unwrap();
            black_box(t.hash())
        })
    });
    let codec = TokenCodec::new(&[7u8; 32]).unwrap();
    let now = Utc::now();
    let (sub, sid) = (Uuid::now_v7(), domain::SessionId::new());
    c.bench_function("jwt: sign", |b| {
        b.iter(|| {
            black_box(
                codec
                    .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
                    .unwrap(),
            )
        })
    });
    let token = codec
        .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
        .unwrap();
    c.bench_function("jwt: verify", |b| {
        b.iter(|| black_box(codec.verify(TokenKind::Customer, &token, now).unwrap()))
    });
    // The same with an Ed25519 key ring (what servers sign with now).
    let seed = [9u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let ring = domain::token::KeyRing::new(
        vec![domain::token::RingKey {
            kid: domain::token::thumbprint(&public),
            generation: 1,
            public,
            seed: Some(seed),
            signs_from: now - Duration::hours(1),
        }],
        None,
    )
    .unwrap();
    let eddsa = TokenCodec::with_ring(ring);
    c.bench_function("jwt: sign, EdDSA", |b| {
        b.iter(|| {
            black_box(
                eddsa
                    .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
                    .unwrap(),
            )
        })
    });
    let token = eddsa
        .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
        .unwrap();
    c.bench_function("jwt: verify, EdDSA", |b| {
        b.iter(|| black_box(eddsa.verify(TokenKind::Customer, &token, now).unwrap()))
    });
}

fn policy(c: &mut Criterion) {
    let policy = PasswordPolicy::default();
    let p256 = "x7Y!".repeat(64);
    let megabyte = "a".repeat(1 << 20);
    c.bench_function("password policy: 256 characters", |b| {
        b.iter(|| {
            black_box(NewPassword::parse(&p256, &policy, &["ann", "example"], &["Store"]).is_ok())
        })
    });
    c.bench_function("password policy: 1 MiB refused", |b| {
        b.iter(|| black_box(NewPassword::parse(&megabyte, &policy, &[], &[]).is_err()))
    });
}

fn revocation_check(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.display());
    let (store, session, subject) = rt.block_on(async {
        let db = persistence::connect(
            &url,
            None,
            persistence::PoolOptions {
                max_connections: 8,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        persistence::migrate(&db).await.unwrap();
        let stores = persistence::Stores::new(db);
        let now = Utc::now();
        let customer = stores
            .accounts
            .create_customer(NewCustomer {
                id: Uuid::now_v7(),
                email: Email::parse("bench@example.com").unwrap(),
                firstname: "A".into(),
                lastname: "B".into(),
                locale: Locale::En,
                password_hash: "x".into(),
                now,
            })
            .await
            .map_err(|_| "create")
            .unwrap();
        let session = domain::SessionId::new();
        stores
            .credentials
            .create_session(
                PrincipalKind::Customer,
                NewSession {
                    id: session,
                    principal_id: customer.id,
                    created_at: now,
                    expires_at: now + Duration::hours(1),
                    client: ClientInfo::default(),
                    verified: VerifiedHashes(vec!["x".into()]),
                    max_live: 100,
                },
            )
            .await
            .unwrap();
        (stores.sessions.clone(), session, customer.id)
    });
    c.bench_function("revocation check: live session + customer (SQLite)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                store
                    .live_session(TokenKind::Customer, session, subject, Utc::now())
                    .await
                    .unwrap()
                    .is_some(),
            )
        })
    });
    std::fs::remove_dir_all(dir).ok();
}

fn argon2(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hasher = SharedHasher(Arc::new(Argon2Hasher::new(1, 16).unwrap()));
    let password =
        NewPassword::parse("bench-Password-1", &PasswordPolicy::default(), &[], &[]).unwrap();
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    group.sample_size(10);
    group.bench_function("hash", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(hasher.hash(&password).await.unwrap()) })
    });
    group.finish();
}

/// The proof-of-work challenge on the server: issuing one, and checking a solution (what each
/// request under attack costs before anything else).
fn work_challenge(c: &mut Criterion) {
    use base64::Engine;
    use sha2::Digest;
    let key = domain::guard::WorkKey::derive(&[7u8; 32]).unwrap();
    let now = Utc::now();
    c.bench_function("challenge: issue", |b| {
        b.iter(|| black_box(key.issue(100_000, now, "ab12").unwrap()))
    });
    let challenge = key.issue(1_000, now, "ab12").unwrap();
    let number = (0..=challenge.maxnumber)
        .find(|n| {
            let digest = sha2::Sha256::digest(format!("{}{n}", challenge.salt).as_bytes());
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                == challenge.challenge
        })
        .unwrap();
    let solution = base64::engine::general_purpose::STANDARD.encode(
        serde_json::json!({
            "algorithm": challenge.algorithm, "challenge": challenge.challenge, "number": number,
            "salt": challenge.salt, "signature": challenge.signature,
        })
        .to_string(),
    );
    c.bench_function("challenge: check a solution", |b| {
        b.iter(|| black_box(key.check(&solution, now).unwrap()))
    });
}

criterion_group!(
    benches,
    tokens,
    policy,
    revocation_check,
    argon2,
    work_challenge
);
criterion_main!(benches);
