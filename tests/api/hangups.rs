//! Clients that hang up: load balancers, impatient browsers and `wrk` close keep-alive
//! connections while requests are in flight. A hang-up may lose the answer, never the write:
//! nothing may be left inside an open transaction, every request answered `true` has its mail
//! committed, and the mail queue drains.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::json;

use crate::{
    helpers::{Backend, PASSWORD, TestApp, postgres_url},
    process::ServerProcess,
};

crate::tests![
    postgres_a_begin_cancelled_mid_round_trip_leaves_no_transaction,
    postgres_database_connections_send_without_delay,
    postgres_a_pooled_connection_left_in_a_transaction_is_never_handed_out,
    postgres_the_server_ends_a_transaction_left_idle_past_the_timeout,
    hang_ups_mid_request_lose_answers_never_writes,
    a_reset_requested_by_a_client_that_hangs_up_is_still_sent,
    operations_past_the_limit_are_refused_with_503_and_change_nothing,
    a_stalled_queue_shows_its_age_to_admins_and_in_the_metric,
];

/// Storms per test run: the bug this guards against is a race.
const ROUNDS: usize = 3;
const STORM: Duration = Duration::from_secs(3);
const CLIENTS: usize = 24;
const KNOWN: usize = 12;

/// `true` answers per known address.
type Acked = Arc<Mutex<HashMap<String, i64>>>;

async fn hang_ups_mid_request_lose_answers_never_writes(backend: Backend) {
    // A name of its own on PostgreSQL, so the test can find this server's sessions among the
    // database's others.
    let app_name = format!(
        "lk_hangup_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let app = TestApp::spawn_with(backend, |c| {
        c.database_max_connections = 16;
        // Without PostgreSQL's backstop, so a stray transaction stays visible to the checks
        // below instead of being ended by the server after ten seconds.
        c.database_idle_in_transaction_timeout_seconds = 0;
        if backend == Backend::Postgres {
            let sep = if c.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            c.database_url = format!("{}{sep}application_name={app_name}", c.database_url);
        }
    })
    .await;
    // A limit far above the storm (1,000 an hour per address) records one limit event per
    // accepted request, in the request's own transaction: the per-request witness that a
    // `true` was committed (the mail itself coalesces per address).
    app.set_settings("reset_request_limit_method = 'BY_EMAIL', max_reset_requests_per_hour = 1000, min_seconds_between_reset_requests = 0").await;
    let known: Vec<String> = (0..KNOWN)
        .map(|i| format!("hangup{i}@example.com"))
        .collect();
    for email in &known {
        app.create_customer(email, PASSWORD).await;
    }
    // Checks go through a connection of their own: the server's pool is what is under test.
    let observer = observer(&app).await;

    let acked: Acked = Arc::default();
    let latency_us = Arc::new(AtomicU64::new(2_000));
    for round in 0..ROUNDS {
        let deadline = Instant::now() + STORM;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (known, acked, latency) = (known.clone(), acked.clone(), latency_us.clone());
                let (addr, seed) = (app.addr, (round * CLIENTS + i) as u64);
                tokio::task::spawn_blocking(move || {
                    hang_up_client(addr, known, acked, latency, deadline, seed)
                })
            })
            .collect();
        let mut answered = 0;
        for c in clients {
            answered += c.await.unwrap();
        }
        assert!(
            answered > 0,
            "round {round}: no request was answered at all"
        );
        after_the_storm(
            &app,
            &observer,
            (backend == Backend::Postgres).then_some(&*app_name),
            round,
            &acked,
        )
        .await;
    }
    observer.close().await.ok();
}

