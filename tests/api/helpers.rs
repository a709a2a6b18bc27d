//! `TestApp`: a real Latchkey server on port 0 with a fresh database and a controllable clock.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use domain::clock::{Clock, ManualClock};
use latchkey::config::{Config, Pooler, Secret};
use reqwest::header::CONTENT_TYPE;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use testkit::pgbouncer::{PgBouncer, Upstream};

use crate::smtp::SmtpReceiver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL through a PgBouncer in transaction mode that the test starts.
    PgBouncer,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::PgBouncer => "pgbouncer",
        }
    }
}

pub fn postgres_url() -> Option<String> {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

pub const PASSWORD: &str = "kx7!qzmw";

/// RFC 4226's HOTP with RFC 6238's step: what any authenticator app computes (SHA-1, six
/// digits, 30 seconds), written here rather than borrowed from the server's crate.
pub fn totp(base32_key: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    use hmac::{Hmac, Mac};
    let key = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, base32_key)
        .expect("the shown key is base32");
    let counter = u64::try_from(at.timestamp()).unwrap() / 30;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where this server serves `/metrics` (its own listener, never the API port).
    pub metrics_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub db: sea_orm::DatabaseConnection,
    /// Statements the server has run (the admin grid's constant-cost proof).
    pub statements: Arc<std::sync::atomic::AtomicU64>,
    /// The server's session cache: a change made straight on the database waits for it, as a
    /// request's would.
    pub session_cache: Option<persistence::Coherence>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    dir: Option<PathBuf>,
    pg_schema: Option<String>,
    /// The PgBouncer this app's replicas share, and the role it logs in as (`PgBouncer` only).
    pgbouncer: Option<(PgBouncer, String)>,
    /// The recovery codes of the admins [`Self::admin_sign_in`] enrolled (the store requires
    /// a second factor by default), by lower-case username: each later sign-in spends one.
    recovery: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server that sends mail over SMTP to a receiver the test owns.
    pub async fn with_smtp(backend: Backend) -> (Self, SmtpReceiver) {
        let smtp = SmtpReceiver::start().await;
        let url = smtp.url();
        let app = Self::spawn_with(backend, |c| c.smtp_url = Some(Secret::new(url))).await;
        (app, smtp)
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        capture_logs();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut config = Config {
            mail_from: "Test Store <shop@example.com>".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: "127.0.0.1:0".into(),
            database_max_connections: 4,
            ..Config::default()
        };
        // Every app gets a private folder: the SQLite file (if any) and `.eml` mail.
        let path = std::env::temp_dir().join(format!("latchkey-test-{id}"));
        std::fs::create_dir_all(&path).unwrap();
        config.mail_dir = path.join("mail");
        let dir = Some(path.clone());
        let mut pg_schema = None;
        match backend {
            Backend::Sqlite => {
                config.database_url = format!("sqlite://{}/latchkey.db?mode=rwc", path.display());
            }
            Backend::Postgres | Backend::PgBouncer => {
                let url = postgres_url().expect("LATCHKEY_TEST_POSTGRES_URL");
                let schema = format!("t_{id}");
                let admin = Database::connect(&url).await.unwrap();
                // pg_trgm lives in `public`, as a deployment would have it: were it created
                // in a test's schema, dropping that schema would drop it under the others.
                static TRGM: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
                TRGM.get_or_init(|| async {
                    admin
                        .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
                        .await
                        .unwrap();
                })
                .await;
                if backend == Backend::PgBouncer {
                    // As a deployment behind PgBouncer would have it: a role of its own whose
                    // settings give the search path (no session state from Latchkey).
                    admin
                        .execute_unprepared(&format!(
                            "CREATE ROLE {schema} LOGIN; \
                             CREATE SCHEMA {schema} AUTHORIZATION {schema}; \
                             ALTER ROLE {schema} SET search_path = {schema}"
                        ))
                        .await
                        .unwrap();
                } else {
                    admin
                        .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                        .await
                        .unwrap();
                    config.database_schema = Some(schema.clone());
                }
                admin.close().await.ok();
                config.database_url = url;
                config.jwt_secret = Some(Secret::new(format!("test-secret-{id}-{id}")));
                pg_schema = Some(schema);
            }
        }
        adjust(&mut config);
        let mut pgbouncer = None;
        if backend == Backend::PgBouncer {
            // After `adjust`, which may have pointed the URL at a proxy in front of PostgreSQL:
            // PgBouncer goes in front of whatever the URL names.
            let role = pg_schema.clone().unwrap();
            let url = reqwest::Url::parse(&config.database_url).unwrap();
            let upstream = Upstream {
                host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
                port: url.port().unwrap_or(5432),
                dbname: url.path().trim_start_matches('/').to_owned(),
                role: role.clone(),
            };
            let bouncer = PgBouncer::start(&upstream, 6).await.unwrap();
            config.database_url = bouncer.url();
            config.database_pooler = Pooler::Transaction;
            // The session log's LISTEN goes around PgBouncer, as a deployment's would.
            if config.database_direct_url.is_none() {
                config.database_direct_url = Some(Secret::new(format!(
                    "postgres://{role}@{}:{}/{}",
                    upstream.host, upstream.port, upstream.dbname
                )));
            }
            pgbouncer = Some((bouncer, role));
        }
        if backend != Backend::Sqlite {
            latchkey::migrate(&config).await.unwrap();
        }
        let clock = Arc::new(ManualClock::default());
        let mut app = Self {
            addr: config.listen,
            metrics_addr: None,
            client: reqwest::Client::builder()
                .user_agent("latchkey-tests")
                .build()
                .unwrap(),
            clock,
            db: sea_orm::DatabaseConnection::default(),
            statements: Arc::default(),
            session_cache: None,
            config,
            shutdown: None,
            server: None,
            dir,
            pg_schema,
            pgbouncer,
            recovery: Arc::default(),
        };
        app.start().await;
        // Most tests send many wrong passwords from one address: the proof-of-work challenge
        // is asked for only where a test turns it on (`attack.rs`, with the defaults).
        app.set_settings("challenge_after_name_failures = 0, challenge_after_network_failures = 0")
            .await;
        app
    }

    /// Another server on the same database, configuration and clock: a replica. Dropping it
    /// stops it and leaves the database alone.
    pub async fn replica(&self) -> TestApp {
        let mut replica = TestApp {
            addr: self.addr,
            metrics_addr: None,
            client: self.client.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            db: sea_orm::DatabaseConnection::default(),
            statements: Arc::default(),
            session_cache: None,
            shutdown: None,
            server: None,
            dir: None,
            pg_schema: None,
            pgbouncer: None,
            recovery: self.recovery.clone(),
        };
        replica.start().await;
        replica
    }

    /// Starts a server on `self.config` and the existing database (after [`stop`]).
    pub async fn start(&mut self) {
        let server = latchkey::build(&self.config, self.clock.clone())
            .await
            .unwrap();
        self.db = server.db.clone();
        self.statements = server.statements.clone();
        self.session_cache = Some(server.session_cache.clone());
        self.metrics_addr = server.metrics_addr();
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .unwrap();
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.server = Some(tokio::spawn(async move {
            latchkey::serve(server, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
        self.shutdown = Some(tx);
    }

    /// Stops the server the way SIGTERM does (graceful), keeping the database.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            handle.await.unwrap();
        }
    }

    /// Creates an admin with `role` (as `latchkey admin create` does) and signs in.
    pub async fn admin_token(&self, role: &str) -> String {
        let username = format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = "admin-Password-2026";
        latchkey::create_admin(&self.config, &username, role, password)
            .await
            .unwrap();
        let res = self.admin_sign_in(&username, password).await;
        res["token"]
            .as_str()
            .unwrap_or_else(|| panic!("admin sign-in failed: {res}"))
            .to_owned()
    }

    /// Keeps the recovery codes an admin was shown (a browser test read them off the page).
    pub fn keep_recovery_codes(&self, username: &str, codes: Vec<String>) {
        self.recovery
            .lock()
            .unwrap()
            .insert(username.to_lowercase(), codes);
    }

    /// One of the kept recovery codes of `username`, spent by the caller.
    pub fn recovery_code(&self, username: &str) -> String {
        self.recovery
            .lock()
            .unwrap()
            .get_mut(&username.to_lowercase())
            .and_then(Vec::pop)
            .unwrap_or_else(|| panic!("{username} has a factor this test app did not enrol"))
    }

    /// An admin's sign-in as the console makes it: the password, then (the store requires a
    /// second factor by default) the first enrolment of an authenticator app, or one of the
    /// recovery codes that enrolment gave. `{"token", "expiresAt"}` when signed in; else the
    /// response of the step that refused, with its `errors`.
    pub async fn admin_sign_in(&self, username: &str, password: &str) -> Value {
        const START: &str = "mutation($u: String!, $p: String!) { startAdminSignIn(username: $u, password: $p) { token { token expiresAt } challenge enrolmentRequired } }";
        let res = self.gql(START, json!({"u": username, "p": password})).await;
        if !res["errors"].is_null() {
            return res;
        }
        let step = &res["data"]["startAdminSignIn"];
        if step["token"].is_object() {
            return step["token"].clone();
        }
        let challenge = step["challenge"].as_str().unwrap();
        if step["enrolmentRequired"] == true {
            let started = self
                .gql(
                    "mutation($c: String!) { startAdminEnrolment(challenge: $c, name: \"Test app\") { factorId secret } }",
                    json!({"c": challenge}),
                )
                .await;
            if !started["errors"].is_null() {
                return started;
            }
            let enrolment = &started["data"]["startAdminEnrolment"];
            let code = totp(enrolment["secret"].as_str().unwrap(), self.clock.now());
            let done = self
                .gql(
                    "mutation($c: String!, $f: ID!, $code: String!) { completeAdminEnrolment(challenge: $c, factorId: $f, code: $code) { token { token expiresAt } recoveryCodes } }",
                    json!({"c": challenge, "f": enrolment["factorId"], "code": code}),
                )
                .await;
            if !done["errors"].is_null() {
                return done;
            }
            let enrolled = &done["data"]["completeAdminEnrolment"];
            let codes = enrolled["recoveryCodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            self.keep_recovery_codes(username, codes);
            return enrolled["token"].clone();
        }
        let code = self.recovery_code(username);
        let done = self
            .gql(
                "mutation($c: String!, $code: String!) { completeAdminSignIn(challenge: $c, code: $code) { token expiresAt } }",
                json!({"c": challenge, "code": code}),
            )
            .await;
        if !done["errors"].is_null() {
            return done;
        }
        done["data"]["completeAdminSignIn"].clone()
    }

    /// The id of the customer with this email.
    pub async fn customer_id(&self, email: &str) -> String {
        let token = self.sign_in(email, PASSWORD).await;
        let res = self
            .gql_as(Some(&token), "{ customer { id } }", json!({}))
            .await;
        res["data"]["customer"]["id"].as_str().unwrap().to_owned()
    }

    /// Changes settings in the database (SQL assignments, e.g. `"max_reset_requests_per_hour = 3"`).
    pub async fn set_settings(&self, assignments: &str) {
        use sea_orm::ConnectionTrait;
        self.db
            .execute_unprepared(&format!("UPDATE settings SET {assignments} WHERE id = 1"))
            .await
            .unwrap();
        // Straight on the database: it reaches every server's kept settings through the
        // session log, and the test waits for that as the admin mutation would.
        self.caches_applied().await;
    }

    /// Turns reset request limits off (tests of other rules request many resets).
    pub async fn without_reset_limits(&self) {
        self.set_settings("reset_request_limit_method = 'OFF'")
            .await;
    }

    pub async fn request_reset(&self, email: &str) -> Value {
        self.gql(
            "mutation($e: String!) { requestPasswordReset(email: $e) }",
            json!({"e": email}),
        )
        .await
    }

    pub async fn reset_password(&self, token: &str, password: &str) -> Value {
        self.gql(
            "mutation($t: String!, $p: String!) { resetPassword(resetPasswordToken: $t, newPassword: $p) }",
            json!({"t": token, "p": password}),
        )
        .await
    }

    /// The Prometheus text from this server's metrics listener.
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("the metrics listener is on");
        self.client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs one GraphQL operation, optionally with a bearer token; returns the JSON body.
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"query": query, "variables": variables}).to_string());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "GraphQL responses are 200");
        res.json().await.unwrap()
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(None, query, variables).await
    }

    pub async fn create_customer(&self, email: &str, password: &str) -> Value {
        let res = self
            .gql(
                "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id email firstname lastname locale createdAt } }",
                json!({"i": {"email": email, "firstname": "Ann", "lastname": "Lee", "password": password}}),
            )
            .await;
        assert!(res["errors"].is_null(), "createCustomer failed: {res}");
        res["data"]["createCustomer"].clone()
    }

    pub async fn sign_in_response(&self, email: &str, password: &str) -> Value {
        self.gql(
            "mutation($e: String!, $p: String!) { generateCustomerToken(email: $e, password: $p) { token expiresAt } }",
            json!({"e": email, "p": password}),
        )
        .await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let res = self.sign_in_response(email, password).await;
        res["data"]["generateCustomerToken"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("sign-in failed: {res}"))
            .to_owned()
    }

    /// `{ customer { email } }` with `token`: the email, or the error code.
    pub async fn whoami(&self, token: &str) -> Result<String, String> {
        let res = self
            .gql_as(Some(token), "{ customer { email } }", json!({}))
            .await;
        match res["data"]["customer"]["email"].as_str() {
            Some(email) => Ok(email.to_owned()),
            None => Err(code(&res).to_owned()),
        }
    }

    /// The `latchkey` binary with `args`, pointed at this app's database, schema, secret and
    /// mail folder (how an operator runs the CLI beside a running server).
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.args(args)
            .envs(database_env(&self.config))
            .env("LATCHKEY_MAIL_DIR", &self.config.mail_dir)
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Audit entries, but for the enrolments of the test's own admins: the store requires a
    /// second factor, so each admin the helpers sign in enrols one (audited as
    /// ENROL_ADMIN_FACTOR) before any action of the test.
    pub async fn audited(&self) -> i64 {
        self.scalar("SELECT COUNT(*) AS n FROM audit_log WHERE action <> 'ENROL_ADMIN_FACTOR'")
            .await
    }

    /// Counts rows of a table (to prove a rejected request stored nothing).
    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .await
    }

    /// Runs `sql` (placeholders written `$1`, `$2`…, as PostgreSQL spells them) with `values`
    /// straight on the app's database.
    pub async fn execute(&self, sql: &str, values: Vec<sea_orm::Value>) {
        self.db
            .execute_raw(self.statement(sql, values))
            .await
            .unwrap();
        self.caches_applied().await;
    }

    /// Waits until every replica's session cache has read the log (as a revoking request
    /// does before it answers).
    pub async fn caches_applied(&self) {
        if let Some(cache) = &self.session_cache {
            cache.confirm().await;
        }
    }

    /// The one row `sql` (placeholders as in [`TestApp::execute`]) reads.
    pub async fn query_one(&self, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::QueryResult {
        self.db
            .query_one_raw(self.statement(sql, values))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// `sql` with PostgreSQL's `$n` placeholders, as this app's database spells them.
    fn statement(&self, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
        let backend = self.db.get_database_backend();
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => sql.to_owned(),
            _ => (1..=values.len()).rev().fold(sql.to_owned(), |s, n| {
                s.replace(&format!("${n}"), &format!("?{n}"))
            }),
        };
        sea_orm::Statement::from_sql_and_values(backend, sql, values)
    }

    /// Waits (up to 20 s) until no mail is on its way: no message being sent, none due by the
    /// app's clock left unsent, no reset request unresolved. A message is on the SMTP receiver
    /// before its row is marked sent, so afterwards the receiver holds everything the server
    /// sends until the clock moves: the event a "nothing (more) was sent" check waits for.
    pub async fn mail_settled(&self) {
        let started = std::time::Instant::now();
        loop {
            // Requests first: the worker turns a request into an outbox row in one transaction,
            // so once none is left, every message it will send is in the outbox.
            let requests = self.count("reset_requests").await;
            let now = domain::clock::Clock::now(self.clock.as_ref());
            let rows = self
                .db
                .query_all_raw(sea_orm::Statement::from_string(
                    self.db.get_database_backend(),
                    "SELECT status, next_attempt_at FROM email_outbox \
                     WHERE status IN ('pending', 'sending')",
                ))
                .await
                .unwrap();
            let on_its_way = rows.iter().any(|row| {
                let status: String = row.try_get("", "status").unwrap();
                let due: chrono::DateTime<chrono::Utc> =
                    row.try_get("", "next_attempt_at").unwrap();
                status == "sending" || due <= now
            });
            if requests == 0 && !on_its_way {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "mail still on its way after 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 60 s) until every queued message is marked sent, whoever sends it (server
    /// processes on their own clocks included): a message is on the SMTP receiver before its
    /// row is marked sent, and a sent one is never sent again.
    /// Reads through a connection of its own, so it works after [`TestApp::stop`].
    pub async fn outbox_delivered(&self) {
        use sea_orm::ConnectionTrait;
        let (db, _) = latchkey::connect(&self.config).await.unwrap();
        let started = std::time::Instant::now();
        let unsent = "SELECT (SELECT COUNT(*) FROM email_outbox WHERE status <> 'sent') \
                      + (SELECT COUNT(*) FROM reset_requests) AS n";
        let left = || async {
            db.query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                unsent,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        };
        while left().await > 0 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "mail left unsent after 60 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The one BIGINT `n` of one row, read straight from the app's database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.server.take() {
            handle.abort();
        }
        if let Some(dir) = self.dir.take() {
            std::fs::remove_dir_all(dir).ok();
        }
        // PgBouncer goes first: its server sessions would keep the role from being dropped.
        let role = self.pgbouncer.take().map(|(bouncer, role)| {
            drop(bouncer);
            role
        });
        if let Some(schema) = self.pg_schema.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let url = postgres_url().unwrap_or_default();
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(db) = Database::connect(&url).await {
                            // A server that left a transaction open (the bug the hang-up
                            // tests look for) would hold its locks: give up instead of hanging.
                            let _ = db
                                .execute_unprepared(&format!(
                                    "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                                ))
                                .await;
                            if let Some(role) = role {
                                let _ = db
                                    .execute_unprepared(&format!(
                                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                         WHERE usename = '{role}'; DROP ROLE IF EXISTS {role}"
                                    ))
                                    .await;
                            }
                            db.close().await.ok();
                        }
                    });
                }
            })
            .join()
            .ok();
        }
    }
}

