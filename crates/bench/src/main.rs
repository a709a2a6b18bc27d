//! `latchkey-bench`: seeds a database (SQLite file and PostgreSQL), starts the real server in a
//! release build as a process of its own, drives it over HTTP with a fixed number of
//! connections for a fixed time, and prints requests/s, p50, p99 and the server's peak RSS for
//! each scenario — each as a ratio to a ceiling measured in the same run (a bare axum
//! endpoint, a minimal async-graphql + sea-orm point lookup, raw argon2id throughput, a bare
//! two-insert transaction), so figures stay comparable on a noisy machine.
//!
//! Run: `cargo run --release -p latchkey-bench -- --postgres postgres://postgres@127.0.0.1/postgres`

#![allow(clippy::print_stdout)]

mod admin_scale;
mod ceilings;
mod grid_orders;
mod hash_budget;
mod import;
mod load;
mod pgbouncer;
mod seed;
mod smtp_sink;

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::load::{Stats, get, post};

#[derive(Parser)]
#[command(about = "Latchkey's load benchmark")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections for the throughput scenarios.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Customers to seed.
    #[arg(long, default_value_t = 100_000)]
    customers: usize,
    /// A PostgreSQL URL whose server the bench may create a database on; without it only
    /// SQLite runs.
    #[arg(long, env = "LATCHKEY_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Run only the scenarios whose name contains this text (the ceilings they are compared
    /// with are still measured), e.g. `--only customer` to profile one scenario alone.
    #[arg(long)]
    only: Option<String>,
    /// Skip SQLite (with `--postgres`, run PostgreSQL only).
    #[arg(long)]
    skip_sqlite: bool,
    /// A PgBouncer 1.21+ binary (`.ci/pgbouncer.sh` prints one): with `--postgres`, the
    /// signed-in `customer` query is measured a second time through it, in transaction mode.
    #[arg(long, env = "LATCHKEY_BENCH_PGBOUNCER")]
    pgbouncer: Option<std::path::PathBuf>,
}

impl Cli {
    fn wants(&self, scenario: &str) -> bool {
        self.only.as_deref().is_none_or(|o| scenario.contains(o))
    }
}

#[derive(Subcommand)]
enum Mode {
    /// (internal) the real Latchkey server, configured from the environment.
    Server,
    /// (internal) ceiling: bare axum JSON endpoint.
    CeilingAxum { addr: SocketAddr },
    /// (internal) ceiling: minimal async-graphql + sea-orm point lookup and two-insert tx.
    CeilingGraphql { addr: SocketAddr, url: String },
    /// `latchkey import customers` of a generated file: rows/s and peak RSS against the
    /// database's own bulk ingest, then sign-in time per legacy format.
    Import {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Each kind of imported hash timed as a multiple of one native argon2id verification,
    /// beside the estimate the server's hash budget decides with.
    HashBudget {
        /// One run per recipe, and none of the multi-second ones.
        #[arg(long)]
        quick: bool,
    },
    /// The grid's pages in every order, on import-shaped data, before and after the indexes
    /// of every order (one run, the same rows).
    GridOrders {
        #[arg(long, default_value_t = 2_000_000)]
        customers: usize,
        /// distinct, shared (one `created_at` for all) or date-only.
        #[arg(long, value_enum, default_value = "shared")]
        times: admin_scale::Times,
    },
    /// (internal) `latchkey import customers FILE`, configured from the environment.
    ImportChild { file: std::path::PathBuf },
    /// The admin side at a store's size: grid searches and counts at 1 and 16 connections,
    /// bulk Force Sign In over the signed-in customers, a bulk reset campaign and a
    /// storefront reset delivered while it drains.
    AdminScale {
        #[arg(long, default_value_t = 2_000_000)]
        customers: usize,
        /// Customers with a live session (bulk Force Sign In selects them).
        #[arg(long, default_value_t = 1_000_000)]
        sessions: usize,
        /// Customers the bulk reset campaign selects.
        #[arg(long, default_value_t = 100_000)]
        campaign: usize,
        /// Skip the grid's searches (bulk jobs only).
        #[arg(long)]
        no_grid: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Some(Mode::Server) => {
            let config = latchkey::config::Config::load().map_err(|e| anyhow::anyhow!("{e}"))?;
            let server = latchkey::build(&config, Arc::new(domain::clock::SystemClock)).await?;
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            latchkey::serve(server, listener, latchkey::shutdown_signal()).await
        }
        Some(Mode::CeilingAxum { addr }) => ceilings::axum_json(addr).await,
        Some(Mode::CeilingGraphql { addr, url }) => ceilings::graphql_lookup(addr, url).await,
        Some(Mode::Import { rows }) => {
            import::run(rows, cli.postgres.as_deref(), cli.skip_sqlite).await
        }
        Some(Mode::HashBudget { quick }) => hash_budget::run(quick),
        Some(Mode::GridOrders { customers, times }) => {
            grid_orders::run(customers, times, cli.postgres.as_deref(), cli.skip_sqlite).await
        }
        Some(Mode::ImportChild { ref file }) => import::child(file.clone()).await,
        Some(Mode::AdminScale {
            customers,
            sessions,
            campaign,
            no_grid,
        }) => {
            admin_scale::run(
                customers,
                sessions,
                campaign,
                !no_grid,
                cli.postgres.as_deref(),
                cli.skip_sqlite,
            )
            .await
        }
        None => run_all(&cli).await,
    }
}

/// A child process of this binary, killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    async fn start(
        args: &[&str],
        env: &[(&str, String)],
        addr: SocketAddr,
        ready: &str,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args)
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let p = Self { child };
        let client = async || -> bool {
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return false;
            };
            let Ok((mut s, c)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            else {
                return false;
            };
            tokio::spawn(c);
            s.send_request(get(addr, ready))
                .await
                .is_ok_and(|r| r.status() == 200 || r.status() == 405)
        };
        for _ in 0..200 {
            if client().await {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("{args:?} did not start")
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs a load while sampling the server's RSS; returns the stats and the peak RSS in MiB.
async fn measure(
    server: Option<u32>,
    addr: SocketAddr,
    make: load::MakeRequest,
    connections: usize,
    seconds: u64,
) -> (Stats, f64) {
    with_peak_rss(
        server,
        load::run(addr, make, connections, Duration::from_secs(seconds)),
    )
    .await
}

/// Runs `work`, sampling the server's RSS every 25 ms; its output and the peak, in MiB.
async fn with_peak_rss<T>(server: Option<u32>, work: impl Future<Output = T>) -> (T, f64) {
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = server.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    });
    let out = work.await;
    if let Some(s) = sampler {
        s.abort();
    }
    (
        out,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
    )
}