/// What must hold after each storm: no session of the server inside a transaction
/// (`app_name` names its sessions on PostgreSQL), every `true` committed, the queue drained, and a
/// new request's mail out within seconds.
async fn after_the_storm(
    app: &TestApp,
    observer: &DatabaseConnection,
    app_name: Option<&str>,
    round: usize,
    acked: &Acked,
) {
    // Once the operations the clients abandoned have finished (they run on, detached), nothing
    // of the server's has any reason to be inside a transaction: the mail worker's claims and
    // marks are single statements. A stray transaction never ends on its own here (the
    // server's idle-in-transaction timeout is off), so waiting cannot hide one; on a busy
    // machine the abandoned operations can take a few seconds to finish.
    if let Some(app_name) = app_name {
        let in_transaction = format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{app_name}' \
             AND xact_start IS NOT NULL"
        );
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let open = scalar(observer, &in_transaction).await;
            if open == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "round {round}: {open} session(s) of the server still inside a transaction 10 s after the storm"
            );
        }
    }

    // Every `true` the clients saw is committed, seen from another connection: each accepted
    // request's limit event, written in its transaction; and the address has its mail, or a
    // recorded request the worker has yet to resolve.
    let acked_now = acked.lock().unwrap().clone();
    for (email, answers) in &acked_now {
        let events = scalar(
            observer,
            &format!("SELECT COUNT(*) FROM limit_events WHERE key = 'reset:email:{email}'"),
        )
        .await;
        assert!(
            events >= *answers,
            "round {round}: {email} was answered `true` {answers} times but has {events} committed requests"
        );
        let rows = scalar(
            observer,
            &format!(
                "SELECT (SELECT COUNT(*) FROM email_outbox WHERE recipient = '{email}') \
                 + (SELECT COUNT(*) FROM reset_requests WHERE email_key = '{email}')"
            ),
        )
        .await;
        assert!(
            *answers == 0 || rows > 0,
            "round {round}: {email} was answered `true` {answers} times but has no mail or request"
        );
    }

    // The queue drains completely, with no load left.
    let unsent = "SELECT (SELECT COUNT(*) FROM email_outbox WHERE status <> 'sent') \
                  + (SELECT COUNT(*) FROM reset_requests)";
    let started = Instant::now();
    loop {
        let left = scalar(observer, unsent).await;
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "round {round}: {left} messages still unsent 20 s after the storm ({})",
            scalar(observer, "SELECT COUNT(*) FROM email_outbox").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No session of this server sits in a transaction (PostgreSQL shows every session).
    // The idle mail workers' own short transactions (a claim: BEGIN, SET LOCAL, the
    // claim, COMMIT) are idle in transaction for the microseconds between statements; a
    // stray one has sat there since the storm, seconds ago, and never ends (the idle
    // timeout is off here).
    if let Some(app_name) = app_name {
        let stuck = scalar(
            observer,
            &format!(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{app_name}' \
                 AND ((state LIKE 'idle in transaction%' AND state_change < now() - interval '1 second') \
                 OR xact_start < now() - interval '3 seconds')"
            ),
        )
        .await;
        assert_eq!(
            stuck, 0,
            "round {round}: {stuck} backend(s) of the server are inside a transaction after the storm"
        );
    }

    // A new request's mail goes out within seconds.
    let fresh = format!("fresh{round}@example.com");
    app.create_customer(&fresh, PASSWORD).await;
    assert_eq!(
        app.request_reset(&fresh).await["data"]["requestPasswordReset"],
        true
    );
    let started = Instant::now();
    let sent = format!(
        "SELECT COUNT(*) FROM email_outbox WHERE recipient = '{fresh}' AND status = 'sent'"
    );
    while scalar(observer, &sent).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "round {round}: a reset requested after the storm was not sent within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client for the storm, on an OS thread of its own so its hang-ups land at precise
/// moments whatever the server's runtime is doing: keep-alive connections that send
/// `requestPasswordReset` for known and unknown addresses and, at random, hang up while
/// sending the request, while the server runs it (after a delay drawn up to the latency
/// answers have shown) or while the answer is being read. Returns how many answers it read whole.
fn hang_up_client(
    addr: SocketAddr,
    known: Vec<String>,
    acked: Acked,
    latency_us: Arc<AtomicU64>,
    deadline: Instant,
    seed: u64,
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut answered = 0;
    while Instant::now() < deadline {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(20)));
        for _ in 0..rng.usize(1..16) {
            let email = if rng.u8(..4) == 0 {
                format!("nobody{}@example.com", rng.u32(..))
            } else {
                known[rng.usize(..known.len())].clone()
            };
            let body = json!({
                "query": "mutation($e: String!) { requestPasswordReset(email: $e) }",
                "variables": {"e": email},
            })
            .to_string();
            let request = format!(
                "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // Now and then the client goes away halfway through sending the request.
            if rng.u8(..20) == 0 {
                let cut = rng.usize(1..request.len());
                let _ = stream.write_all(&request.as_bytes()[..cut]);
                break;
            }
            let sent = Instant::now();
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
            match rng.u8(..10) {
                // Hang up while the server works on it.
                0..=4 => {
                    let typical = latency_us.load(Ordering::Relaxed).max(200);
                    std::thread::sleep(Duration::from_micros(rng.u64(..typical)));
                    break;
                }
                // Hang up in the middle of the answer.
                5 => {
                    let mut partial = vec![0u8; rng.usize(1..64)];
                    let _ = stream.read(&mut partial);
                    break;
                }
                _ => match read_response(&mut stream) {
                    Some(body) => {
                        answered += 1;
                        let took = sent.elapsed().as_micros() as u64;
                        let old = latency_us.load(Ordering::Relaxed);
                        latency_us.store((old * 7 + took) / 8, Ordering::Relaxed);
                        if body.contains("\"requestPasswordReset\":true")
                            && !email.starts_with("nobody")
                        {
                            *acked.lock().unwrap().entry(email).or_default() += 1;
                        }
                    }
                    None => break,
                },
            }
        }
        // Dropping the stream closes the connection, whatever is in flight.
    }
    answered
}

