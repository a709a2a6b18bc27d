//! The admin side at a real store's size: `latchkey-bench admin-scale` seeds millions of
//! customers (through the import's own writer), some with a live session, starts the real
//! server, and measures
//! - grid searches and the grid's first page with `totalCount`, at 1 and 16 connections;
//! - bulk Force Sign In over every signed-in customer: customers/s and the server's peak RSS;
//! - a bulk reset email campaign: job customers/s, then how long a storefront reset requested
//!   while the campaign's mail drains takes to arrive, and the drain rate.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use domain::{
    admin::{AuditAction, NewAudit},
    customer::Locale,
    email::Email,
    import::{ImportedCustomer, OnConflict},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Process, free_addr, load, load::post, seed, with_peak_rss};

pub(crate) const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

/// How the seeded customers' `created_at` look: what users bring, not only what is convenient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Times {
    /// One second apart (a store that recorded each sign-up).
    Distinct,
    /// All one time: an import from a CSV without a `created_at` column.
    Shared,
    /// Dates without times (exports that carry dates only): about 1,000 customers a day.
    DateOnly,
}

impl Times {
    fn of(self, now: chrono::DateTime<Utc>, i: usize) -> chrono::DateTime<Utc> {
        match self {
            Self::Distinct => now - chrono::Duration::seconds(i as i64),
            Self::Shared => now,
            Self::DateOnly => {
                let day = (now - chrono::Duration::days((i / 1000) as i64)).date_naive();
                day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
            }
        }
    }
}

/// Customers `user{i}@bench.example`, newest first by `i`; the first `campaign` have the last
/// name "Campaign" (what the bulk reset selects by search).
async fn seed_customers(url: &str, customers: usize, campaign: usize) -> anyhow::Result<()> {
    seed_customers_timed(url, customers, campaign, Times::Distinct).await
}

