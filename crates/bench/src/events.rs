//! `events`: how soon the store's other services hear of a Force Sign In.
//!
//! On each database: 100,000 customers seeded as an import brings them (one `created_at` for
//! all), the real server started, and a Standard Webhooks receiver in this process (axum,
//! answering 204 at once). Then
//! - **at rest**: Force Sign In of one customer at a time; the time from the mutation's answer
//!   to the receiver's 2xx for its event (p50, p99, worst);
//! - **during a bulk Force Sign In of every customer**: the same probe while the bulk job's
//!   100,000 events drain, and the drain's rate (events delivered per second, from the job's
//!   start to the last event received).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{Process, admin_scale, free_addr, seed};

/// When each subject's events arrived, and how many arrived in all.
#[derive(Default)]
struct Arrivals {
    by_subject: HashMap<String, Vec<Instant>>,
    total: u64,
    last: Option<Instant>,
}

async fn receiver() -> anyhow::Result<(SocketAddr, Arc<Mutex<Arrivals>>)> {
    let seen = Arc::new(Mutex::new(Arrivals::default()));
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let subject = v["data"]["subject"]["id"].as_str().unwrap_or("").to_owned();
                    let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
                    s.by_subject.entry(subject).or_default().push(at);
                    s.total += 1;
                    s.last = Some(at);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, seen))
}

pub async fn run(
    customers: usize,
    probes: usize,
    max_in_flight: i32,
    postgres: Option<&str>,
    skip_sqlite: bool,
) -> anyhow::Result<()> {
    let (dir, backends) = admin_scale::backends(postgres, skip_sqlite).await?;
    for (name, url) in backends {
        println!(
            "\n## {name}: Force Sign In to a webhook receiver's 2xx, {customers} customers, \
             {max_in_flight} requests in flight per receiver"
        );
        let result = backend(&url, &dir, customers, probes, max_in_flight).await;
        if let (Some(admin), true) = (postgres, name == "PostgreSQL") {
            seed::drop_postgres(admin, &url).await;
        }
        result?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
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

async fn customer_ids(url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    use sea_orm::ConnectionTrait;
    let db = persistence::connect(url, None, persistence::PoolOptions::default()).await?;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id FROM customers ORDER BY email LIMIT {n}"),
        ))
        .await?;
    db.close().await.ok();
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<uuid::Uuid>("", "id").ok())
        .map(|u| u.to_string())
        .collect())
}

/// Forces each of `ids` out, one at a time, and waits for its event: ms from the answer to the
/// receiver's 2xx, and (the baseline) ms the mutation itself took.
async fn probe(
    addr: SocketAddr,
    token: &str,
    ids: &[String],
    seen: &Arc<Mutex<Arrivals>>,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut out = Vec::new();
    let mut mutation = Vec::new();
    for id in ids {
        let before = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_subject
            .get(id)
            .map_or(0, Vec::len);
        let sent = Instant::now();
        let res = admin_scale::gql(
            addr,
            token,
            "mutation($c: ID!) { revokeCustomerTokens(customerId: $c) { revokedCount } }",
            json!({"c": id}),
        )
        .await?;
        anyhow::ensure!(res["errors"].is_null(), "revokeCustomerTokens: {res}");
        let answered = Instant::now();
        mutation.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
        let deadline = answered + Duration::from_secs(300);
        loop {
            let arrived = seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .by_subject
                .get(id)
                .and_then(|v| v.get(before).copied());
            if let Some(at) = arrived {
                out.push(at.saturating_duration_since(answered).as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no event for {id} within 300 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    Ok((out, mutation))
}

async fn backend(
    url: &str,
    dir: &std::path::Path,
    customers: usize,
    probes: usize,
    max_in_flight: i32,
) -> anyhow::Result<()> {
    admin_scale::seed_customers_timed(url, customers, 0, admin_scale::Times::Shared).await?;
    admin_scale::seed_sessions(url, 1).await?;
    let token = std::fs::read_to_string(std::env::temp_dir().join("latchkey-bench-admin"))?;
    let (hook, seen) = receiver().await?;
    let addr = free_addr()?;
    let env = vec![
        ("DATABASE_URL", url.to_owned()),
        ("LATCHKEY_LISTEN", addr.to_string()),
        ("LATCHKEY_METRICS_LISTEN", "off".to_owned()),
        ("LATCHKEY_JWT_SECRET", admin_scale::SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", dir.join("mail").display().to_string()),
    ];
    let _server = Process::start(&["server"], &env, addr, "/readyz").await?;
    let res = admin_scale::gql(
        addr,
        &token,
        "mutation($i: EventSubscriptionInput!) { createEventSubscription(input: $i) { subscription { id } } }",
        json!({"i": {"name": "bench", "url": format!("http://{hook}/hook"),
                     "format": "STANDARD_WEBHOOKS", "eventTypes": ["SESSION_REVOKED"],
                     "maxInFlight": max_in_flight}}),
    )
    .await?;
    anyhow::ensure!(res["errors"].is_null(), "createEventSubscription: {res}");
    // The worker reads its subscriptions every two seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ids = customer_ids(url, probes * 2).await?;
    let (rest_ids, busy_ids) = ids.split_at(probes);
    let (mut at_rest, mut baseline) = probe(addr, &token, rest_ids, &seen).await?;
    report(
        "baseline: the Force Sign In mutation itself, at rest",
        &mut baseline,
    );
    report("at rest: its answer to the receiver's 2xx", &mut at_rest);

    // The bulk job over every customer, and the same probe while its events drain.
    let delivered_before = seen.lock().unwrap_or_else(|e| e.into_inner()).total;
    let started = Instant::now();
    let res = admin_scale::gql(
        addr,
        &token,
        "mutation { startBulkAction(action: FORCE_SIGN_IN, selection: {filter: {}}) { id total } }",
        json!({}),
    )
    .await?;
    let total = res["data"]["startBulkAction"]["total"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("startBulkAction: {res}"))?;
    let job = res["data"]["startBulkAction"]["id"].clone();
    // When the job itself finished (its events are written as it goes).
    let finished = Arc::new(Mutex::new(None::<Instant>));
    {
        let (finished, token) = (finished.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let res = admin_scale::gql(
                    addr,
                    &token,
                    "query($id: ID!) { bulkJob(id: $id) { status } }",
                    json!({"id": job}),
                )
                .await;
                if res.is_ok_and(|r| r["data"]["bulkJob"]["status"] == "FINISHED") {
                    *finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut during, mut busy_baseline) = probe(addr, &token, busy_ids, &seen).await?;
    report(
        &format!("the mutation itself during the bulk Force Sign In of {total} customers"),
        &mut busy_baseline,
    );
    report(
        &format!("during the bulk Force Sign In of {total} customers: answer to 2xx"),
        &mut during,
    );
    let expected = delivered_before + total + busy_ids.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let (got, last) = {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            (s.total, s.last)
        };
        if got >= expected {
            let seconds = last
                .unwrap_or_else(Instant::now)
                .duration_since(started)
                .as_secs_f64();
            let job_seconds = finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map_or(f64::NAN, |at| at.duration_since(started).as_secs_f64());
            println!(
                "  bulk job: {total} customers in {job_seconds:.1} s; its events delivered in \
                 {seconds:.1} s from its start = {:.0} events/s",
                total as f64 / seconds
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {got} of {expected} events within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