/// `requestPasswordReset(email)`, as a storefront sends it.
fn reset_request(
    addr: SocketAddr,
    email: &str,
) -> hyper::Request<http_body_util::Full<hyper::body::Bytes>> {
    post(
        addr,
        "/graphql",
        json!({"query": "mutation($e: String!) { requestPasswordReset(email: $e) }", "variables": {"e": email}}).to_string(),
        None,
    )
}

/// The timing scenario's class of the `n`-th request: 0 known, 1 unknown, at random but the same
/// in every run (splitmix64 of `n`).
fn timing_class(n: u64) -> usize {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) & 1) as usize
}

/// The server's `latchkey_db_statements_total`.
async fn statements(addr: SocketAddr) -> u64 {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let Ok((mut s, c)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
    else {
        return 0;
    };
    tokio::spawn(c);
    let Ok(res) = s.send_request(get(addr, "/metrics")).await else {
        return 0;
    };
    let Ok(body) = http_body_util::BodyExt::collect(res.into_body()).await else {
        return 0;
    };
    String::from_utf8_lossy(&body.to_bytes())
        .lines()
        .find(|l| l.starts_with("latchkey_db_statements_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Tokens the server signs itself (`generateCustomerToken` for `user0` …), one at a time.
async fn server_signed_tokens(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut s, c) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(c);
        let body = json!({"query": "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }",
            "variables": {"e": format!("user{i}@bench.example"), "p": seed::PASSWORD}});
        let res = s
            .send_request(post(addr, "/graphql", body.to_string(), None))
            .await?;
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await?
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        let token = value["data"]["generateCustomerToken"]["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("sign-in failed: {value}"))?;
        out.push(token.to_owned());
    }
    Ok(out)
}

/// Known addresses for `requestPasswordReset` start here, away from the customers whose seeded
/// reset tokens the `resetPassword` scenarios use (a new request supersedes them).
const KNOWN_FROM: usize = 10_000;

// Scenario names, also what `--only` matches.
const CUSTOMER: &str = "signed-in `customer` query";
const CUSTOMER_EDDSA: &str = "signed-in `customer` query, EdDSA tokens";
const CUSTOMER_PGBOUNCER: &str = "signed-in `customer` query, through PgBouncer (transaction mode)";
const INTROSPECT: &str = "`POST /introspect` of a live customer token";
const GRID: &str = "admin `customers(first: 100)`, all admin fields";
const GRID_SEARCH: &str = "admin grid with `search: \"user12\"`";
const REQUEST_RESET: &str = "`requestPasswordReset`, limits off";
const TIMING: &str = "`requestPasswordReset` known vs unknown";
const GENERATE: &str = "`generateCustomerToken`";
const RESET: &str = "`resetPassword`";
const RESET_256: &str = "`resetPassword`, 256 connections (memory)";
const REVOKE: &str = "`revokeCustomerTokens`";
const REPLICAS: &str = "two replicas";

/// `env` with `LATCHKEY_LISTEN` set to `addr`: another server on the same database.
fn listening_on<'a>(env: &[(&'a str, String)], addr: SocketAddr) -> Vec<(&'a str, String)> {
    env.iter()
        .map(|(k, v)| {
            let v = match *k {
                "LATCHKEY_LISTEN" => addr.to_string(),
                // Metrics are read from the first server only; others take any free port.
                "LATCHKEY_METRICS_LISTEN" => "127.0.0.1:0".to_owned(),
                _ => v.clone(),
            };
            (*k, v)
        })
        .collect()
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

struct Row {
    name: String,
    stats: Stats,
    rss_mib: f64,
    ceiling: String,
    ratio: f64,
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| scenario | req/s | p50 ms | p99 ms | errors | peak RSS MiB | ceiling | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {} | {:.2} |",
            r.name,
            r.stats.rps(),
            r.stats.p50_ms,
            r.stats.p99_ms,
            r.stats.errors,
            r.rss_mib,
            r.ceiling,
            r.ratio
        );
    }
}

