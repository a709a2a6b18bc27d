//! `latchkey-bench import`: `latchkey import customers` of a generated file on SQLite and
//! PostgreSQL (rows/s, the importer's peak RSS), against the database's own bulk-ingest ceiling
//! measured in the same run; then the time of a sign-in with each legacy format next to
//! argon2id's and an unknown address's.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::process::Command;

use crate::{Process, free_addr, load::post, rss_kib};

/// The production-cost reference vectors, one per format and platform default.
fn vectors() -> anyhow::Result<Vec<(String, String, String)>> {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/vectors/legacy-hashes.json"))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in file["vectors"].as_array().into_iter().flatten() {
        let (Some(hash), Some(password), Some(format)) = (
            v["hash"].as_str(),
            v["password"].as_str(),
            v["format"].as_str(),
        ) else {
            continue;
        };
        if v["valid"] != true || password.is_empty() {
            continue;
        }
        // One vector per kind of hash: its prefix up to the cost, or Magento's version list.
        let kind = if format.starts_with("magento") {
            format!(
                "{format} {}",
                hash.splitn(3, ':').nth(2).unwrap_or("unsalted")
            )
        } else {
            hash.split('$').take(3).collect::<Vec<_>>().join("$")
        };
        // Every platform default, and Magento's cheap digests (the bulk of old stores).
        let cheap_magento = format.starts_with("magento")
            && ["0", "1", "unsalted"]
                .iter()
                .any(|v| kind.ends_with(&format!(" {v}")));
        if (v["production_default"] == true || cheap_magento) && seen.insert(kind.clone()) {
            out.push((kind, hash.to_owned(), password.to_owned()));
        }
    }
    Ok(out)
}

/// Per format, the customers the sign-in timing uses.
const PER_FORMAT: usize = 3;

fn write_file(
    path: &Path,
    rows: usize,
    vectors: &[(String, String, String)],
) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        w,
        "email,firstname,lastname,locale,created_at,password_hash,external_id"
    )?;
    for (k, (_, hash, _)) in vectors.iter().enumerate() {
        for j in 0..PER_FORMAT {
            writeln!(w, "fmt{k}-{j}@bench.example,F,L,en,,\"{hash}\",f{k}-{j}")?;
        }
    }
    // The bulk: a mix of what stores bring (bcrypt, Magento 2, Django, none).
    let bulk: Vec<&str> = vectors
        .iter()
        .map(|(_, h, _)| h.as_str())
        .filter(|h| h.len() < 120)
        .collect();
    for i in 0..rows.saturating_sub(vectors.len() * PER_FORMAT) {
        let hash = if i % 5 == 4 || bulk.is_empty() {
            ""
        } else {
            bulk[i % bulk.len()]
        };
        writeln!(
            w,
            "user{i}@import.example,Firstname{i},Lastname{i},{},2020-01-02 03:04:05,\"{hash}\",{i}",
            ["en", "ja", "ko"][i % 3]
        )?;
    }
    w.flush()?;
    Ok(())
}

