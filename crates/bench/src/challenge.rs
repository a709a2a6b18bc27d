//! `challenge`: what the proof-of-work challenge costs each side, in one run.
//!
//! - The customer: the storefront's own solver (`solveChallenge` in `assets/ui/common.js`,
//!   the browser's SHA-256 through WebCrypto) in headless Chromium, on fresh challenges at the
//!   default difficulty: the median, p90 and worst solve.
//! - A bot: the same challenges solved natively on one core (the attacker's cheapest way).
//! - The server: challenge checks per second on one core (one SHA-256 and one HMAC each).
//! - The real server: `generateCustomerToken` with the right password, challenge off, then on
//!   (every request carries a solution solved beforehand), and wrong passwords without a
//!   solution while the challenge is on (what a bot that does not pay costs the server).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::Utc;
use domain::guard::{WorkChallenge, WorkKey};
use serde_json::{Value, json};

type Request = hyper::Request<http_body_util::Full<hyper::body::Bytes>>;
use sha2::{Digest, Sha256};

use crate::{Process, admin_scale, free_addr, load, seed};

/// The settings' default work.
const DEFAULT_MAX_NUMBER: u32 = 100_000;

pub async fn run(
    seconds: u64,
    connections: usize,
    solves: usize,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let key = WorkKey::derive(uuid::Uuid::new_v4().as_bytes().repeat(2).as_slice())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = Utc::now();
    let challenges = (0..solves)
        .map(|_| key.issue(DEFAULT_MAX_NUMBER, now, "ab12"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    println!("\n## The challenge at maxnumber {DEFAULT_MAX_NUMBER}: {solves} fresh challenges");
    match in_chromium(&challenges).await {
        Ok(ms) => report("customer: Chromium, the storefront's solver", &ms),
        Err(e) => println!("  Chromium: SKIPPED ({e})"),
    }
    let native: Vec<f64> = challenges
        .iter()
        .map(|c| {
            let started = Instant::now();
            solve(c);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    report("bot: native SHA-256, one core", &native);
    let solutions: Vec<String> = challenges.iter().map(solve).collect();
    let started = Instant::now();
    let mut checked = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for s in &solutions {
            if key.check(s, now).is_ok() {
                checked += 1;
            }
        }
    }
    let per_second = checked as f64 / started.elapsed().as_secs_f64();
    println!(
        "  server: {per_second:.0} checks/s on one core ({:.2} µs each)",
        1e6 / per_second
    );

    let (dir, backends) = admin_scale::backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!(
            "\n## {name}: `generateCustomerToken`, {connections} connections, {seconds} s each"
        );
        let result = sign_ins(&url, &dir, seconds, connections).await;
        if let (Some(admin), true) = (postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        result?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}

fn report(what: &str, ms: &[f64]) {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what}: median {:.0} ms, p90 {:.0} ms, worst {:.0} ms",
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

/// The solution of `c` as a client sends it (base64 JSON), found as a bot would: the salt hashed
/// once, each number appended to a copy of that state, bytes compared.
fn solve(c: &WorkChallenge) -> String {
    let target: Vec<u8> = (0..c.challenge.len() / 2)
        .filter_map(|i| u8::from_str_radix(&c.challenge[2 * i..2 * i + 2], 16).ok())
        .collect();
    let mut salted = Sha256::new();
    salted.update(c.salt.as_bytes());
    let mut digits = String::with_capacity(12);
    let number = (0..=c.maxnumber)
        .find(|n| {
            use std::fmt::Write;
            digits.clear();
            let _ = write!(digits, "{n}");
            let mut h = salted.clone();
            h.update(digits.as_bytes());
            h.finalize()[..] == target[..]
        })
        .unwrap_or(0);
    let payload = json!({
        "algorithm": c.algorithm, "challenge": c.challenge, "number": number,
        "salt": c.salt, "signature": c.signature,
    });
    base64::engine::general_purpose::STANDARD.encode(payload.to_string())
}

/// Each challenge solved by `solveChallenge` from the storefront's `common.js` in headless
/// Chromium, one after another: milliseconds each.
async fn in_chromium(challenges: &[WorkChallenge]) -> anyhow::Result<Vec<f64>> {
    let common = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/ui/common.js")
        .canonicalize()?;
    let dir = std::env::temp_dir().join(format!("latchkey-challenge-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let page = dir.join("solve.html");
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><html lang="en"><body><script type="module">
import {{ solveChallenge }} from "file://{common}";
const challenges = {challenges};
const times = [];
for (const c of challenges) {{
  const started = performance.now();
  await solveChallenge(c);
  times.push(performance.now() - started);
}}
console.log("LATCHKEY-SOLVES " + JSON.stringify(times));
</script></body></html>"#,
            common = common.display(),
            challenges = serde_json::to_string(challenges)?,
        ),
    )?;
    let mut child = tokio::process::Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("no chromium: {e}"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("stderr"))?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let found = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("LATCHKEY-SOLVES ").nth(1) {
                let json = rest.split("\", source").next().unwrap_or(rest);
                return Ok::<_, anyhow::Error>(serde_json::from_str::<Vec<f64>>(json)?);
            }
        }
        anyhow::bail!("chromium ended without an answer")
    })
    .await??;
    child.kill().await.ok();
    std::fs::remove_dir_all(dir).ok();
    Ok(found)
}

const SIGN_IN: &str = "mutation($e: String!, $p: String!, $s: String) { generateCustomerToken(email: $e, password: $p, challengeSolution: $s) { token } }";

fn sign_in(addr: SocketAddr, email: &str, password: &str, solution: Option<&str>) -> Request {
    let body = json!({"query": SIGN_IN, "variables": {"e": email, "p": password, "s": solution}});
    load::post(addr, "/graphql", body.to_string(), None)
}

async fn sign_ins(
    url: &str,
    dir: &std::path::Path,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<()> {
    const CUSTOMERS: usize = 5_000;
    seed::seed(url, CUSTOMERS, admin_scale::SECRET).await?;
    let addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", "off".to_owned()),
        ("LATCHKEY_JWT_SECRET", admin_scale::SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
    ];
    // Off: no count turns the challenge on.
    settings(
        url,
        "challenge_after_network_failures = 0, challenge_after_name_failures = 0",
    )
    .await?;
    let server = Process::start(&["server"], &env, addr, "/readyz").await?;
    let user = |n: u64| format!("user{}@bench.example", n as usize % CUSTOMERS);
    let first = anon(addr, SIGN_IN, json!({"e": user(0), "p": seed::PASSWORD})).await?;
    anyhow::ensure!(first["errors"].is_null(), "a right password: {first}");
    let off = crate::measure(
        server.pid(),
        addr,
        Arc::new(move |n| sign_in(addr, &user(n), seed::PASSWORD, None)),
        connections,
        seconds,
    )
    .await
    .0;
    println!(
        "  challenge off, right passwords: {:.0} req/s, p50 {:.0} ms, p99 {:.0} ms ({} errors)",
        off.rps(),
        off.p50_ms,
        off.p99_ms,
        off.errors
    );
    // The bench's own network under attack: one wrong password is enough at a threshold of 1.
    settings(
        url,
        "challenge_after_network_failures = 1, challenge_after_name_failures = 0",
    )
    .await?;
    let wrong = anon(
        addr,
        SIGN_IN,
        json!({"e": "nobody@bench.example", "p": "wrong-guess"}),
    )
    .await?;
    anyhow::ensure!(wrong["errors"].is_array(), "{wrong}");
    // Solutions solved beforehand, one per request the run can make (each works once).
    let pool = (off.requests as usize * 2).max(500);
    let started = Instant::now();
    let mut solutions = Vec::with_capacity(pool);
    for _ in 0..pool {
        let asked = anon(
            addr,
            SIGN_IN,
            json!({"e": "user0@bench.example", "p": seed::PASSWORD}),
        )
        .await?;
        let c: WorkChallenge =
            serde_json::from_value(asked["errors"][0]["extensions"]["challenge"].clone())
                .map_err(|e| anyhow::anyhow!("no challenge ({e}): {asked}"))?;
        solutions.push(solve(&c));
    }
    println!(
        "  ({pool} challenges fetched and solved natively in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let solutions = Arc::new(solutions);
    let on = crate::measure(
        server.pid(),
        addr,
        Arc::new(move |n| {
            let s = &solutions[n as usize % solutions.len()];
            sign_in(addr, &user(n), seed::PASSWORD, Some(s))
        }),
        connections,
        seconds,
    )
    .await
    .0;
    println!(
        "  challenge on, right passwords with a solution: {:.0} req/s ({:.2}× off), p50 {:.0} ms, p99 {:.0} ms ({} errors)",
        on.rps(),
        on.rps() / off.rps(),
        on.p50_ms,
        on.p99_ms,
        on.errors
    );
    let unpaid = crate::measure(
        server.pid(),
        addr,
        Arc::new(move |n| sign_in(addr, &user(n), "wrong-guess", None)),
        connections,
        seconds,
    )
    .await
    .0;
    println!(
        "  challenge on, guesses without a solution (answered CHALLENGE_REQUIRED): {:.0} req/s ({:.1}× a right sign-in with the challenge off), p50 {:.1} ms, p99 {:.1} ms",
        unpaid.rps(),
        unpaid.rps() / off.rps(),
        unpaid.p50_ms,
        unpaid.p99_ms
    );
    Ok(())
}

/// One anonymous GraphQL call on a connection of its own.
async fn anon(addr: SocketAddr, query: &str, variables: Value) -> anyhow::Result<Value> {
    let body = json!({"query": query, "variables": variables}).to_string();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender
        .send_request(load::post(addr, "/graphql", body, None))
        .await?;
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

async fn settings(url: &str, assignments: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    db.execute_unprepared(&format!("UPDATE settings SET {assignments} WHERE id = 1"))
        .await?;
    db.close().await.ok();
    Ok(())
}