/// Raw argon2id hashes per second with one blocking thread per core.
async fn argon2_ceiling(seconds: u64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..cores {
        handles.push(tokio::task::spawn_blocking(move || {
            let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).ok();
            let Some(params) = params else { return 0u64 };
            let argon = argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                params.clone(),
            );
            let mut memory = vec![argon2::Block::default(); params.block_count()];
            let mut out = [0u8; 32];
            let mut n = 0;
            while Instant::now() < deadline {
                if argon
                    .hash_password_into_with_memory(
                        b"bench-Password-1",
                        b"saltsaltsaltsalt",
                        &mut out,
                        &mut memory[..],
                    )
                    .is_ok()
                {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap_or(0);
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn run_all(cli: &Cli) -> anyhow::Result<()> {
    println!("# Latchkey load benchmark");
    println!(
        "\n{} cores, {} s per scenario, {} connections, {} customers seeded; load generator on the same machine.",
        std::thread::available_parallelism().map_or(0, usize::from),
        cli.seconds,
        cli.connections,
        cli.customers
    );

    let axum_addr = free_addr()?;
    let axum = Process::start(
        &["ceiling-axum", &axum_addr.to_string()],
        &[],
        axum_addr,
        "/json",
    )
    .await?;
    let (bare, _) = measure(
        None,
        axum_addr,
        Arc::new(move |_| get(axum_addr, "/json")),
        cli.connections,
        cli.seconds,
    )
    .await;
    drop(axum);
    println!(
        "bare axum JSON ceiling: {:.0} req/s (p50 {:.2} ms)",
        bare.rps(),
        bare.p50_ms
    );

    let dir =
        std::env::temp_dir().join(format!("latchkey-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut backends = Vec::new();
    if !cli.skip_sqlite {
        backends.push((
            "SQLite",
            format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
        ));
    }
    if let Some(pg) = &cli.postgres {
        backends.push(("PostgreSQL", seed::fresh_postgres(pg).await?));
    }
    for (name, url) in backends {
        let rows = backend(cli, &url, &dir, bare.rps())
            .await
            .with_context(|| format!("{name} run"));
        if let (Some(admin), true) = (&cli.postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        print_table(name, &rows?);
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

async fn backend(cli: &Cli, url: &str, dir: &Path, bare_rps: f64) -> anyhow::Result<Vec<Row>> {
    let secret = "bench-secret-0123456789abcdef0123456789abcdef".to_owned();
    let seeded = seed::seed(url, cli.customers, &secret).await?;
    let mut rows = Vec::new();

    // Ceilings on this database.
    let ceiling_addr = free_addr()?;
    let ceiling = Process::start(
        &["ceiling-graphql", &ceiling_addr.to_string(), url],
        &[],
        ceiling_addr,
        "/graphql",
    )
    .await?;
    // `field(id: …) { id email }` for each id in turn, posted to the ceiling server.
    let rotating = |field: &str, ids: &[uuid::Uuid]| -> load::MakeRequest {
        let bodies: Vec<String> = ids
            .iter()
            .map(|id| {
                json!({"query": format!("{{ {field}(id: \"{id}\") {{ id email }} }}")}).to_string()
            })
            .collect();
        Arc::new(move |n| {
            post(
                ceiling_addr,
                "/graphql",
                bodies[n as usize % bodies.len()].clone(),
                None,
            )
        })
    };
    // The same customers the signed-in scenario reads, in the same rotation: a ceiling that
    // always read one row would be answered from one hot page and flatter itself.
    let signed_in = &seeded.customer_ids[..seeded.customer_tokens.len()];
    let (lookup, _) = measure(
        None,
        ceiling_addr,
        rotating("customer", signed_in),
        cli.connections,
        cli.seconds,
    )
    .await;
    let (join, _) = measure(
        None,
        ceiling_addr,
        rotating("session", &seeded.session_ids),
        cli.connections,
        cli.seconds,
    )
    .await;
    let (tx, _) = measure(
        None,
        ceiling_addr,
        Arc::new(move |_| post(ceiling_addr, "/tx", "{}".into(), None)),
        cli.connections,
        cli.seconds,
    )
    .await;
    drop(ceiling);
    rows.push(Row {
        name: "ceiling: async-graphql + sea-orm point lookup".into(),
        ratio: lookup.rps() / bare_rps,
        stats: lookup.clone(),
        rss_mib: 0.0,
        ceiling: "bare axum".into(),
    });
    rows.push(Row {
        name: "same server, the signed-in check's SQL (session ⨝ customer) instead".into(),
        ratio: join.rps() / lookup.rps(),
        stats: join,
        rss_mib: 0.0,
        ceiling: "point lookup".into(),
    });
    rows.push(Row {
        name: "ceiling: sea-orm transaction, two inserts".into(),
        ratio: tx.rps() / bare_rps,
        stats: tx.clone(),
        rss_mib: 0.0,
        ceiling: "bare axum".into(),
    });

    // The real server.
    let addr = free_addr()?;
    let (smtp, delivered) = smtp_sink::start().await?;
    // Waits until the outbox is empty, so no scenario or ceiling shares the CPU with the mail
    // worker draining the previous one's mail; reports how fast it drained.
    let drain = |scenario: &'static str| {
        let delivered = delivered.clone();
        let url = url.to_owned();
        async move {
            let before = delivered.load(std::sync::atomic::Ordering::Relaxed);
            let backlog = seed::unsent_mail(&url).await.unwrap_or(0);
            let started = Instant::now();
            // The load generator hung up on every request in flight at the deadline: their
            // mail must still go out, and nothing may stay stuck behind a stray transaction.
            while seed::unsent_mail(&url).await.unwrap_or(0) > 0 {
                if started.elapsed() > Duration::from_secs(120) {
                    println!(
                        "{scenario}: OUTBOX DID NOT DRAIN: {} mails still queued 2 minutes after the load stopped",
                        seed::unsent_mail(&url).await.unwrap_or(-1)
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let after = started.elapsed().as_secs_f64();
            let sent = delivered.load(std::sync::atomic::Ordering::Relaxed) - before;
            println!(
                "{scenario}: {backlog} mails still queued when the load stopped (and hung up), all sent over SMTP {after:.1} s later, outbox empty; \
                 the worker sent {:.0} mails/s in that time",
                if after > 0.0 {
                    sent as f64 / after
                } else {
                    0.0
                }
            );
        }
    };
    let metrics_addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", metrics_addr.to_string()),
        ("LATCHKEY_JWT_SECRET", secret.clone()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
        ("LATCHKEY_HASH_QUEUE", "4096".to_owned()),
        ("LATCHKEY_SMTP_URL", format!("smtp://{smtp}")),
    ];
    let server = Process::start(&["server"], &env, addr, "/readyz").await?;
    let pid = server.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = pid.map_or(0.0, |p| rss_kib(p, "VmRSS:") as f64 / 1024.0);
    println!("\nserver idle RSS: {idle:.0} MiB");

    let tokens = Arc::new(seeded.customer_tokens.clone());
    let body = json!({"query": "{ customer { id email } }"}).to_string();
    if cli.wants(CUSTOMER) {
        let make: load::MakeRequest = {
            let tokens = tokens.clone();
            Arc::new(move |n| {
                post(
                    addr,
                    "/graphql",
                    body.clone(),
                    Some(&tokens[n as usize % tokens.len()]),
                )
            })
        };
        let (stats, rss) = measure(pid, addr, make, cli.connections, cli.seconds).await;
        rows.push(Row {
            name: CUSTOMER.into(),
            ratio: stats.rps() / lookup.rps(),
            stats,
            rss_mib: rss,
            ceiling: "point lookup".into(),
        });
    }

    // The same query on a second server whose pool goes through PgBouncer in transaction mode,
    // with as many server sessions as the direct server's pool (8).
    if let (Some(binary), true) = (&cli.pgbouncer, url.starts_with("postgres"))
        && cli.wants(CUSTOMER_PGBOUNCER)
    {
        let bouncer = pgbouncer::start(binary, dir, url, 8, free_addr()?).await?;
        let bounced_addr = free_addr()?;
        let mut bounced_env = listening_on(&env, bounced_addr);
        for (k, v) in bounced_env.iter_mut() {
            if *k == "DATABASE_URL" {
                *v = bouncer.url.clone();
            }
        }
        bounced_env.push(("LATCHKEY_DATABASE_POOLER", "transaction".to_owned()));
        let bounced = Process::start(&["server"], &bounced_env, bounced_addr, "/readyz").await?;
        let body = json!({"query": "{ customer { id email } }"}).to_string();
        let make: load::MakeRequest = {
            let tokens = tokens.clone();
            Arc::new(move |n| {
                post(
                    bounced_addr,
                    "/graphql",
                    body.clone(),
                    Some(&tokens[n as usize % tokens.len()]),
                )
            })
        };
        let cpu_before = bouncer.cpu_seconds();
        let (stats, rss) = measure(
            bounced.pid(),
            bounced_addr,
            make,
            cli.connections,
            cli.seconds,
        )
        .await;
        let cpu = bouncer.cpu_seconds() - cpu_before;
        println!(
            "PgBouncer used {cpu:.1} CPU seconds in the {} s run ({:.0} % of one core; it runs on one thread)",
            cli.seconds,
            cpu / cli.seconds as f64 * 100.0
        );
        let direct = rows
            .iter()
            .find(|r| r.name == CUSTOMER)
            .map_or(0.0, |r| r.stats.rps());
        rows.push(Row {
            name: CUSTOMER_PGBOUNCER.into(),
            ratio: if direct > 0.0 {
                stats.rps() / direct
            } else {
                0.0
            },
            stats,
            rss_mib: rss,
            ceiling: "the same query, direct".into(),
        });
        drop(bounced);
        drop(bouncer);
    }

    // The seeded tokens above are HS256, made with the legacy secret before the server's first
    // Ed25519 key (so they verify as legacy tokens); the same query with tokens the server
    // signed itself (EdDSA, found by kid), on the same server in the same run. Then the same
    // tokens through `/introspect`, as another service of the store would check them.
    if cli.wants(CUSTOMER_EDDSA) || cli.wants(INTROSPECT) {
        let signed = Arc::new(server_signed_tokens(addr, 200).await?);
        if cli.wants(CUSTOMER_EDDSA) {
            let body = json!({"query": "{ customer { id email } }"}).to_string();
            let make: load::MakeRequest = {
                let signed = signed.clone();
                Arc::new(move |n| {
                    post(
                        addr,
                        "/graphql",
                        body.clone(),
                        Some(&signed[n as usize % signed.len()]),
                    )
                })
            };
            let (stats, rss) = measure(pid, addr, make, cli.connections, cli.seconds).await;
            let hs256 = rows
                .iter()
                .find(|r| r.name == CUSTOMER)
                .map_or(0.0, |r| r.stats.rps());
            rows.push(Row {
                name: CUSTOMER_EDDSA.into(),
                ratio: if hs256 > 0.0 {
                    stats.rps() / hs256
                } else {
                    0.0
                },
                stats,
                rss_mib: rss,
                ceiling: "the same query, HS256 tokens".into(),
            });
        }
        if cli.wants(INTROSPECT) {
            let config = latchkey::config::Config {
                database_url: url.to_owned(),
                jwt_secret: Some(latchkey::config::Secret::new(secret.clone())),
                ..latchkey::config::Config::default()
            };
            let (_, service_secret) = latchkey::introspect::services(&config)
                .await?
                .create(&format!("bench-{}", std::process::id()), false)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let name = format!("bench-{}", std::process::id());
            let basic = {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{name}:{}", service_secret.expose()))
            };
            let make: load::MakeRequest = {
                let signed = signed.clone();
                Arc::new(move |n| {
                    hyper::Request::post(format!("http://{addr}/introspect"))
                        .header("host", addr.to_string())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("authorization", format!("Basic {basic}"))
                        .body(http_body_util::Full::new(hyper::body::Bytes::from(
                            format!("token={}", signed[n as usize % signed.len()]),
                        )))
                        .unwrap_or_else(|_| {
                            hyper::Request::new(
                                http_body_util::Full::new(hyper::body::Bytes::new()),
                            )
                        })
                })
            };
            let (stats, rss) = measure(pid, addr, make, cli.connections, cli.seconds).await;
            let customer = rows
                .iter()
                .find(|r| r.name == CUSTOMER_EDDSA)
                .map_or(0.0, |r| r.stats.rps());
            rows.push(Row {
                name: INTROSPECT.into(),
                ratio: if customer > 0.0 {
                    stats.rps() / customer
                } else {
                    0.0
                },
                stats,
                rss_mib: rss,
                ceiling: "signed-in `customer`, EdDSA".into(),
            });
        }
    }

    let admin = seeded.admin_token.clone();
    // Statements per grid page, read from the server's own counter.
    for first in [10, 100] {
        if !cli.wants("admin grid") && !cli.wants(GRID) {
            break;
        }
        let before = statements(metrics_addr).await;
        let body = json!({"query": format!("{{ customers(first: {first}) {{ edges {{ node {{ id activeTokenCount lockedUntil passwordChangedAt lastResetRequestedAt }} }} }} }}")}).to_string();
        let admin = admin.clone();
        load::run(
            addr,
            Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&admin))),
            1,
            Duration::ZERO,
        )
        .await;
        println!(
            "admin grid, first: {first}, every admin field: {} SQL statements",
            statements(metrics_addr).await.saturating_sub(before)
        );
    }
    let grid = "{ customers(first: 100) { totalCount edges { node { id email activeTokenCount lockedUntil passwordChangedAt lastResetRequestedAt } } } }";
    for (label, query) in [
        (GRID, grid.to_owned()),
        (
            GRID_SEARCH,
            grid.replace(
                "customers(first: 100)",
                "customers(first: 100, filter: {search: \"user12\"})",
            ),
        ),
    ] {
        if !cli.wants(label) {
            continue;
        }
        let body = json!({"query": query}).to_string();
        let admin = admin.clone();
        let (stats, rss) = measure(
            pid,
            addr,
            Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&admin))),
            cli.connections,
            cli.seconds,
        )
        .await;
        rows.push(Row {
            name: label.into(),
            ratio: stats.rps() / lookup.rps(),
            stats,
            rss_mib: rss,
            ceiling: "point lookup".into(),
        });
    }

    let customers = cli.customers.max(KNOWN_FROM + 1);
    if cli.wants(REQUEST_RESET) {
        let mails_at_start = delivered.load(std::sync::atomic::Ordering::Relaxed);
        let (stats, rss) = measure(
            pid,
            addr,
            Arc::new(move |n| {
                // Alternate known and unknown addresses.
                let email = if n % 2 == 0 {
                    format!(
                        "user{}@bench.example",
                        KNOWN_FROM + n as usize % (customers - KNOWN_FROM)
                    )
                } else {
                    format!("nobody{n}@bench.example")
                };
                reset_request(addr, &email)
            }),
            cli.connections,
            cli.seconds,
        )
        .await;
        let mails_before = delivered.load(std::sync::atomic::Ordering::Relaxed);
        let accepted_known = stats.requests.div_ceil(2);
        println!(
            "{REQUEST_RESET}: {accepted_known} mails queued in {} s ({:.0}/s); {} sent over SMTP during the burst ({:.0}/s); {} requests in flight abandoned at the deadline",
            cli.seconds,
            accepted_known as f64 / stats.seconds,
            mails_before - mails_at_start,
            (mails_before - mails_at_start) as f64 / stats.seconds,
            stats.abandoned,
        );
        drain(REQUEST_RESET).await;
        rows.push(Row {
            name: REQUEST_RESET.into(),
            ratio: stats.rps() / tx.rps(),
            stats,
            rss_mib: rss,
            ceiling: "two-insert tx".into(),
        });
    }

    // Timing equality, as an attacker measures it: the same request for addresses that have an
    // account and for addresses that do not, on one keep-alive connection and on 64. Limits
    // off, so no answer is a refusal.
    //
    // First interleaved: each request's address is known or unknown at random, and its latency
    // goes to its own class (dudect's method). This is the question "does an answer's time say
    // whether *its* address has an account?"; the mail worker's follow-up for earlier known
    // addresses weighs on both classes alike, as it would on an attacker's probes.
    if cli.wants(TIMING) {
        for connections in [1, 64] {
            let make: load::MakeRequest = Arc::new(move |n| {
                let email = if timing_class(n) == 0 {
                    format!(
                        "user{}@bench.example",
                        KNOWN_FROM + (n as usize * 7919) % (customers - KNOWN_FROM)
                    )
                } else {
                    format!("nobody-i{connections}-{n}@bench.example")
                };
                reset_request(addr, &email)
            });
            let (stats, rss) = with_peak_rss(
                pid,
                load::classified(
                    &[addr],
                    make,
                    Arc::new(timing_class),
                    2,
                    connections,
                    Duration::from_secs(cli.seconds),
                ),
            )
            .await;
            drain(TIMING).await;
            let (known, unknown) = (&stats[0], &stats[1]);
            println!(
                "{TIMING}, interleaved, {connections} connection(s): p50 {:.3} vs {:.3} ms (known/unknown {:.2}), p99 {:.3} vs {:.3} ms ({:.2}), {} vs {} requests",
                known.p50_ms,
                unknown.p50_ms,
                known.p50_ms / unknown.p50_ms,
                known.p99_ms,
                unknown.p99_ms,
                known.p99_ms / unknown.p99_ms,
                known.requests,
                unknown.requests,
            );
            rows.push(Row {
                name: format!("{TIMING}, interleaved: unknown, {connections} connection(s)"),
                ratio: 1.0,
                stats: unknown.clone(),
                rss_mib: rss,
                ceiling: "itself".into(),
            });
            rows.push(Row {
                name: format!(
                    "{TIMING}, interleaved: known, {connections} connection(s) (p99 ratio {:.2})",
                    known.p99_ms / unknown.p99_ms
                ),
                ratio: known.p50_ms / unknown.p50_ms,
                stats: known.clone(),
                rss_mib: rss,
                ceiling: "unknown, p50".into(),
            });
        }
    }

    // Then in runs of one kind, each followed by a full drain of its mail: a run of known
    // addresses pays for all the mail it causes. This measures the mail worker's after-effect
    // (the load a burst of real accounts leaves behind), not any one answer.
    if cli.wants(TIMING) {
        let mut counter = 0usize;
        let seconds = cli.seconds.div_ceil(2).max(2);
        for connections in [1, 64] {
            // Known, unknown, unknown, known: a drift of the machine over the runs (PostgreSQL's
            // commit latency moves by a third on this VM) weighs on both alike.
            let mut runs: [Vec<(Stats, f64)>; 2] = [Vec::new(), Vec::new()];
            for known in [true, false, false, true] {
                counter += 1;
                let run = counter;
                let make: load::MakeRequest = Arc::new(move |n| {
                    let email = if known {
                        format!(
                            "user{}@bench.example",
                            KNOWN_FROM + (n as usize + run * 7919) % (customers - KNOWN_FROM)
                        )
                    } else {
                        format!("nobody-t{run}-{n}@bench.example")
                    };
                    reset_request(addr, &email)
                });
                let measured = measure(pid, addr, make, connections, seconds).await;
                drain(TIMING).await;
                runs[usize::from(!known)].push(measured);
            }
            let mean = |runs: &[(Stats, f64)]| -> (Stats, f64) {
                let n = runs.len() as f64;
                (
                    Stats {
                        requests: runs.iter().map(|(s, _)| s.requests).sum(),
                        errors: runs.iter().map(|(s, _)| s.errors).sum(),
                        abandoned: runs.iter().map(|(s, _)| s.abandoned).sum(),
                        seconds: runs.iter().map(|(s, _)| s.seconds).sum(),
                        p50_ms: runs.iter().map(|(s, _)| s.p50_ms).sum::<f64>() / n,
                        p99_ms: runs.iter().map(|(s, _)| s.p99_ms).sum::<f64>() / n,
                    },
                    runs.iter().map(|(_, r)| *r).fold(0.0, f64::max),
                )
            };
            let (known, known_rss) = mean(&runs[0]);
            let (unknown, unknown_rss) = mean(&runs[1]);
            for (kind, list) in [("known", &runs[0]), ("unknown", &runs[1])] {
                for (s, _) in list.iter() {
                    println!(
                        "{TIMING}, {connections} connection(s), one {seconds} s run, {kind}: p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s",
                        s.p50_ms,
                        s.p99_ms,
                        s.rps()
                    );
                }
            }
            println!(
                "{TIMING}, {connections} connection(s): p50 {:.3} vs {:.3} ms (known/unknown {:.2}), p99 {:.3} vs {:.3} ms ({:.2}), {:.0} vs {:.0} req/s",
                known.p50_ms,
                unknown.p50_ms,
                known.p50_ms / unknown.p50_ms,
                known.p99_ms,
                unknown.p99_ms,
                known.p99_ms / unknown.p99_ms,
                known.rps(),
                unknown.rps(),
            );
            rows.push(Row {
                name: format!("{TIMING}, runs: unknown, {connections} connection(s)"),
                ratio: 1.0,
                stats: unknown.clone(),
                rss_mib: unknown_rss,
                ceiling: "itself".into(),
            });
            rows.push(Row {
                name: format!(
                    "{TIMING}, runs: known, {connections} connection(s) (p99 ratio {:.2})",
                    known.p99_ms / unknown.p99_ms
                ),
                ratio: known.p50_ms / unknown.p50_ms,
                stats: known,
                rss_mib: known_rss,
                ceiling: "unknown, p50".into(),
            });
        }
    }

    // Two replicas on one PostgreSQL against one, in the same run, same total connections
    // (before the resets below, which sign the benchmark's customers out).
    if cli.wants(REPLICAS) && url.starts_with("postgres") {
        let addr2 = free_addr()?;
        let env2 = listening_on(&env, addr2);
        let second = Process::start(&["server"], &env2, addr2, "/readyz").await?;
        let customers = cli.customers.max(KNOWN_FROM + 1);
        let scenarios: [(&str, load::MakeRequest); 2] = [
            ("signed-in `customer` query", {
                let tokens = tokens.clone();
                let body = json!({"query": "{ customer { id email } }"}).to_string();
                Arc::new(move |n| {
                    post(
                        addr,
                        "/graphql",
                        body.clone(),
                        Some(&tokens[n as usize % tokens.len()]),
                    )
                })
            }),
            (
                "`requestPasswordReset`, limits off",
                Arc::new(move |n| {
                    let email = if n % 2 == 0 {
                        format!(
                            "user{}@bench.example",
                            KNOWN_FROM + n as usize % (customers - KNOWN_FROM)
                        )
                    } else {
                        format!("nobody-r{n}@bench.example")
                    };
                    reset_request(addr, &email)
                }),
            ),
        ];
        for (label, make) in scenarios {
            let duration = Duration::from_secs(cli.seconds);
            let one = load::spread(&[addr], make.clone(), cli.connections, duration).await;
            drain("one replica").await;
            let two = load::spread(&[addr, addr2], make, cli.connections, duration).await;
            drain("two replicas").await;
            rows.push(Row {
                name: format!("{label}, one replica"),
                ratio: 1.0,
                stats: one.clone(),
                rss_mib: 0.0,
                ceiling: "itself".into(),
            });
            rows.push(Row {
                name: format!("{label}, {REPLICAS}"),
                ratio: two.rps() / one.rps(),
                stats: two,
                rss_mib: 0.0,
                ceiling: "one replica".into(),
            });
        }
        drop(second);
    }
    // Each hashing scenario is compared with raw argon2id measured right before and right
    // after it (the mean): on a shared 2-core machine a ceiling taken minutes earlier can be
    // off by half, and keeping the higher of two readings would flatter nothing but the
    // ceiling.
    if cli.wants(GENERATE) || cli.wants(RESET) {
        let bracket = cli.seconds.div_ceil(2).max(3);
        let mut ceiling_before = argon2_ceiling(bracket).await;
        let sign_in_customers = customers.min(1000);
        if cli.wants(GENERATE) {
            let (stats, rss) = measure(
        pid,
        addr,
        Arc::new(move |n| {
            let email = format!("user{}@bench.example", n as usize % sign_in_customers);
            post(addr, "/graphql", json!({"query": "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }", "variables": {"e": email, "p": seed::PASSWORD}}).to_string(), None)
        }),
        cli.connections,
        cli.seconds,
    )
    .await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `generateCustomerToken`: {ceiling_before:.1} before, {after:.1} after"
            );
            ceiling_before = after;
            rows.push(Row {
                name: GENERATE.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
        }

        let reset_tokens = Arc::new(seeded.reset_tokens.clone());
        let reset = |offset: u64| -> load::MakeRequest {
            let reset_tokens = reset_tokens.clone();
            Arc::new(move |n| {
                let t = &reset_tokens[(offset + n) as usize % reset_tokens.len()];
                post(addr, "/graphql", json!({"query": "mutation($t: String!, $p: String!) { resetPassword(resetPasswordToken: $t, newPassword: $p) }", "variables": {"t": t, "p": "bench-New-Password-2"}}).to_string(), None)
            })
        };
        if cli.wants(RESET) {
            let (stats, rss) = measure(pid, addr, reset(0), cli.connections, cli.seconds).await;
            let used = stats.requests;
            drain(RESET).await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `resetPassword`: {ceiling_before:.1} before, {after:.1} after"
            );
            ceiling_before = after;
            rows.push(Row {
                name: RESET.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
            let (stats, rss) = measure(pid, addr, reset(used + 1), 256, cli.seconds.min(5)).await;
            drain(RESET_256).await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `resetPassword` at 256 connections: {ceiling_before:.1} before, {after:.1} after"
            );
            let used = used + 1 + stats.requests;
            rows.push(Row {
                name: RESET_256.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
            // The same on a server that has done nothing else: the row above also carries
            // what the earlier scenarios left in the heap and SQLite's page caches.
            let fresh_addr = free_addr()?;
            let fresh_env = listening_on(&env, fresh_addr);
            let fresh = Process::start(&["server"], &fresh_env, fresh_addr, "/readyz").await?;
            let (stats, rss) = measure(
                fresh.pid(),
                fresh_addr,
                reset(used),
                256,
                cli.seconds.min(5),
            )
            .await;
            drain("fresh server").await;
            drop(fresh);
            rows.push(Row {
                name: format!("{RESET_256}, fresh server"),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
        }
    }

    // Force Sign In on a customer with 1,000 live tokens, one call at a time.
    if cli.wants(REVOKE) {
        let mut latencies = Vec::new();
        for _ in 0..10 {
            seed::sessions(url, seeded.customer_ids[1], 1000).await?;
            let body = json!({"query": format!("mutation {{ revokeCustomerTokens(customerId: \"{}\") {{ revokedCount }} }}", seeded.customer_ids[1])}).to_string();
            let admin = admin.clone();
            let stats = load::run(
                addr,
                Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&admin))),
                1,
                Duration::ZERO,
            )
            .await;
            latencies.push(stats.p50_ms);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "`revokeCustomerTokens` with 1,000 live tokens: median {:.2} ms, worst {:.2} ms over 10 calls",
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        );
    }
    drop(server);
    Ok(rows)
}