/// Reads one HTTP/1.1 response with a Content-Length; its body, or None on a broken stream.
fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf[header_end..header_end + length]).into_owned())
}

/// Opens a transaction on `observer` holding a lock every `requestPasswordReset` needs, until
/// it is committed: SQLite's one write lock (any write takes it), or PostgreSQL's lock on the
/// table requests are recorded in.
async fn hold_the_lock_a_reset_needs(
    observer: &DatabaseConnection,
    backend: Backend,
) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let blocker = observer.begin().await.unwrap();
    let sql = match backend {
        Backend::Sqlite => "UPDATE settings SET id = id WHERE id = 1",
        Backend::Postgres | Backend::PgBouncer => "LOCK TABLE reset_requests IN EXCLUSIVE MODE",
    };
    blocker.execute_unprepared(sql).await.unwrap();
    blocker
}

/// Waits until a request's transaction is stuck behind the lock a test holds (PostgreSQL
/// shows the waiting lock; SQLite's busy wait shows nothing, so give it time).
async fn wait_until_blocked(app: &TestApp, backend: Backend) {
    match backend {
        Backend::Postgres | Backend::PgBouncer => {
            // The observer's one connection holds the lock: look through another.
            let watcher = observer(app).await;
            let started = Instant::now();
            while scalar(&watcher, "SELECT COUNT(*) FROM pg_locks WHERE NOT granted").await == 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the request never reached the locked table"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            watcher.close().await.ok();
        }
        Backend::Sqlite => tokio::time::sleep(Duration::from_millis(500)).await,
    }
}

/// A connection to the server's database that is not the server's.
async fn observer(app: &TestApp) -> DatabaseConnection {
    match &app.config.database_schema {
        Some(schema) => {
            let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
            observer_on(&url, Some(schema)).await
        }
        None => observer_on(&app.config.database_url, None).await,
    }
}

async fn observer_on(url: &str, schema: Option<&str>) -> DatabaseConnection {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    if let Some(schema) = schema {
        options.set_schema_search_path(schema.to_owned());
    }
    Database::connect(options).await.unwrap()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT CAST(({sql}) AS BIGINT) AS n"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The driver on its own (vendor/sqlx-postgres, upstream PR #4394): a `begin()` dropped while
/// its `BEGIN` round trip is in flight must leave the session idle, not inside a transaction.
/// The `pg_sleep` after `BEGIN` widens that round trip so the cancellation lands inside it.
async fn postgres_a_begin_cancelled_mid_round_trip_leaves_no_transaction(_backend: Backend) {
    use sea_orm::sqlx::{self, Connection, postgres::PgConnection, postgres::PgPoolOptions};
    let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .connect(&url)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        pool.begin_with(sqlx::AssertSqlSafe(
            "BEGIN; SELECT pg_sleep(1.5);".to_owned(),
        )),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the BEGIN should still have been running"
    );

    // Once the abandoned statement has answered, the connection goes back to the pool.
    let mut observer = PgConnection::connect(&url).await.unwrap();
    let started = Instant::now();
    let state = loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&mut observer)
                .await
                .unwrap();
        if state.as_deref() != Some("active") || started.elapsed() > Duration::from_secs(20) {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Give a queued ROLLBACK time to be flushed by the release.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled: Option<String> =
        sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_optional(&mut observer)
            .await
            .unwrap();
    assert_eq!(
        settled.as_deref(),
        Some("idle"),
        "a cancelled BEGIN left its session {state:?} then {settled:?}: the pool would hand it out inside a transaction"
    );
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1, "the pooled connection is still usable");
    pool.close().await;
    observer.close().await.ok();
}

