//! The load benchmark's scenarios against one database: the ceilings measured on it, then the
//! real server under each scenario of [`SCENARIOS`] in turn (the table is the order they run in;
//! `--only` picks rows by name).

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use testkit::pgbouncer::{PgBouncer, Upstream};

use crate::{
    Cli, Process, Row, argon2_ceiling, free_addr, listening_on, load,
    load::{Stats, post},
    measure, reset_request, rss_kib, seed, server_signed_tokens, smtp_sink, statements,
    timing_class, with_peak_rss,
};

/// Known addresses for `requestPasswordReset` start here, away from the customers whose seeded
/// reset tokens the `resetPassword` scenarios use (a new request supersedes them).
pub(crate) const KNOWN_FROM: usize = 10_000;

// Scenario names, also what `--only` matches.
const CUSTOMER: &str = "signed-in `customer` query";
const CUSTOMER_EDDSA: &str = "signed-in `customer` query, EdDSA tokens";
const CUSTOMER_PGBOUNCER: &str = "signed-in `customer` query, through PgBouncer (transaction mode)";
const INTROSPECT: &str = "`POST /introspect` of a live customer token";
const GRID_STATEMENTS: &str = "admin grid statements";
const GRID: &str = "admin `customers(first: 100)`, all admin fields";
const GRID_SEARCH: &str = "admin grid with `search: \"user12\"`";
const REQUEST_RESET: &str = "`requestPasswordReset`, limits off";
const TIMING: &str = "`requestPasswordReset` known vs unknown";
const GENERATE: &str = "`generateCustomerToken`";
const RESET: &str = "`resetPassword`";
const RESET_256: &str = "`resetPassword`, 256 connections (memory)";
const REVOKE: &str = "`revokeCustomerTokens`";
const REPLICAS: &str = "two replicas";

type Step = for<'r> fn(&'r mut Run) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'r>>;

/// One row of the table: the names `--only` matches, where it runs, and what it does.
struct Scenario {
    names: &'static [&'static str],
    postgres_only: bool,
    run: Step,
}

/// Every scenario, in the order it runs: the resets near the end sign the benchmark's
/// customers out, so the signed-in scenarios come first.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        names: &[CUSTOMER],
        postgres_only: false,
        run: |r| Box::pin(customer(r)),
    },
    Scenario {
        names: &[CUSTOMER_PGBOUNCER],
        postgres_only: true,
        run: |r| Box::pin(customer_pgbouncer(r)),
    },
    Scenario {
        names: &[CUSTOMER_EDDSA, INTROSPECT],
        postgres_only: false,
        run: |r| Box::pin(server_signed(r)),
    },
    Scenario {
        names: &[GRID_STATEMENTS, GRID],
        postgres_only: false,
        run: |r| Box::pin(grid_statements(r)),
    },
    Scenario {
        names: &[GRID, GRID_SEARCH],
        postgres_only: false,
        run: |r| Box::pin(grid_pages(r)),
    },
    Scenario {
        names: &[REQUEST_RESET],
        postgres_only: false,
        run: |r| Box::pin(request_reset(r)),
    },
    Scenario {
        names: &[TIMING],
        postgres_only: false,
        run: |r| Box::pin(timing_interleaved(r)),
    },
    Scenario {
        names: &[TIMING],
        postgres_only: false,
        run: |r| Box::pin(timing_runs(r)),
    },
    Scenario {
        names: &[REPLICAS],
        postgres_only: true,
        run: |r| Box::pin(replicas(r)),
    },
    Scenario {
        names: &[GENERATE, RESET],
        postgres_only: false,
        run: |r| Box::pin(hashing(r)),
    },
    Scenario {
        names: &[REVOKE],
        postgres_only: false,
        run: |r| Box::pin(revoke(r)),
    },
];

/// What the scenarios of one database's run share: the seeded data, the running server and the
/// ceilings they are compared with; each scenario adds its rows.
pub(crate) struct Run {
    only: Option<String>,
    seconds: u64,
    connections: usize,
    /// Customers seeded, at least [`KNOWN_FROM`] + 1.
    customers: usize,
    url: String,
    pgbouncer: Option<PathBuf>,
    /// The legacy HS256 secret the seeded tokens are signed with.
    secret: String,
    seeded: seed::Seeded,
    /// The point-lookup and two-insert ceilings on this database, in req/s.
    lookup_rps: f64,
    tx_rps: f64,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    pid: Option<u32>,
    env: Vec<(&'static str, String)>,
    tokens: Arc<Vec<String>>,
    admin: String,
    delivered: Arc<AtomicU64>,
    rows: Vec<Row>,
}

impl Run {
    fn wants(&self, scenario: &str) -> bool {
        self.only.as_deref().is_none_or(|o| scenario.contains(o))
    }

