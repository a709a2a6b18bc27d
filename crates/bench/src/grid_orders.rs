//! `latchkey-bench grid-orders`: the grid's pages in every order it offers, on the data shapes
//! imports bring (one shared `created_at`, dates without times) as well as distinct times,
//! measured twice in one run on the same rows: with the indexes as they were before
//! migration 000016 (`created_at` alone) and with the indexes of every order
//! (`(created_at, id)`, `(lastname, firstname, id)`, `(email_key, id)`), each after ANALYZE.
//! One connection, sequential requests: the time an admin waits for a page.

use std::{sync::Arc, time::Duration};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    Process,
    admin_scale::{SECRET, Times, gql, seed_customers_timed, seed_sessions},
    free_addr, load,
    load::post,
    seed,
};

/// The pages: (label, filter, sort).
fn cases() -> Vec<(&'static str, Value, Value)> {
    let created = json!({"field": "CREATED_AT", "direction": "DESC"});
    let name = json!({"field": "NAME", "direction": "ASC"});
    let email = json!({"field": "EMAIL", "direction": "ASC"});
    vec![
        ("first page (newest first)", json!({}), created.clone()),
        ("sort by name", json!({}), name.clone()),
        ("sort by email", json!({}), email.clone()),
        (
            "search a whole address",
            json!({"search": "user1234@bench.example"}),
            created.clone(),
        ),
        (
            "search a rare fragment, by name",
            json!({"search": "user12345"}),
            name,
        ),
        (
            "search a common name (2,000), by email",
            json!({"search": "bench417"}),
            email,
        ),
        (
            "search with no match",
            json!({"search": "nobody-at-all"}),
            created,
        ),
    ]
}

const OLD: &[&str] = &["CREATE INDEX idx_customers_created_at ON customers (created_at)"];
const NEW: &[&str] = &[
    "CREATE INDEX idx_customers_created_at_id ON customers (created_at, id)",
    "CREATE INDEX idx_customers_name_id ON customers (lastname, firstname, id)",
    "CREATE INDEX idx_customers_email_key_id ON customers (email_key, id)",
];

async fn indexes(url: &str, old: bool) -> anyhow::Result<()> {
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    for name in [
        "idx_customers_created_at",
        "idx_customers_created_at_id",
        "idx_customers_name_id",
        "idx_customers_email_key_id",
    ] {
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
            .await?;
    }
    for sql in if old { OLD } else { NEW } {
        db.execute_unprepared(sql).await?;
    }
    db.execute_unprepared("ANALYZE").await?;
    db.close().await.ok();
    Ok(())
}

async fn measure(url: &str, dir: &std::path::Path, label: &str) -> anyhow::Result<Vec<f64>> {
    let token = std::fs::read_to_string(std::env::temp_dir().join("latchkey-bench-admin"))?;
    let addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", "off".to_owned()),
        ("LATCHKEY_JWT_SECRET", SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
    ];
    let server = Process::start(&["server"], &env, addr, "/readyz").await?;
    let query = "query($f: CustomerFilter, $s: CustomerSort) { customers(first: 20, filter: $f, sort: $s) { edges { node { id email } } } }";
    let mut p50s = Vec::new();
    for (case, filter, sort) in cases() {
        let answer = gql(addr, &token, query, json!({"f": filter, "s": sort})).await?;
        anyhow::ensure!(answer["errors"].is_null(), "{case}: {answer}");
        let body = json!({"query": query, "variables": {"f": filter, "s": sort}}).to_string();
        let token = token.clone();
        let stats = load::run(
            addr,
            Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&token))),
            1,
            Duration::from_secs(4),
        )
        .await;
        println!(
            "| {label} | {case} | {:.1} | {:.2} | {:.2} |",
            stats.rps(),
            stats.p50_ms,
            stats.p99_ms
        );
        p50s.push(stats.p50_ms);
    }
    drop(server);
    Ok(p50s)
}

pub async fn run(
    customers: usize,
    times: Times,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let (dir, backends) = crate::admin_scale::backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!("\n## {name}: {customers} customers, created_at {times:?}");
        let result = async {
            seed_customers_timed(&url, customers, 0, times).await?;
            seed_sessions(&url, 1).await?;
            println!("\n| indexes | page | req/s | p50 ms | p99 ms |");
            println!("|---|---|---:|---:|---:|");
            indexes(&url, true).await?;
            let before = measure(&url, &dir, "created_at only (before)").await?;
            indexes(&url, false).await?;
            let after = measure(&url, &dir, "every order (after)").await?;
            println!("\n| page | p50 before ÷ after |");
            println!("|---|---:|");
            for ((case, _, _), (b, a)) in cases().iter().zip(before.iter().zip(&after)) {
                println!("| {case} | {:.1}× |", b / a.max(0.001));
            }
            anyhow::Ok(())
        }
        .await;
        if let (Some(admin), true) = (postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        result?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
