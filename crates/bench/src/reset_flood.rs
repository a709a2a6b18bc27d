//! `reset-flood`: the mail pipeline under a flood of `requestPasswordReset` (limits off), as
//! the peer benchmarks run it: `connections` clients send requests for a few addresses as fast
//! as the server answers, for `seconds`. Meanwhile a *fresh* customer asks once a second; each
//! asks once. Reported, per database: the flood's rate, the mail sent during it, how long each
//! fresh customer waited for their mail (p50, p99, max), how many mails each flooded address
//! got, and how long after the flood the backlog (unresolved requests, unsent mail) was empty.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Process, admin_scale, free_addr, load, seed};

/// Customers seeded: the flooded addresses first, then the fresh ones.
const FLOODED_FROM: usize = 0;

pub async fn run(
    seconds: u64,
    connections: usize,
    addresses: usize,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let (dir, backends) = admin_scale::backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!(
            "\n## {name}: {seconds} s flood of `requestPasswordReset` for {addresses} addresses, {connections} connections, limits off"
        );
        let result = backend(&url, &dir, seconds, connections, addresses).await;
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
    dir: &std::path::Path,
    seconds: u64,
    connections: usize,
    addresses: usize,
) -> anyhow::Result<()> {
    let fresh_count = usize::try_from(seconds).unwrap_or(60) + 5;
    admin_scale::seed_customers_timed(
        url,
        addresses + fresh_count,
        0,
        admin_scale::Times::Distinct,
    )
    .await?;
    limits_off(url).await?;
    let (smtp, seen) = admin_scale::sink().await?;
    let addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", "off".to_owned()),
        ("LATCHKEY_JWT_SECRET", admin_scale::SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
        ("LATCHKEY_SMTP_URL", format!("smtp://{smtp}")),
    ];
    let _server = Process::start(&["server"], &env, addr, "/readyz").await?;

    let flooded = move |n: u64| {
        format!(
            "user{}@bench.example",
            FLOODED_FROM + n as usize % addresses
        )
    };
    let flood = tokio::spawn(load::run(
        addr,
        Arc::new(move |n| crate::reset_request(addr, &flooded(n))),
        connections,
        Duration::from_secs(seconds),
    ));
    // One fresh customer a second, each asking once, while the flood runs.
    let mut asked: Vec<(String, Instant)> = Vec::new();
    let started = Instant::now();
    for i in 0..usize::try_from(seconds).unwrap_or(0) {
        let due = started + Duration::from_secs(i as u64) + Duration::from_millis(500);
        tokio::time::sleep_until(due.into()).await;
        let email = format!("user{}@bench.example", addresses + i);
        let at = Instant::now();
        ask(addr, &email).await?;
        asked.push((email, at));
    }
    let stats = flood.await?;
    let flood_ended = Instant::now();
    let during: usize = count(&seen, |_| true);

    // The backlog after the flood: unresolved requests and unsent mail.
    let drained = loop {
        if seed::unsent_mail(url).await? == 0 {
            break flood_ended.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            flood_ended.elapsed() < Duration::from_secs(600),
            "the backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Fresh customers' waits (a mail still missing counts as the time until now).
    let mut waits: Vec<f64> = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        asked
            .iter()
            .map(|(email, at)| {
                seen.get(email)
                    .and_then(|times| times.first())
                    .map_or(at.elapsed(), |first| first.duration_since(*at))
                    .as_secs_f64()
            })
            .collect()
    };
    waits.sort_by(f64::total_cmp);
    let pick = |q: f64| waits[((waits.len() as f64 * q).ceil() as usize).clamp(1, waits.len()) - 1];
    let per_address: Vec<usize> = {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        (0..addresses)
            .map(|i| {
                seen.get(&format!("user{}@bench.example", FLOODED_FROM + i))
                    .map_or(0, Vec::len)
            })
            .collect()
    };
    let total_flooded: usize = per_address.iter().sum();
    println!(
        "flood: {} requests answered in {:.1} s ({:.0}/s, {} errors); {during} mails sent during the flood",
        stats.requests,
        stats.seconds,
        stats.rps(),
        stats.errors
    );
    println!(
        "fresh customers ({}): mail after p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        waits.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    println!(
        "flooded addresses ({addresses}): {total_flooded} mails in all, at most {} for one address",
        per_address.iter().max().copied().unwrap_or(0)
    );
    println!("backlog empty {drained:.1} s after the flood ended");
    Ok(())
}

/// Mails the sink has received whose recipient satisfies `which`.
fn count(seen: &admin_scale::Arrivals, which: impl Fn(&str) -> bool) -> usize {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(to, _)| which(to))
        .map(|(_, times)| times.len())
        .sum()
}

/// One `requestPasswordReset` on a connection of its own.
async fn ask(addr: SocketAddr, email: &str) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender
        .send_request(crate::reset_request(addr, email))
        .await?;
    anyhow::ensure!(
        res.status() == 200,
        "requestPasswordReset: {}",
        res.status()
    );
    Ok(())
}

/// Reset request limits off, as in the peer benchmarks.
async fn limits_off(url: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    db.execute_unprepared("UPDATE settings SET reset_request_limit_method = 'OFF'")
        .await?;
    db.close().await.ok();
    Ok(())
}