pub(crate) async fn seed_customers_timed(
    url: &str,
    customers: usize,
    campaign: usize,
    times: Times,
) -> anyhow::Result<()> {
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    persistence::migrate(&db).await?;
    let store = persistence::Stores::new(db.clone()).imports;
    let now = Utc::now();
    let mut session = store
        .begin_import(now, persistence::DEFAULT_PG_WRITERS)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    for chunk in (0..customers).collect::<Vec<_>>().chunks(5000) {
        let rows = chunk
            .iter()
            .map(|&i| {
                Ok(ImportedCustomer {
                    line: i as u64 + 1,
                    id: Uuid::now_v7(),
                    email: Email::parse(&format!("user{i}@bench.example"))
                        .map_err(|_| anyhow::anyhow!("email"))?,
                    firstname: format!("User{i}"),
                    lastname: if i < campaign {
                        "Campaign".to_owned()
                    } else {
                        format!("Bench{}", i % 1000)
                    },
                    locale: Locale::En,
                    created_at: Some(times.of(now, i)),
                    password_hash: String::new(),
                    external_id: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        session
            .stage(rows)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    session
        .finish(
            OnConflict::Skip,
            false,
            0,
            NewAudit::by_operator("bench".into(), AuditAction::ImportCustomers, now),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "  seeded {customers} customers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.close().await.ok();
    Ok(())
}

/// One live session for each of the `n` newest customers.
pub(crate) async fn seed_sessions(url: &str, n: usize) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    let started = Instant::now();
    let backend = db.get_database_backend();
    let ids: Vec<Uuid> = db
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            format!("SELECT id FROM customers ORDER BY created_at DESC LIMIT {n}"),
        ))
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?;
    let now = Utc::now();
    for chunk in ids.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|c| {
                vec![
                    Uuid::now_v7().into(),
                    (*c).into(),
                    now.into(),
                    (now + chrono::Duration::hours(6)).into(),
                    now.into(),
                ]
            })
            .collect();
        db.execute(&seed::insert(
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
    println!(
        "  seeded {n} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let token = seed::admin_token(url, SECRET, &db).await?;
    std::fs::write(std::env::temp_dir().join("latchkey-bench-admin"), token)?;
    db.execute_unprepared("UPDATE settings SET reset_request_limit_method = 'OFF' WHERE id = 1")
        .await?;
    if backend == sea_orm::DatabaseBackend::Postgres {
        db.execute_unprepared("ANALYZE").await?;
    }
    db.close().await.ok();
    Ok(())
}

/// The times each recipient's messages arrived at the sink.
pub(crate) type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// An SMTP sink that notes when each recipient's messages arrived.
pub(crate) async fn sink() -> anyhow::Result<(SocketAddr, Arrivals)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen: Arrivals = Arc::default();
    let store = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                if write.write_all(b"220 bench ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut rcpt = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-bench\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt = line[8..].trim().trim_matches(['<', '>']).to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        if write.write_all(b"354 go ahead\r\n").await.is_err() {
                            return;
                        }
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        store
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(std::mem::take(&mut rcpt))
                            .or_default()
                            .push(Instant::now());
                        b"250 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, seen))
}

pub(crate) async fn gql(
    addr: SocketAddr,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let body = json!({"query": query, "variables": variables}).to_string();
    let req = post(addr, "/graphql", body, Some(token));
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// Starts a bulk job and waits for it to finish: (customers, seconds, peak RSS MiB).
async fn bulk_job(
    addr: SocketAddr,
    pid: Option<u32>,
    token: &str,
    action: &str,
    filter: Value,
) -> anyhow::Result<(u64, f64, f64)> {
    let started = Instant::now();
    let (out, rss) = with_peak_rss(pid, async {
        let res = gql(
            addr,
            token,
            "mutation($a: BulkAction!, $f: CustomerFilter!) { startBulkAction(action: $a, selection: {filter: $f}) { id total } }",
            json!({"a": action, "f": filter}),
        )
        .await?;
        let id = res["data"]["startBulkAction"]["id"].clone();
        let total = res["data"]["startBulkAction"]["total"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("startBulkAction: {res}"))?;
        loop {
            let res = gql(
                addr,
                token,
                "query($id: ID!) { bulkJob(id: $id) { status processed } }",
                json!({"id": id}),
            )
            .await?;
            if res["data"]["bulkJob"]["status"] == "FINISHED" {
                return Ok::<_, anyhow::Error>(total);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    Ok((out?, started.elapsed().as_secs_f64(), rss))
}

/// A scratch folder, and the databases to run on: a SQLite file in it (unless `skip_sqlite`)
/// and a fresh PostgreSQL database on the server `postgres` names.
pub(crate) async fn backends(
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<(std::path::PathBuf, Vec<(&'static str, String)>)> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut backends = Vec::new();
    if !skip_sqlite {
        backends.push((
            "SQLite",
            format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
        ));
    }
    if let Some(pg) = postgres {
        backends.push(("PostgreSQL", seed::fresh_postgres(pg).await?));
    }
    Ok((dir, backends))
}

pub async fn run(
    customers: usize,
    sessions: usize,
    campaign: usize,
    grid: bool,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let (dir, backends) = backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!("\n## {name}: {customers} customers, {sessions} signed in");
        let result = backend(&url, &dir, customers, sessions, campaign, grid).await;
        if let (Some(admin), true) = (postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        result?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

async fn backend(
    url: &str,
    dir: &Path,
    customers: usize,
    sessions: usize,
    campaign: usize,
    run_grid: bool,
) -> anyhow::Result<()> {
    seed_customers(url, customers, campaign).await?;
    seed_sessions(url, sessions).await?;
    let token = std::fs::read_to_string(std::env::temp_dir().join("latchkey-bench-admin"))?;
    let (smtp, seen) = sink().await?;
    let addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", "off".to_owned()),
        ("LATCHKEY_JWT_SECRET", SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
        ("LATCHKEY_SMTP_URL", format!("smtp://{smtp}")),
    ];
    let server = Process::start(&["server"], &env, addr, "/readyz").await?;
    let pid = server.pid();

    if run_grid {
        grid_searches(addr, &token).await?;
    }

    let (n, seconds, rss) = bulk_job(
        addr,
        pid,
        &token,
        "FORCE_SIGN_IN",
        json!({"signedIn": true}),
    )
    .await?;
    println!(
        "\nbulk Force Sign In: {n} customers in {seconds:.1} s = {:.0} customers/s, server peak RSS {rss:.0} MiB",
        n as f64 / seconds
    );

    let (n, seconds, rss) = bulk_job(
        addr,
        pid,
        &token,
        "SEND_RESET_EMAIL",
        json!({"search": "campaign"}),
    )
    .await?;
    println!(
        "bulk reset email: {n} customers in {seconds:.1} s = {:.0} customers/s (tokens and mail queued), server peak RSS {rss:.0} MiB",
        n as f64 / seconds
    );
    // While the campaign's mail drains: a storefront reset for a customer outside it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vip = format!("user{}@bench.example", customers - 1);
    let asked = Instant::now();
    gql(
        addr,
        &token,
        "mutation($e: String!) { requestPasswordReset(email: $e) }",
        json!({"e": vip}),
    )
    .await?;
    let waited = loop {
        if let Some(at) = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vip)
            .and_then(|times| times.first().copied())
        {
            break at.duration_since(asked).as_secs_f64();
        }
        anyhow::ensure!(
            asked.elapsed() < Duration::from_secs(120),
            "the storefront mail never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let sent_then = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!(
        "storefront reset during the campaign: delivered {waited:.2} s after the request, with {} of {n} campaign mails sent by then",
        sent_then.saturating_sub(1)
    );
    let drain = Instant::now();
    loop {
        let sent = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
        if sent > n as usize || drain.elapsed() > Duration::from_secs(300) {
            println!(
                "campaign drained: {} mails at {:.0} mails/s after the request",
                sent.saturating_sub(1),
                (sent - sent_then) as f64 / drain.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    Ok(())
}

/// The grid's searches an admin types: a whole address (one match), a number that matches a
/// tenth of a percent, a last name shared by 2,000, a common fragment, two letters, no match;
/// at 1 and 16 connections.
async fn grid_searches(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let searches = [
        "user1234567@bench.example",
        "user12345",
        "bench417",
        "user12",
        "us",
        "nobody-at-all",
    ];
    println!("\n| query | connections | req/s | p50 ms | p99 ms | totalCount |");
    println!("|---|---:|---:|---:|---:|---|");
    let grid = |filter: Value| {
        json!({"query": "query($f: CustomerFilter) { customers(first: 20, filter: $f) { totalCount totalCountIsEstimate edges { node { id email } } } }", "variables": {"f": filter}}).to_string()
    };
    let mut cases: Vec<(String, Value)> = searches
        .iter()
        .map(|s| (format!("search `{s}`"), json!({"search": s})))
        .collect();
    cases.push(("first page, no filter".into(), json!({})));
    cases.push(("signed in now".into(), json!({"signedIn": true})));
    for (label, filter) in cases {
        let body = grid(filter.clone());
        let answer = gql(
            addr,
            token,
            "query($f: CustomerFilter) { customers(first: 20, filter: $f) { totalCount totalCountIsEstimate } }",
            json!({"f": filter}),
        )
        .await?;
        let c = &answer["data"]["customers"];
        let count = format!(
            "{}{}",
            if c["totalCountIsEstimate"] == true {
                "≈"
            } else {
                ""
            },
            c["totalCount"]
        );
        for connections in [1, 16] {
            let body = body.clone();
            let token = token.to_owned();
            let stats = load::run(
                addr,
                Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&token))),
                connections,
                Duration::from_secs(5),
            )
            .await;
            println!(
                "| {label} | {connections} | {:.0} | {:.2} | {:.2} | {count} |",
                stats.rps(),
                stats.p50_ms,
                stats.p99_ms
            );
        }
    }

    Ok(())
}
