//! `session-cache`: the signed-in read with and without the session cache, and what a revocation
//! costs once every replica's cache must have applied it before the answer.
//!
//! On each database: customers seeded as an import brings them, each with one live session and
//! a token. Then
//! - **`customer`, cache off** (`LATCHKEY_SESSION_CACHE_SIZE=0`, the baseline) and **on**: req/s,
//!   p50/p99, and database statements per request (the server's own counter);
//! - **memory per cached session**: the server's RSS before and after one request per token;
//! - **Force Sign In's latency** (p50/p99) with one replica, and on PostgreSQL two and three
//!   (each holding the customer's session in its cache);
//! - on PostgreSQL, **a bulk Force Sign In of every customer across two replicas**: the job's
//!   time, then a sample of tokens refused on both.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use domain::token::{TokenCodec, TokenKind};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Process, admin_scale, free_addr,
    load::{self, post},
    rss_kib, seed,
};

const ME: &str = "{ customer { id email } }";

pub async fn run(
    customers: usize,
    seconds: u64,
    connections: usize,
    probes: usize,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let (dir, backends) = admin_scale::backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!("\n## {name}: the session cache, {customers} customers each signed in once");
        let result = backend(&url, &dir, customers, seconds, connections, probes).await;
        if let (Some(admin), true) = (postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        result?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

/// Every seeded session as (customer id, token).
async fn tokens(url: &str) -> anyhow::Result<Vec<(Uuid, String)>> {
    use sea_orm::ConnectionTrait;
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT id, customer_id FROM access_tokens ORDER BY customer_id",
        ))
        .await?;
    db.close().await.ok();
    let codec =
        TokenCodec::new(admin_scale::SECRET.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // HS256 with the legacy secret, issued an hour ago: before the first Ed25519 key, which
    // the seeding made (so the server honours them as tokens from before the key ring).
    let now = Utc::now();
    let issued = now - chrono::Duration::hours(1);
    rows.iter()
        .map(|r| {
            let session: Uuid = r.try_get("", "id")?;
            let customer: Uuid = r.try_get("", "customer_id")?;
            let token = codec
                .sign(
                    TokenKind::Customer,
                    customer,
                    domain::SessionId::from_uuid(session),
                    issued,
                    now + chrono::Duration::hours(2),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((customer, token))
        })
        .collect()
}

fn env(
    url: &str,
    dir: &std::path::Path,
    addr: SocketAddr,
    metrics: SocketAddr,
    cache: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", metrics.to_string()),
        ("LATCHKEY_JWT_SECRET", admin_scale::SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
        (
            "LATCHKEY_SESSION_CACHE_SIZE",
            if cache { "1000000" } else { "0" }.to_owned(),
        ),
    ]
}

async fn statements(metrics: SocketAddr) -> f64 {
    let Ok(res) = get_text(metrics, "/metrics").await else {
        return 0.0;
    };
    res.lines()
        .find_map(|l| l.strip_prefix("latchkey_db_statements_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(load::get(addr, path)).await?;
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn customer_load(addr: SocketAddr, tokens: &Arc<Vec<String>>) -> load::MakeRequest {
    let tokens = tokens.clone();
    let body = json!({ "query": ME }).to_string();
    Arc::new(move |n| {
        post(
            addr,
            "/graphql",
            body.clone(),
            Some(&tokens[n as usize % tokens.len()]),
        )
    })
}

/// One signed-in request per token, 32 at a time.
async fn warm(addr: SocketAddr, tokens: &[String]) -> anyhow::Result<()> {
    use futures::StreamExt;
    let failures: Vec<String> = futures::stream::iter(tokens.iter().cloned())
        .map(|t| async move { admin_scale::gql(addr, &t, ME, json!({})).await })
        .buffer_unordered(32)
        .filter_map(|r| {
            std::future::ready(match r {
                Ok(v) if v["errors"].is_null() => None,
                Ok(v) => Some(v.to_string()),
                Err(e) => Some(e.to_string()),
            })
        })
        .collect()
        .await;
    anyhow::ensure!(
        failures.is_empty(),
        "{} warm-up requests failed, the first: {}",
        failures.len(),
        failures[0]
    );
    Ok(())
}

async fn signed_in_read(
    label: &str,
    addr: SocketAddr,
    metrics: SocketAddr,
    tokens: &Arc<Vec<String>>,
    seconds: u64,
    connections: usize,
) -> f64 {
    let before = statements(metrics).await;
    let stats = load::run(
        addr,
        customer_load(addr, tokens),
        connections,
        Duration::from_secs(seconds),
    )
    .await;
    let used = statements(metrics).await - before;
    println!(
        "  `customer`, {label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, {:.3} statements per request",
        stats.rps(),
        stats.p50_ms,
        stats.p99_ms,
        stats.errors,
        used / stats.requests.max(1) as f64
    );
    stats.rps()
}

fn report(what: &str, ms: &mut [f64]) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what}: n={}, p50 {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
        ms.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Force Sign In of each of `customers` in turn, each cached on every replica first: ms each.
async fn revocations(
    replicas: &[SocketAddr],
    admin: &str,
    customers: &[(Uuid, String)],
) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::new();
    for (id, token) in customers {
        for r in replicas {
            let res = admin_scale::gql(*r, token, ME, json!({})).await?;
            anyhow::ensure!(res["errors"].is_null(), "warm: {res}");
        }
        let sent = Instant::now();
        let res = admin_scale::gql(
            replicas[0],
            admin,
            "mutation($c: ID!) { revokeCustomerTokens(customerId: $c) { revokedCount } }",
            json!({"c": id.to_string()}),
        )
        .await?;
        ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(res["errors"].is_null(), "revokeCustomerTokens: {res}");
        for r in replicas {
            let res = admin_scale::gql(*r, token, ME, json!({})).await?;
            anyhow::ensure!(
                res["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED",
                "a revoked token was honoured by {r}: {res}"
            );
        }
    }
    Ok(ms)
}

async fn backend(
    url: &str,
    dir: &std::path::Path,
    customers: usize,
    seconds: u64,
    connections: usize,
    probes: usize,
) -> anyhow::Result<()> {
    admin_scale::seed_customers_timed(url, customers, 0, admin_scale::Times::Shared).await?;
    admin_scale::seed_sessions(url, customers).await?;
    let admin = std::fs::read_to_string(std::env::temp_dir().join("latchkey-bench-admin"))?;
    let all = tokens(url).await?;
    let postgres = url.starts_with("postgres");
    // Three groups of `probes` customers for the Force Sign In timings (one, two and three
    // replicas); every other session carries the load.
    let probes = probes.clamp(1, all.len() / 4);
    let (probe_customers, rest) = all.split_at(probes * 3);
    let load_tokens: Arc<Vec<String>> = Arc::new(rest.iter().map(|(_, t)| t.clone()).collect());

    // Before: every signed-in check reads its session.
    {
        let (addr, metrics) = (free_addr()?, free_addr()?);
        let _server = Process::start(
            &["server"],
            &env(url, dir, addr, metrics, false),
            addr,
            "/readyz",
        )
        .await?;
        warm(addr, &load_tokens[..load_tokens.len().min(2_000)]).await?;
        signed_in_read(
            "cache off (baseline)",
            addr,
            metrics,
            &load_tokens,
            seconds,
            connections,
        )
        .await;
    }

    // After: the cache, warmed with every session.
    let (addr, metrics) = (free_addr()?, free_addr()?);
    let server = Process::start(
        &["server"],
        &env(url, dir, addr, metrics, true),
        addr,
        "/readyz",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.pid().unwrap_or(0);
    let before = rss_kib(pid, "VmRSS:");
    let started = Instant::now();
    warm(addr, &load_tokens).await?;
    let after = rss_kib(pid, "VmRSS:");
    println!(
        "  warmed {} sessions in {:.1} s: RSS {:.0} → {:.0} MiB, {:.0} bytes per cached session",
        load_tokens.len(),
        started.elapsed().as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before) * 1024) as f64 / load_tokens.len() as f64
    );
    signed_in_read(
        "cache on",
        addr,
        metrics,
        &load_tokens,
        seconds,
        connections,
    )
    .await;

    // Force Sign In with one, two and three replicas.
    let mut groups = probe_customers.chunks(probes);
    let mut one = revocations(&[addr], &admin, groups.next().unwrap_or_default()).await?;
    report("Force Sign In, one replica", &mut one);
    if postgres {
        let mut extra = Vec::new();
        let mut addrs = vec![addr];
        for n in 2..=3 {
            let (a, m) = (free_addr()?, free_addr()?);
            extra
                .push(Process::start(&["server"], &env(url, dir, a, m, true), a, "/readyz").await?);
            addrs.push(a);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut ms = revocations(&addrs, &admin, groups.next().unwrap_or_default()).await?;
            report(&format!("Force Sign In, {n} replicas"), &mut ms);
        }
        // Bulk Force Sign In of every customer across two replicas.
        drop(extra.pop());
        let sample: Vec<String> = load_tokens.iter().step_by(97).cloned().collect();
        warm(addrs[1], &sample).await?;
        let started = Instant::now();
        let res = admin_scale::gql(
            addr,
            &admin,
            "mutation { startBulkAction(action: FORCE_SIGN_IN, selection: {filter: {}}) { id total } }",
            json!({}),
        )
        .await?;
        let id = res["data"]["startBulkAction"]["id"].clone();
        let total = res["data"]["startBulkAction"]["total"]
            .as_u64()
            .unwrap_or(0);
        loop {
            let res = admin_scale::gql(
                addr,
                &admin,
                "query($id: ID!) { bulkJob(id: $id) { status } }",
                json!({"id": id}),
            )
            .await?;
            if res["data"]["bulkJob"]["status"] == "FINISHED" {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "the bulk job did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = started.elapsed().as_secs_f64();
        let mut honoured = 0;
        for t in &sample {
            for (i, r) in addrs[..2].iter().enumerate() {
                let res = admin_scale::gql(*r, t, ME, json!({})).await?;
                if res["errors"].is_null() {
                    honoured += 1;
                    let id = res["data"]["customer"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    println!("    a revoked session honoured by replica {i}: customer {id}");
                }
            }
        }
        println!(
            "  bulk Force Sign In of {total} customers with two replicas: {took:.1} s \
             ({:.0} customers/s); {honoured} of {} sampled tokens honoured afterwards on either replica",
            total as f64 / took,
            sample.len() * 2
        );
    }
    drop(server);
    Ok(())
}