/// The environment that points a `latchkey` process at `config`'s database: URL, schema or
/// pooler, secret and key-encryption key.
pub fn database_env(config: &Config) -> Vec<(&'static str, String)> {
    let mut env = vec![("DATABASE_URL", config.database_url.clone())];
    if let Some(schema) = &config.database_schema {
        env.push(("LATCHKEY_DATABASE_SCHEMA", schema.clone()));
    }
    if config.database_pooler == Pooler::Transaction {
        env.push(("LATCHKEY_DATABASE_POOLER", "transaction".to_owned()));
    }
    if let Some(url) = &config.database_direct_url {
        env.push(("LATCHKEY_DATABASE_DIRECT_URL", url.expose().to_owned()));
    }
    if let Some(secret) = &config.jwt_secret {
        env.push(("LATCHKEY_JWT_SECRET", secret.expose().to_owned()));
    }
    if let Some(kek) = &config.key_encryption_key {
        env.push(("LATCHKEY_KEY_ENCRYPTION_KEY", kek.expose().to_owned()));
    }
    env
}

/// The first error's `extensions.code`.
pub fn code(res: &Value) -> &str {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {res}"))
}

/// Everything every server in this test process logged, for "never logged" assertions.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a process-wide subscriber at TRACE for our crates, writing into memory.
fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let buffer = LOGS.get_or_init(Default::default).clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace,sqlx=info,sea_orm=info,h2=info,hyper=info,reqwest=info")
            .with_writer(move || LogWriter(buffer.clone()))
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