    /// req/s of an earlier row, 0 when it did not run.
    fn rps_of(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map_or(0.0, |r| r.stats.rps())
    }

    /// Waits until the outbox is empty, so no scenario or ceiling shares the CPU with the mail
    /// worker draining the previous one's mail; reports how fast it drained.
    async fn drain(&self, scenario: &str) {
        let before = self.delivered.load(Ordering::Relaxed);
        let backlog = seed::unsent_mail(&self.url).await.unwrap_or(0);
        let started = Instant::now();
        // The load generator hung up on every request in flight at the deadline: their
        // mail must still go out, and nothing may stay stuck behind a stray transaction.
        while seed::unsent_mail(&self.url).await.unwrap_or(0) > 0 {
            if started.elapsed() > Duration::from_secs(120) {
                println!(
                    "{scenario}: OUTBOX DID NOT DRAIN: {} mails still queued 2 minutes after the load stopped",
                    seed::unsent_mail(&self.url).await.unwrap_or(-1)
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = started.elapsed().as_secs_f64();
        let sent = self.delivered.load(Ordering::Relaxed) - before;
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

    /// `{ customer { id email } }` for each of `tokens` in turn, posted to `addr`.
    fn customer_query(addr: SocketAddr, tokens: &Arc<Vec<String>>) -> load::MakeRequest {
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
    }
}

/// Seeds `url`, measures its ceilings, starts the real server and runs every wanted scenario.
pub(crate) async fn backend(
    cli: &Cli,
    url: &str,
    dir: &Path,
    bare_rps: f64,
) -> anyhow::Result<Vec<Row>> {
    let secret = "bench-secret-0123456789abcdef0123456789abcdef".to_owned();
    let seeded = seed::seed(url, cli.customers, &secret).await?;
    let mut rows = Vec::new();
    let (lookup_rps, tx_rps) = ceilings(cli, url, &seeded, bare_rps, &mut rows).await?;

    // The real server.
    let addr = free_addr()?;
    let (smtp, delivered) = smtp_sink::start().await?;
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

    let mut run = Run {
        only: cli.only.clone(),
        seconds: cli.seconds,
        connections: cli.connections,
        customers: cli.customers.max(KNOWN_FROM + 1),
        url: url.to_owned(),
        pgbouncer: cli.pgbouncer.clone(),
        secret,
        tokens: Arc::new(seeded.customer_tokens.clone()),
        admin: seeded.admin_token.clone(),
        seeded,
        lookup_rps,
        tx_rps,
        addr,
        metrics_addr,
        pid,
        env,
        delivered,
        rows,
    };
    let postgres = url.starts_with("postgres");
    for scenario in SCENARIOS {
        if scenario.names.iter().any(|n| run.wants(n)) && (postgres || !scenario.postgres_only) {
            (scenario.run)(&mut run).await?;
        }
    }
    drop(server);
    Ok(run.rows)
}

/// The point lookup, the signed-in check's join and the two-insert transaction on this database,
/// on a minimal async-graphql + sea-orm server: rows for the table, and the lookup and
/// transaction figures the scenarios are compared with.
async fn ceilings(
    cli: &Cli,
    url: &str,
    seeded: &seed::Seeded,
    bare_rps: f64,
    rows: &mut Vec<Row>,
) -> anyhow::Result<(f64, f64)> {
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

    Ok((lookup.rps(), tx.rps()))
}

/// The signed-in `customer` query with the seeded (HS256) tokens.
async fn customer(r: &mut Run) -> anyhow::Result<()> {
    let make = Run::customer_query(r.addr, &r.tokens);
    let (stats, rss) = measure(r.pid, r.addr, make, r.connections, r.seconds).await;
    r.rows.push(Row {
        name: CUSTOMER.into(),
        ratio: stats.rps() / r.lookup_rps,
        stats,
        rss_mib: rss,
        ceiling: "point lookup".into(),
    });
    Ok(())
}

/// The same query on a second server whose pool goes through PgBouncer in transaction mode,
/// with as many server sessions as the direct server's pool (8).
async fn customer_pgbouncer(r: &mut Run) -> anyhow::Result<()> {
    let Some(binary) = r.pgbouncer.clone() else {
        return Ok(());
    };
    let upstream = Upstream::of_url(&r.url).map_err(anyhow::Error::msg)?;
    let bouncer = PgBouncer::start_binary(&binary, &upstream, 8)
        .await
        .map_err(anyhow::Error::msg)?;
    let bounced_addr = free_addr()?;
    let mut bounced_env = listening_on(&r.env, bounced_addr);
    for (k, v) in bounced_env.iter_mut() {
        if *k == "DATABASE_URL" {
            *v = bouncer.url();
        }
    }
    bounced_env.push(("LATCHKEY_DATABASE_POOLER", "transaction".to_owned()));
    let bounced = Process::start(&["server"], &bounced_env, bounced_addr, "/readyz").await?;
    let make = Run::customer_query(bounced_addr, &r.tokens);
    let cpu_before = bouncer.cpu_seconds();
    let (stats, rss) = measure(bounced.pid(), bounced_addr, make, r.connections, r.seconds).await;
    let cpu = bouncer.cpu_seconds() - cpu_before;
    println!(
        "PgBouncer used {cpu:.1} CPU seconds in the {} s run ({:.0} % of one core; it runs on one thread)",
        r.seconds,
        cpu / r.seconds as f64 * 100.0
    );
    let direct = r.rps_of(CUSTOMER);
    r.rows.push(Row {
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
    Ok(())
}

/// The seeded tokens are HS256, made with the legacy secret before the server's first Ed25519
/// key (so they verify as legacy tokens); the same query with tokens the server signed itself
/// (EdDSA, found by kid), on the same server in the same run. Then the same tokens through
/// `/introspect`, as another service of the store would check them.
async fn server_signed(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid) = (r.addr, r.pid);
    let signed = Arc::new(server_signed_tokens(addr, 200).await?);
    if r.wants(CUSTOMER_EDDSA) {
        let make = Run::customer_query(addr, &signed);
        let (stats, rss) = measure(pid, addr, make, r.connections, r.seconds).await;
        let hs256 = r.rps_of(CUSTOMER);
        r.rows.push(Row {
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
    if r.wants(INTROSPECT) {
        let make = introspection(r, signed).await?;
        let (stats, rss) = measure(pid, addr, make, r.connections, r.seconds).await;
        let customer = r.rps_of(CUSTOMER_EDDSA);
        r.rows.push(Row {
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
    Ok(())
}

/// `POST /introspect` of each of `signed` in turn, as a service registered for the bench.
async fn introspection(r: &Run, signed: Arc<Vec<String>>) -> anyhow::Result<load::MakeRequest> {
    let addr = r.addr;
    let config = latchkey::config::Config {
        database_url: r.url.clone(),
        jwt_secret: Some(latchkey::config::Secret::new(r.secret.clone())),
        ..latchkey::config::Config::default()
    };
    let name = format!("bench-{}", std::process::id());
    let (_, service_secret) = latchkey::introspect::services(&config)
        .await?
        .create(&name, false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{name}:{}", service_secret.expose()))
    };
    Ok(Arc::new(move |n| {
        hyper::Request::post(format!("http://{addr}/introspect"))
            .header("host", addr.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                format!("token={}", signed[n as usize % signed.len()]),
            )))
            .unwrap_or_else(|_| {
                hyper::Request::new(http_body_util::Full::new(hyper::body::Bytes::new()))
            })
    }))
}

/// Statements per grid page, read from the server's own counter.
async fn grid_statements(r: &mut Run) -> anyhow::Result<()> {
    let (addr, admin) = (r.addr, r.admin.clone());
    for first in [10, 100] {
        let before = statements(r.metrics_addr).await;
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
            statements(r.metrics_addr).await.saturating_sub(before)
        );
    }
    Ok(())
}

/// The grid's first page, plain and searched.
async fn grid_pages(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid, admin) = (r.addr, r.pid, r.admin.clone());
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
        if !r.wants(label) {
            continue;
        }
        let body = json!({"query": query}).to_string();
        let admin = admin.clone();
        let (stats, rss) = measure(
            pid,
            addr,
            Arc::new(move |_| post(addr, "/graphql", body.clone(), Some(&admin))),
            r.connections,
            r.seconds,
        )
        .await;
        r.rows.push(Row {
            name: label.into(),
            ratio: stats.rps() / r.lookup_rps,
            stats,
            rss_mib: rss,
            ceiling: "point lookup".into(),
        });
    }

    Ok(())
}

/// `requestPasswordReset` for known and unknown addresses, limits off.
async fn request_reset(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid, customers) = (r.addr, r.pid, r.customers);
    if r.wants(REQUEST_RESET) {
        let mails_at_start = r.delivered.load(Ordering::Relaxed);
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
            r.connections,
            r.seconds,
        )
        .await;
        let mails_before = r.delivered.load(Ordering::Relaxed);
        let accepted_known = stats.requests.div_ceil(2);
        println!(
            "{REQUEST_RESET}: {accepted_known} mails queued in {} s ({:.0}/s); {} sent over SMTP during the burst ({:.0}/s); {} requests in flight abandoned at the deadline",
            r.seconds,
            accepted_known as f64 / stats.seconds,
            mails_before - mails_at_start,
            (mails_before - mails_at_start) as f64 / stats.seconds,
            stats.abandoned,
        );
        r.drain(REQUEST_RESET).await;
        r.rows.push(Row {
            name: REQUEST_RESET.into(),
            ratio: stats.rps() / r.tx_rps,
            stats,
            rss_mib: rss,
            ceiling: "two-insert tx".into(),
        });
    }

    Ok(())
}

/// Timing equality, as an attacker measures it: the same request for addresses that have an
/// account and for addresses that do not, on one keep-alive connection and on 64. Limits off,
/// so no answer is a refusal.
///
/// First interleaved: each request's address is known or unknown at random, and its latency
/// goes to its own class (dudect's method). This is the question "does an answer's time say
/// whether *its* address has an account?"; the mail worker's follow-up for earlier known
/// addresses weighs on both classes alike, as it would on an attacker's probes.
async fn timing_interleaved(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid, customers) = (r.addr, r.pid, r.customers);
    if r.wants(TIMING) {
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
                    Duration::from_secs(r.seconds),
                ),
            )
            .await;
            r.drain(TIMING).await;
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
            r.rows.push(Row {
                name: format!("{TIMING}, interleaved: unknown, {connections} connection(s)"),
                ratio: 1.0,
                stats: unknown.clone(),
                rss_mib: rss,
                ceiling: "itself".into(),
            });
            r.rows.push(Row {
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

    Ok(())
}

/// Timing equality in runs of one kind, each followed by a full drain of its mail: a run of
/// known addresses pays for all the mail it causes. This measures the mail worker's
/// after-effect (the load a burst of real accounts leaves behind), not any one answer.
async fn timing_runs(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid, customers) = (r.addr, r.pid, r.customers);
    if r.wants(TIMING) {
        let mut counter = 0usize;
        let seconds = r.seconds.div_ceil(2).max(2);
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
                r.drain(TIMING).await;
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
            r.rows.push(Row {
                name: format!("{TIMING}, runs: unknown, {connections} connection(s)"),
                ratio: 1.0,
                stats: unknown.clone(),
                rss_mib: unknown_rss,
                ceiling: "itself".into(),
            });
            r.rows.push(Row {
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

    Ok(())
}

/// Two replicas on one PostgreSQL against one, in the same run, same total connections
/// (before the resets of [`hashing`], which sign the benchmark's customers out).
async fn replicas(r: &mut Run) -> anyhow::Result<()> {
    let (addr, customers) = (r.addr, r.customers);
    {
        let addr2 = free_addr()?;
        let env2 = listening_on(&r.env, addr2);
        let second = Process::start(&["server"], &env2, addr2, "/readyz").await?;
        let scenarios: [(&str, load::MakeRequest); 2] = [
            (CUSTOMER, Run::customer_query(addr, &r.tokens)),
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
            let duration = Duration::from_secs(r.seconds);
            let one = load::spread(&[addr], make.clone(), r.connections, duration).await;
            r.drain("one replica").await;
            let two = load::spread(&[addr, addr2], make, r.connections, duration).await;
            r.drain("two replicas").await;
            r.rows.push(Row {
                name: format!("{label}, one replica"),
                ratio: 1.0,
                stats: one.clone(),
                rss_mib: 0.0,
                ceiling: "itself".into(),
            });
            r.rows.push(Row {
                name: format!("{label}, {REPLICAS}"),
                ratio: two.rps() / one.rps(),
                stats: two,
                rss_mib: 0.0,
                ceiling: "one replica".into(),
            });
        }
        drop(second);
    }
    Ok(())
}

/// The scenarios that hash (`generateCustomerToken`, `resetPassword`). Each is compared with raw
/// argon2id measured right before and right after it (the mean): on a shared 2-core machine a
/// ceiling taken minutes earlier can be off by half, and keeping the higher of two readings
/// would flatter nothing but the ceiling.
async fn hashing(r: &mut Run) -> anyhow::Result<()> {
    let (addr, pid, customers) = (r.addr, r.pid, r.customers);
    if r.wants(GENERATE) || r.wants(RESET) {
        let bracket = r.seconds.div_ceil(2).max(3);
        let mut ceiling_before = argon2_ceiling(bracket).await;
        let sign_in_customers = customers.min(1000);
        if r.wants(GENERATE) {
            let (stats, rss) = measure(
        pid,
        addr,
        Arc::new(move |n| {
            let email = format!("user{}@bench.example", n as usize % sign_in_customers);
            post(addr, "/graphql", json!({"query": "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }", "variables": {"e": email, "p": seed::PASSWORD}}).to_string(), None)
        }),
        r.connections,
        r.seconds,
    )
    .await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `generateCustomerToken`: {ceiling_before:.1} before, {after:.1} after"
            );
            ceiling_before = after;
            r.rows.push(Row {
                name: GENERATE.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
        }

        let reset_tokens = Arc::new(r.seeded.reset_tokens.clone());
        let reset = |offset: u64| -> load::MakeRequest {
            let reset_tokens = reset_tokens.clone();
            Arc::new(move |n| {
                let t = &reset_tokens[(offset + n) as usize % reset_tokens.len()];
                post(addr, "/graphql", json!({"query": "mutation($t: String!, $p: String!) { resetPassword(resetPasswordToken: $t, newPassword: $p) }", "variables": {"t": t, "p": "bench-New-Password-2"}}).to_string(), None)
            })
        };
        if r.wants(RESET) {
            let (stats, rss) = measure(pid, addr, reset(0), r.connections, r.seconds).await;
            let used = stats.requests;
            r.drain(RESET).await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `resetPassword`: {ceiling_before:.1} before, {after:.1} after"
            );
            ceiling_before = after;
            r.rows.push(Row {
                name: RESET.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
            let (stats, rss) = measure(pid, addr, reset(used + 1), 256, r.seconds.min(5)).await;
            r.drain(RESET_256).await;
            let after = argon2_ceiling(bracket).await;
            let hashes = (ceiling_before + after) / 2.0;
            println!(
                "argon2id around `resetPassword` at 256 connections: {ceiling_before:.1} before, {after:.1} after"
            );
            let used = used + 1 + stats.requests;
            r.rows.push(Row {
                name: RESET_256.into(),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
            // The same on a server that has done nothing else: the row above also carries
            // what the earlier scenarios left in the heap and SQLite's page caches.
            let fresh_addr = free_addr()?;
            let fresh_env = listening_on(&r.env, fresh_addr);
            let fresh = Process::start(&["server"], &fresh_env, fresh_addr, "/readyz").await?;
            let (stats, rss) =
                measure(fresh.pid(), fresh_addr, reset(used), 256, r.seconds.min(5)).await;
            r.drain("fresh server").await;
            drop(fresh);
            r.rows.push(Row {
                name: format!("{RESET_256}, fresh server"),
                ratio: stats.rps() / hashes,
                stats,
                rss_mib: rss,
                ceiling: "argon2id".into(),
            });
        }
    }

    Ok(())
}

/// Force Sign In on a customer with 1,000 live tokens, one call at a time.
async fn revoke(r: &mut Run) -> anyhow::Result<()> {
    let (addr, url, admin) = (r.addr, r.url.clone(), r.admin.clone());
    if r.wants(REVOKE) {
        let mut latencies = Vec::new();
        for _ in 0..10 {
            seed::sessions(&url, r.seeded.customer_ids[1], 1000).await?;
            let body = json!({"query": format!("mutation {{ revokeCustomerTokens(customerId: \"{}\") {{ revokedCount }} }}", r.seeded.customer_ids[1])}).to_string();
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
    Ok(())
}