/// The database's own bulk ingest of the same file, no checks, no index: PostgreSQL `COPY …
/// CSV` of the raw bytes; SQLite multi-row inserts of the parsed records in one transaction.
async fn ceiling(url: &str, file: &Path) -> anyhow::Result<f64> {
    use sea_orm::sqlx;
    let started = Instant::now();
    let rows;
    if url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
        sqlx::query("DROP TABLE IF EXISTS bench_ingest")
            .execute(&mut conn)
            .await?;
        sqlx::query(
            "CREATE UNLOGGED TABLE bench_ingest (email text, firstname text, lastname text, \
             locale text, created_at text, password_hash text, external_id text)",
        )
        .execute(&mut conn)
        .await?;
        let mut copy = conn
            .copy_in_raw("COPY bench_ingest FROM STDIN WITH (FORMAT csv, HEADER true)")
            .await?;
        let mut f = tokio::fs::File::open(file).await?;
        copy.read_from(&mut f).await?;
        rows = copy.finish().await?;
        sqlx::query("DROP TABLE bench_ingest")
            .execute(&mut conn)
            .await?;
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_ingest (email text, firstname text, lastname \
             text, locale text, created_at text, password_hash text, external_id text)",
        )
        .execute(&mut conn)
        .await?;
        sqlx::query("BEGIN").execute(&mut conn).await?;
        let data = std::fs::read_to_string(file)?;
        let mut count = 0u64;
        let lines: Vec<&str> = data.lines().skip(1).collect();
        for chunk in lines.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO bench_ingest (email, firstname, lastname, locale, created_at, \
                 password_hash, external_id) ",
            );
            q.push_values(chunk, |mut b, line| {
                let mut f = line.splitn(7, ',');
                for _ in 0..7 {
                    b.push_bind(f.next().unwrap_or("").to_owned());
                }
            });
            q.build().execute(&mut conn).await?;
            count += chunk.len() as u64;
        }
        sqlx::query("COMMIT").execute(&mut conn).await?;
        sqlx::query("DROP TABLE bench_ingest")
            .execute(&mut conn)
            .await?;
        rows = count;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Runs `latchkey import customers FILE` in a child (this binary's internal mode), sampling
/// its RSS; the import's wall time and the peak, in MiB.
async fn import_child(env: &[(&str, String)], file: &Path) -> anyhow::Result<(f64, f64, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("import-child")
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let out = child.wait_with_output().await?;
    sampler.abort();
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        seconds,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// Median of `samples` sign-ins, in ms.
async fn sign_in_ms(addr: SocketAddr, emails: &[String], password: &str) -> f64 {
    let mut times = Vec::new();
    for email in emails {
        let body = json!({
            "query": "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token } }",
            "variables": {"e": email, "p": password},
        })
        .to_string();
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await;
        if let Ok(stream) = stream
            && let Ok((mut s, c)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
        {
            tokio::spawn(c);
            if let Ok(res) = s.send_request(post(addr, "/graphql", body, None)).await {
                let _ = http_body_util::BodyExt::collect(res.into_body()).await;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(rows: usize, postgres: Option<&str>, skip_sqlite: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let vectors = vectors()?;
    let file = dir.join("customers.csv");
    let started = Instant::now();
    write_file(&file, rows, &vectors)?;
    println!(
        "# Import benchmark\n{rows} rows ({} MiB) generated in {:.1} s; {} legacy formats at their platforms' cost",
        std::fs::metadata(&file)?.len() / (1 << 20),
        started.elapsed().as_secs_f64(),
        vectors.len()
    );
    let mut targets: Vec<(&str, String)> = Vec::new();
    if !skip_sqlite {
        targets.push((
            "SQLite",
            format!("sqlite://{}/import.db?mode=rwc", dir.display()),
        ));
    }
    if let Some(pg) = postgres {
        let admin_url = pg.to_owned();
        let mut conn =
            <sea_orm::sqlx::PgConnection as sea_orm::sqlx::Connection>::connect(&admin_url).await?;
        for sql in [
            "DROP DATABASE IF EXISTS latchkey_bench_import",
            "CREATE DATABASE latchkey_bench_import",
        ] {
            sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
        }
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        targets.push(("PostgreSQL", format!("{base}/latchkey_bench_import")));
    }
    for (label, url) in &targets {
        let config = latchkey::config::Config {
            database_url: url.clone(),
            ..latchkey::config::Config::default()
        };
        latchkey::migrate(&config).await?;
        let ceiling = ceiling(url, &file).await?;
        let env = vec![
            ("DATABASE_URL", url.clone()),
            ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
            (
                "LATCHKEY_JWT_SECRET",
                "bench-secret-bench-secret-bench-secret".into(),
            ),
        ];
        let (seconds, peak, summary) = import_child(&env, &file).await?;
        println!("\n### {label}\n`latchkey import`: {summary}");
        println!(
            "| | rows/s | peak RSS MiB | ratio |\n| --- | ---: | ---: | ---: |\n| ceiling: the database's own bulk ingest, no checks, no index | {ceiling:.0} | | 1.00 |\n| `latchkey import customers` ({rows} rows, {seconds:.1} s) | {:.0} | {peak:.0} | {:.2} |",
            rows as f64 / seconds,
            rows as f64 / seconds / ceiling
        );
        // Re-running the same file: every row is skipped.
        let (again, again_peak, summary) = import_child(&env, &file).await?;
        println!("re-import of the same file: {summary} ({again:.1} s, peak {again_peak:.0} MiB)");

        // Sign-in timing per format, one request at a time, each on a new connection.
        let addr = free_addr()?;
        let metrics = free_addr()?;
        let mut server_env = env.clone();
        server_env.push(("LATCHKEY_LISTEN", addr.to_string()));
        server_env.push(("LATCHKEY_METRICS_LISTEN", metrics.to_string()));
        let server = Process::start(&["server"], &server_env, addr, "/readyz").await?;
        let unknown: Vec<String> = (0..PER_FORMAT)
            .map(|j| format!("nobody{j}@bench.example"))
            .collect();
        let unknown_ms = sign_in_ms(addr, &unknown, "wrong-password").await;
        println!(
            "\n| sign-in ({label}, median of {PER_FORMAT}) | wrong password ms | ratio to unknown address | first right password ms (verify + upgrade) | then, upgraded, ms |\n| --- | ---: | ---: | ---: | ---: |\n| unknown address (dummy argon2id) | {unknown_ms:.1} | 1.00 | | |"
        );
        for (k, (kind, _, password)) in vectors.iter().enumerate() {
            let emails: Vec<String> = (0..PER_FORMAT)
                .map(|j| format!("fmt{k}-{j}@bench.example"))
                .collect();
            let wrong = sign_in_ms(addr, &emails, "wrong-password").await;
            let right = sign_in_ms(addr, &emails, password).await;
            let upgraded = sign_in_ms(addr, &emails, password).await;
            println!(
                "| {kind} | {wrong:.1} | {:.2} | {right:.1} | {upgraded:.1} |",
                wrong / unknown_ms
            );
        }
        drop(server);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The internal child: `latchkey import customers FILE` as the CLI runs it.
pub async fn child(file: PathBuf) -> anyhow::Result<()> {
    let config = latchkey::config::Config::load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let summary = latchkey::import::run(
        &config,
        latchkey::import::Options {
            file: file.display().to_string(),
            format: None,
            on_conflict: domain::import::OnConflict::Skip,
            dry_run: false,
            rejects: Some(file.with_extension("rejects.csv")),
            writers: persistence::DEFAULT_PG_WRITERS,
        },
    )
    .await?;
    summary.print(false);
    Ok(())
}
