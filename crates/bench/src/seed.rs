//! Seeds a benchmark database: customers with a real argon2id hash, live sessions with minted
//! tokens, unused reset tokens, an admin, limits off.

use std::sync::Arc;

use chrono::{Duration, Utc};
use domain::{
    password::{NewPassword, PasswordPolicy},
    ports::PasswordHasher,
    reset::RawResetToken,
    token::{TokenCodec, TokenKind},
};
use latchkey::hashing::{Argon2Hasher, SharedHasher};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, Statement,
    sea_query::{Alias, Query, SimpleExpr},
};
use uuid::Uuid;

pub const PASSWORD: &str = "bench-Password-1";
const RESET_TOKENS: usize = 6000;
const SIGNED_IN: usize = 64;

pub struct Seeded {
    pub customer_ids: Vec<Uuid>,
    pub customer_tokens: Vec<String>,
    /// The sessions behind `customer_tokens`, in the same order.
    pub session_ids: Vec<Uuid>,
    pub reset_tokens: Vec<String>,
    pub admin_token: String,
}

/// Creates a new database next to the one `url` names and returns its URL.
pub async fn fresh_postgres(url: &str) -> anyhow::Result<String> {
    let name = format!("latchkey_bench_{}", Utc::now().timestamp());
    let admin = Database::connect(url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    admin.close().await.ok();
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Ok(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

/// Drops a database made by [`fresh_postgres`] (best effort).
pub async fn drop_postgres(admin_url: &str, url: &str) {
    let Some(name) = url.split('?').next().and_then(|u| u.rsplit('/').next()) else {
        return;
    };
    if let Ok(admin) = Database::connect(admin_url).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        admin.close().await.ok();
    }
}

pub(crate) fn insert(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<SimpleExpr>>,
) -> sea_orm::sea_query::InsertStatement {
    let mut q = Query::insert();
    q.into_table(Alias::new(table))
        .columns(columns.iter().map(|c| Alias::new(*c)));
    for row in rows {
        q.values_panic(row);
    }
    q.to_owned()
}

async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    Ok(persistence::connect(
        url,
        None,
        persistence::PoolOptions {
            max_connections: 4,
            ..Default::default()
        },
    )
    .await?)
}

pub async fn sessions(url: &str, customer: Uuid, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let db = connect(url).await?;
    let now = Utc::now();
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let rows = chunk
            .iter()
            .map(|_| {
                let id = Uuid::now_v7();
                ids.push(id);
                vec![
                    id.into(),
                    customer.into(),
                    now.into(),
                    (now + Duration::hours(2)).into(),
                    now.into(),
                ]
            })
            .collect();
        db.execute(&insert(
            "access_tokens",
            &[
                "id",
                "customer_id",
                "created_at",
                "expires_at",
                "last_used_at",
            ],
            rows,
        ))
        .await?;
    }
    db.close().await.ok();
    Ok(ids)
}