/// The driver on its own (vendor/sqlx-core, upstream PR #4336): a TCP connection to the
/// database has `TCP_NODELAY`, or every message sent right after another (`COPY`'s
/// `CopyDone`) waits about 40 ms for the server's delayed ACK. The test finds the connection's
/// socket among the process's descriptors (by the port the server sees) and reads the option.
async fn postgres_database_connections_send_without_delay(_backend: Backend) {
    use rustix::{
        net::{getsockname, sockopt::tcp_nodelay},
        process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open},
    };
    use sea_orm::sqlx::{self, Connection, postgres::PgConnection};
    let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let port = port.expect("the test database is reached over TCP (a host, not a socket path)");
    let me = pidfd_open(getpid(), PidfdFlags::empty()).unwrap();
    let mut nodelay = None;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        // A copy of the descriptor, so nothing here can close the driver's.
        let Some(copy) = is_socket
            .then(|| pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()).ok())
            .flatten()
        else {
            continue;
        };
        let local = getsockname(&copy)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if local.is_some_and(|a| i32::from(a.port()) == port) {
            nodelay = Some(tcp_nodelay(&copy).unwrap());
            break;
        }
    }
    assert_eq!(
        nodelay,
        Some(true),
        "the database connection (local port {port}) should have TCP_NODELAY set"
    );
    conn.close().await.ok();
}

