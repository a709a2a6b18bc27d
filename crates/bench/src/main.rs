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
mod challenge;
mod events;
mod grid_orders;
mod hash_budget;
mod import;
mod load;
mod reset_flood;
mod scenarios;
mod seed;
mod session_cache;
mod smtp_sink;

use std::{
    net::SocketAddr,
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
    /// The mail pipeline under a flood of `requestPasswordReset` (limits off): a fresh
    /// customer's wait for their mail, mails per flooded address, the backlog after.
    ResetFlood {
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Addresses the flood asks for.
        #[arg(long, default_value_t = 60)]
        addresses: usize,
    },
    /// The proof-of-work challenge: a customer's solve in headless Chromium and a bot's on
    /// one core, the server's checks per second, and `generateCustomerToken` with the
    /// challenge off and on (and unpaid guesses while it is on), on the real server.
    Challenge {
        #[arg(long, default_value_t = 30)]
        solves: usize,
    },
    /// Security events: Force Sign In to a webhook receiver's 2xx (p50, p99) at rest and during
    /// a bulk Force Sign In of every customer, and the rate the bulk job's events are delivered.
    Events {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        /// Single Force Sign Ins timed at rest, and again during the bulk job.
        #[arg(long, default_value_t = 200)]
        probes: usize,
        /// The subscription's cap of requests in flight.
        #[arg(long, default_value_t = 8)]
        max_in_flight: i32,
    },
    /// The session cache: `customer` with the cache off (the baseline) and on, statements per
    /// signed-in request, memory per cached session, Force Sign In's latency with one, two and
    /// three replicas, and a bulk Force Sign In of every customer across two replicas.
    SessionCache {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        /// Force Sign Ins timed per replica count.
        #[arg(long, default_value_t = 200)]
        probes: usize,
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
        Some(Mode::Events {
            customers,
            probes,
            max_in_flight,
        }) => {
            events::run(
                customers,
                probes,
                max_in_flight,
                cli.postgres.as_deref(),
                cli.skip_sqlite,
            )
            .await
        }
        Some(Mode::SessionCache { customers, probes }) => {
            session_cache::run(
                customers,
                cli.seconds,
                cli.connections,
                probes,
                cli.postgres.as_deref(),
                cli.skip_sqlite,
            )
            .await
        }
        Some(Mode::Challenge { solves }) => {
            challenge::run(
                cli.seconds,
                cli.connections,
                solves,
                cli.postgres.as_deref(),
                cli.skip_sqlite,
            )
            .await
        }
        Some(Mode::ResetFlood {
            seconds,
            connections,
            addresses,
        }) => {
            reset_flood::run(
                seconds,
                connections,
                addresses,
                cli.postgres.as_deref(),
                cli.skip_sqlite,
            )
            .await
        }
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
        // The server logs to standard output: shown with LATCHKEY_BENCH_SERVER_LOGS set.
        let logs = std::env::var_os("LATCHKEY_BENCH_SERVER_LOGS").is_some();
        cmd.args(args)
            .kill_on_drop(true)
            .stdout(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
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

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
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
        let rows = scenarios::backend(cli, &url, &dir, bare.rps())
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