/// An administrator `bench-admin` and a live admin token for it.
pub async fn admin_token(
    url: &str,
    secret: &str,
    db: &DatabaseConnection,
) -> anyhow::Result<String> {
    let now = Utc::now();
    let codec = TokenCodec::new(secret.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = latchkey::config::Config {
        database_url: url.to_owned(),
        jwt_secret: Some(latchkey::config::Secret::new(secret)),
        ..latchkey::config::Config::default()
    };
    let admin = latchkey::create_admin(
        &config,
        "bench-admin",
        "administrator",
        "Load-Test-Secret-77",
    )
    .await?;
    let session = Uuid::now_v7();
    db.execute(&insert(
        "admin_access_tokens",
        &["id", "admin_id", "created_at", "expires_at"],
        vec![vec![
            session.into(),
            admin.id.into(),
            now.into(),
            (now + Duration::hours(4)).into(),
        ]],
    ))
    .await?;
    let token = codec
        .sign(
            TokenKind::Admin,
            admin.id,
            domain::SessionId::from_uuid(session),
            now,
            now + Duration::hours(4),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    Ok(token)
}

pub async fn seed(url: &str, customers: usize, secret: &str) -> anyhow::Result<Seeded> {
    let started = std::time::Instant::now();
    let db = connect(url).await?;
    persistence::migrate(&db).await?;
    let hasher = SharedHasher(Arc::new(Argon2Hasher::new(1, 1)?));
    let hash = hasher
        .hash(
            &NewPassword::parse(PASSWORD, &PasswordPolicy::default(), &[], &[])
                .map_err(|_| anyhow::anyhow!("policy"))?,
        )
        .await?;
    let now = Utc::now();
    let mut customer_ids = Vec::with_capacity(customers);
    for chunk in (0..customers).collect::<Vec<_>>().chunks(500) {
        let rows = chunk
            .iter()
            .map(|i| {
                let id = Uuid::now_v7();
                customer_ids.push(id);
                let email = format!("user{i}@bench.example");
                let created = now - Duration::seconds(*i as i64);
                let (first, last) = (format!("User{i}"), format!("Bench{}", i % 1000));
                vec![
                    id.into(),
                    email.clone().into(),
                    email.clone().into(),
                    domain::search::search_text(&email, &first, &last).into(),
                    first.into(),
                    last.into(),
                    "en".into(),
                    hash.clone().into(),
                    created.into(),
                    0.into(),
                    created.into(),
                    created.into(),
                ]
            })
            .collect();
        db.execute(&insert(
            "customers",
            &[
                "id",
                "email",
                "email_key",
                "search_text",
                "firstname",
                "lastname",
                "locale",
                "password_hash",
                "password_changed_at",
                "failed_sign_ins",
                "created_at",
                "updated_at",
            ],
            rows,
        ))
        .await?;
    }

    let codec = TokenCodec::new(secret.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut customer_tokens = Vec::new();
    let mut session_ids = Vec::new();
    for id in customer_ids.iter().take(SIGNED_IN) {
        let session = sessions(url, *id, 1).await?[0];
        session_ids.push(session);
        customer_tokens.push(
            codec
                .sign(
                    TokenKind::Customer,
                    *id,
                    domain::SessionId::from_uuid(session),
                    now,
                    now + Duration::hours(2),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }

    let mut reset_tokens = Vec::new();
    let first = customers.min(1000);
    let mut rows = Vec::new();
    for (i, id) in customer_ids
        .iter()
        .enumerate()
        .skip(first)
        .take(RESET_TOKENS)
    {
        let raw = RawResetToken::generate()?;
        rows.push(vec![
            Uuid::now_v7().into(),
            (*id).into(),
            raw.hash().into(),
            format!("user{i}@bench.example").into(),
            now.into(),
            (now + Duration::hours(24)).into(),
        ]);
        reset_tokens.push(raw.expose().to_owned());
        if rows.len() == 500 {
            db.execute(&insert(
                "password_reset_tokens",
                &[
                    "id",
                    "customer_id",
                    "token_hash",
                    "email_key",
                    "created_at",
                    "expires_at",
                ],
                std::mem::take(&mut rows),
            ))
            .await?;
        }
    }
    if !rows.is_empty() {
        db.execute(&insert(
            "password_reset_tokens",
            &[
                "id",
                "customer_id",
                "token_hash",
                "email_key",
                "created_at",
                "expires_at",
            ],
            rows,
        ))
        .await?;
    }

    let admin_token = admin_token(url, secret, &db).await?;

    db.execute_unprepared("UPDATE settings SET reset_request_limit_method = 'OFF' WHERE id = 1")
        .await?;
    db.execute_unprepared("CREATE TABLE bench_scratch (id UUID PRIMARY KEY)")
        .await?;
    db.close().await.ok();
    println!(
        "seeded {customers} customers, {} reset tokens in {:.1} s",
        reset_tokens.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        customer_ids,
        customer_tokens,
        session_ids,
        reset_tokens,
        admin_token,
    })
}

/// Mail not sent yet: reset requests the worker has not resolved (where that table exists) and
/// outbox messages pending or being sent.
pub async fn unsent_mail(url: &str) -> anyhow::Result<i64> {
    let db = connect(url).await?;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no count"))?;
            anyhow::Ok(row.try_get::<i64>("", "n")?)
        }
    };
    let outbox =
        count("SELECT COUNT(*) AS n FROM email_outbox WHERE status IN ('pending', 'sending')")
            .await?;
    // Older builds (the baseline of a before/after run) record no reset requests.
    let unresolved = count("SELECT COUNT(*) AS n FROM reset_requests")
        .await
        .unwrap_or(0);
    db.close().await.ok();
    Ok(outbox + unresolved)
}