/// The pool's own check, whatever the driver does: a session left inside a transaction block
/// the driver does not know of (here a bare `BEGIN`) is closed, not handed to the next caller.
async fn postgres_a_pooled_connection_left_in_a_transaction_is_never_handed_out(_backend: Backend) {
    let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
    let db = persistence::connect(
        &url,
        None,
        persistence::PoolOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let observer = observer_on(&url, None).await;
    let table = format!("lk_pool_probe_{}", uuid::Uuid::new_v4().simple());
    observer
        .execute_unprepared(&format!("CREATE TABLE {table} (n INT)"))
        .await
        .unwrap();
    let pid_of =
        |db: DatabaseConnection| async move { scalar(&db, "SELECT pg_backend_pid()").await };
    let before = pid_of(db.clone()).await;
    db.execute_unprepared("BEGIN").await.unwrap();
    // The one pooled connection is now inside a block the driver never opened. The next
    // caller's write must be its own, committed at once.
    db.execute_unprepared(&format!("INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    let seen = scalar(&observer, &format!("SELECT COUNT(*) FROM {table}")).await;
    let after = pid_of(db.clone()).await;
    let gone_sql = format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {before}");
    let started = Instant::now();
    let mut gone = scalar(&observer, &gone_sql).await;
    while gone != 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone = scalar(&observer, &gone_sql).await;
    }
    observer
        .execute_unprepared(&format!("DROP TABLE {table}"))
        .await
        .ok();
    assert_eq!(
        seen, 1,
        "the write ran inside the transaction a previous borrower left open"
    );
    assert_ne!(
        before, after,
        "the tainted session was replaced by a new one"
    );
    assert_eq!(
        gone, 0,
        "the tainted session was closed (its transaction rolled back)"
    );
    db.close().await.ok();
    observer.close().await.ok();
}

/// `idle_in_transaction_session_timeout` is set on every session of the pool: a transaction
/// left waiting on the client is ended by the server, so it cannot hold rows for minutes.
async fn postgres_the_server_ends_a_transaction_left_idle_past_the_timeout(_backend: Backend) {
    use sea_orm::TransactionTrait;
    let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
    let default = persistence::connect(&url, None, persistence::PoolOptions::default())
        .await
        .unwrap();
    let shown = default
        .query_one_raw(Statement::from_string(
            default.get_database_backend(),
            "SHOW idle_in_transaction_session_timeout",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "idle_in_transaction_session_timeout")
        .unwrap();
    assert_eq!(
        shown, "10s",
        "the default, a few seconds above any transaction of ours"
    );
    default.close().await.ok();

    let db = persistence::connect(
        &url,
        None,
        persistence::PoolOptions {
            max_connections: 2,
            idle_in_transaction_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let late = txn.execute_unprepared("SELECT 1").await;
    assert!(
        late.is_err(),
        "a transaction idle for longer than the timeout must have been ended by the server"
    );
    drop(txn);
    // The pool recovers by itself.
    assert_eq!(scalar(&db, "SELECT 1").await, 1);
    db.close().await.ok();
}

/// "I clicked Reset My Password and closed the tab": the request was accepted, so the email
/// arrives. The database is made slow on purpose (another session holds the lock the request's
/// transaction needs) so the client is gone while the transaction is still waiting.
async fn a_reset_requested_by_a_client_that_hangs_up_is_still_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("left@example.com", PASSWORD).await;
    let observer = observer(&app).await;
    let blocker = hold_the_lock_a_reset_needs(&observer, backend).await;
    let body = json!({
        "query": "mutation($e: String!) { requestPasswordReset(email: $e) }",
        "variables": {"e": "left@example.com"},
    })
    .to_string();
    let addr = app.addr;
    let stream = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        stream
    })
    .await
    .unwrap();
    wait_until_blocked(&app, backend).await;
    // The client gives up and closes the tab; the server notices before the lock is released.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.commit().await.unwrap();

    let sent = "SELECT COUNT(*) FROM email_outbox WHERE recipient = 'left@example.com' AND status = 'sent'";
    let started = Instant::now();
    while scalar(&observer, sent).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the reset requested by a client that hung up was never sent ({} outbox rows)",
            scalar(&observer, "SELECT COUNT(*) FROM email_outbox").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observer.close().await.ok();
}

/// Detached operations are bounded: with the limit taken (one slot, held by a request stuck
/// behind a lock), the next request is refused at once with 503 RATE_LIMITED, and runs nothing.
async fn operations_past_the_limit_are_refused_with_503_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_operations = 1).await;
    app.without_reset_limits().await;
    app.create_customer("first@example.com", PASSWORD).await;
    app.create_customer("second@example.com", PASSWORD).await;
    let observer = observer(&app).await;
    let blocker = hold_the_lock_a_reset_needs(&observer, backend).await;
    let first = {
        let (client, url) = (app.client.clone(), app.url("/graphql"));
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(json!({"query": "mutation { requestPasswordReset(email: \"first@example.com\") }"}).to_string())
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    wait_until_blocked(&app, backend).await;
    // The first request holds the only slot (waiting for the lock): the second is refused.
    let refused = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(
            json!({"query": "mutation { requestPasswordReset(email: \"second@example.com\") }"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(crate::helpers::code(&body), "RATE_LIMITED", "{body}");
    blocker.commit().await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(
        first["data"]["requestPasswordReset"], true,
        "the request holding the slot completes: {first}"
    );
    let second = scalar(
        &observer,
        "SELECT COUNT(*) FROM email_outbox WHERE recipient = 'second@example.com'",
    )
    .await;
    assert_eq!(second, 0, "the refused request changed nothing");
    // The slot is free again.
    assert_eq!(
        app.request_reset("second@example.com").await["data"]["requestPasswordReset"],
        true
    );
    observer.close().await.ok();
}

/// An operator sees how far behind delivery is: each undelivered message's age (oldest first)
/// in `undeliveredMail`, and `latchkey_mail_oldest_pending_seconds` on `/metrics`.
async fn a_stalled_queue_shows_its_age_to_admins_and_in_the_metric(backend: Backend) {
    let (mut app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("waiting@example.com", PASSWORD).await;
    let admin = app.admin_token("administrator").await;
    smtp.reject_with(Some("451 4.3.0 mailbox busy, try later"));
    assert_eq!(
        app.request_reset("waiting@example.com").await["data"]["requestPasswordReset"],
        true
    );
    // The mail worker turns the recorded request into an outbox row (at once, off the request
    // path) and fails to send it.
    let started = Instant::now();
    while app
        .gql_as(Some(&admin), "{ undeliveredMail { recipient } }", json!({}))
        .await["data"]["undeliveredMail"][0]
        .is_null()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the recorded request never became an outbox row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.clock.advance(chrono::Duration::seconds(90));
    let queued = app
        .gql_as(
            Some(&admin),
            "{ undeliveredMail { recipient status ageSeconds } }",
            json!({}),
        )
        .await;
    let oldest = &queued["data"]["undeliveredMail"][0];
    assert_eq!(oldest["recipient"], "waiting@example.com", "{queued}");
    assert!(
        oldest["ageSeconds"].as_i64().unwrap() >= 90,
        "the age follows the clock: {queued}"
    );

    // The metric, from the real binary (its own process, its own clock and recorder), with mail
    // going nowhere.
    app.stop().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = ServerProcess::start(
        &app.config,
        &[("LATCHKEY_SMTP_URL", format!("smtp://{dead}"))],
    )
    .await;
    let gauge = || server.metric("latchkey_mail_oldest_pending_seconds{lane=\"interactive\"}");
    let started = Instant::now();
    loop {
        // Queued when the test began (the test clock started at the real time).
        if gauge().await.is_some_and(|age| age >= 1.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "latchkey_mail_oldest_pending_seconds never showed the waiting message: {:?}",
            gauge().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
