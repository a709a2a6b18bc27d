//! What Latchkey's tests share below the server: the use cases of `crates/domain` wired on the
//! real repositories of `crates/persistence` over a fresh SQLite file, at a fixed time (a
//! manual clock), with a hasher that costs nothing. A rule tested here fails in seconds and
//! points at its use case; no HTTP, GraphQL or worker is involved.

// A test that cannot set up its database should stop right there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pgbouncer;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    accounts::{Accounts, CreateCustomerInput, Wiring},
    admin::{AdminLinks, AdminUsers, Admins},
    bulk::BulkJobs,
    clock::{Clock, ManualClock},
    customer::{ClientInfo, Customer},
    email_change::{DEFAULT_REVERT_WINDOW, EmailChangeLinks, EmailChanges},
    erasure::Erasure,
    password::{NewPassword, PasswordCandidate},
    ports::{MailSignal, PasswordHasher, Verification},
    reset::{ResetLinks, Resets},
    sign_in::{SessionCaps, SignIn},
    token::TokenCodec,
};
use persistence::Stores;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

pub const PASSWORD: &str = "kx7!qzmw-2026";
pub const ADMIN_PASSWORD: &str = "admin-Password-2026";

/// A hasher that costs nothing: the "hash" is the password behind a marker no real format
/// uses. The rules under test never look inside a hash.
pub struct PlainHasher;

const PLAIN: &str = "$test-plain$";

#[async_trait]
impl PasswordHasher for PlainHasher {
    async fn hash(&self, password: &NewPassword) -> Result<String> {
        Ok(format!("{PLAIN}{}", password.expose()))
    }

    async fn verify(
        &self,
        candidate: &PasswordCandidate,
        stored: Option<&str>,
    ) -> Result<Verification> {
        Ok(match stored.and_then(|s| s.strip_prefix(PLAIN)) {
            Some(plain) if plain == candidate.expose() => Verification::Match { rehash: None },
            _ => Verification::Mismatch,
        })
    }
}

/// Mail is only queued here; nobody needs waking.
pub struct NoWorker;

impl MailSignal for NoWorker {
    fn notify(&self) {}
}

/// One database, its repositories, a manual clock and the shared parts of every use case.
pub struct Harness {
    pub db: DatabaseConnection,
    pub stores: Stores,
    pub clock: Arc<ManualClock>,
    pub parts: Wiring,
    file: std::path::PathBuf,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_caps(SessionCaps::default()).await
    }

    pub async fn with_caps(caps: SessionCaps) -> Self {
        let file =
            std::env::temp_dir().join(format!("latchkey-use-cases-{}.db", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = persistence::connect(&url, None, persistence::PoolOptions::default())
            .await
            .unwrap();
        persistence::migrate(&db).await.unwrap();
        let stores = Stores::new(db.clone());
        let clock = Arc::new(ManualClock::starting_at(
            "2026-12-06T09:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        ));
        let tokens = TokenCodec::new(&[7u8; 32]).unwrap();
        let hasher: Arc<dyn PasswordHasher> = Arc::new(PlainHasher);
        let sign_in = Arc::new(SignIn::new(
            stores.credentials.clone(),
            stores.limits.clone(),
            hasher.clone(),
            tokens.clone(),
            clock.clone(),
            caps,
        ));
        let parts = Wiring {
            hasher,
            limiter: stores.limits.clone(),
            settings: stores.settings.clone(),
            tokens,
            clock: clock.clone(),
            sign_in,
            guard: Arc::new(domain::guard::AttackGuard::new(
                stores.limits.clone(),
                clock.clone(),
                domain::guard::WorkKey::derive(&[9u8; 32]).unwrap(),
            )),
            store_name: "Test Store".to_owned(),
        };
        Self {
            db,
            stores,
            clock,
            parts,
            file,
        }
    }

    pub fn resets(&self) -> Resets {
        Resets::new(
            self.stores.resets.clone(),
            self.stores.accounts.clone(),
            self.parts.clone(),
            ResetLinks::new(
                "https://shop.example/reset?token={token}".to_owned(),
                Vec::new(),
            )
            .unwrap(),
            Arc::new(NoWorker),
        )
    }

    pub fn email_changes(&self) -> EmailChanges {
        EmailChanges::new(
            self.stores.email_changes.clone(),
            self.parts.clone(),
            EmailChangeLinks::under("https://shop.example"),
            Arc::new(NoWorker),
            DEFAULT_REVERT_WINDOW,
        )
    }

    /// Security-event subscriptions, with development's rules for receivers' URLs.
    pub fn integrations(&self) -> domain::events::Integrations {
        domain::events::Integrations::new(
            self.stores.events.clone(),
            self.clock.clone(),
            domain::events::EndpointPolicy::open(),
            &[9u8; 32],
        )
        .unwrap()
    }

    pub fn erasure(&self) -> Erasure {
        Erasure::new(self.stores.erasure.clone(), self.parts.clone())
    }

    /// Bearer token to principal, as every request resolves it.
    pub fn auth(&self) -> domain::auth::Authenticator {
        domain::auth::Authenticator::new(
            self.stores.sessions.clone(),
            self.parts.tokens.clone(),
            self.parts.clock.clone(),
        )
    }

    /// The principal of a live `token` (`None`: not a live token of either kind).
    pub async fn principal(&self, token: &str) -> Option<domain::auth::Principal> {
        self.auth()
            .authenticate(&domain::kernel::bearer::BearerToken::new(token))
            .await
            .unwrap()
            .map(|a| a.principal)
    }

    /// The customer signed in with a live `token`.
    pub async fn customer_principal(
        &self,
        token: &str,
    ) -> Option<domain::accounts::CustomerPrincipal> {
        match self.principal(token).await? {
            domain::auth::Principal::Customer(c) => Some(c),
            domain::auth::Principal::Admin(_) => None,
        }
    }

    /// The admin signed in with a live `token`.
    pub async fn admin_principal(&self, token: &str) -> Option<domain::admin::AdminPrincipal> {
        match self.principal(token).await? {
            domain::auth::Principal::Admin(a) => Some(a),
            domain::auth::Principal::Customer(_) => None,
        }
    }

    pub fn admins(&self) -> Admins {
        Admins::new(self.stores.admin.clone(), self.parts.clone())
    }

    pub fn admin_users(&self) -> AdminUsers {
        AdminUsers::new(
            self.stores.admin_users.clone(),
            self.parts.clone(),
            AdminLinks::under("https://shop.example"),
            Arc::new(NoWorker),
        )
    }

    /// "This wasn't me", its links made with a fixed key.
    pub fn reports(&self) -> domain::report::Reports {
        domain::report::Reports::new(
            self.stores.reports.clone(),
            self.parts.clone(),
            self.report_links(),
            Arc::new(NoWorker),
        )
    }

    pub fn report_links(&self) -> domain::report::ReportLinks {
        domain::report::ReportLinks::new(&[7u8; 32], "https://shop.example")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Admins' second factors, their secrets sealed under a fixed key.
    /// Admins' factors where the store does not require one (admins without a factor sign in
    /// with the password alone, as [`Self::admin_token`] does).
    pub fn factors(&self) -> domain::factors::AdminFactors {
        self.factors_with(domain::factors::FactorPolicy::Optional)
    }

    pub fn factors_with(
        &self,
        policy: domain::factors::FactorPolicy,
    ) -> domain::factors::AdminFactors {
        domain::factors::AdminFactors::new(
            self.stores.factors.clone(),
            self.parts.clone(),
            Arc::new(NoWorker),
            &[7u8; 32],
            policy,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn bulk(&self) -> BulkJobs {
        BulkJobs::new(
            self.stores.bulk.clone(),
            self.stores.settings.clone(),
            self.clock.clone(),
            ResetLinks::new(
                "https://shop.example/reset?token={token}".to_owned(),
                Vec::new(),
            )
            .unwrap(),
            Arc::new(NoWorker),
            Arc::new(NoWorker),
        )
    }

    /// An admin with `role` and [`ADMIN_PASSWORD`], signed in: their bearer token.
    pub async fn admin_token(&self, username: &str, role: &str) -> String {
        let admins = self.admins();
        admins
            .create_admin(username, ADMIN_PASSWORD, role, None)
            .await
            .unwrap();
        self.factors()
            .sign_in(username, ADMIN_PASSWORD, Self::client("192.0.2.200"))
            .await
            .unwrap()
            .token
    }

    /// `email`'s bearer token (the customer exists).
    pub async fn customer_token(&self, email: &str) -> String {
        self.accounts()
            .sign_in(email, PASSWORD, Self::client("192.0.2.201"), None)
            .await
            .unwrap()
            .token
    }

    pub fn accounts(&self) -> Accounts {
        Accounts::new(
            self.stores.accounts.clone(),
            self.parts.clone(),
            Arc::new(NoWorker),
        )
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A client at `ip`.
    pub fn client(ip: &str) -> ClientInfo {
        ClientInfo::new(ip.parse().ok(), None)
    }

    pub async fn customer(&self, email: &str) -> Customer {
        self.accounts()
            .create_customer(
                CreateCustomerInput {
                    email: email.to_owned(),
                    firstname: "Ann".to_owned(),
                    lastname: "Lee".to_owned(),
                    password: PASSWORD.to_owned(),
                    locale: None,
                },
                &Self::client("192.0.2.1"),
                None,
            )
            .await
            .unwrap()
    }

    /// One number from the database (`SELECT COUNT(*) AS n …`).
    /// Changes settings (SQL assignments, e.g. `"challenge_after_name_failures = 0"`).
    pub async fn set_settings(&self, assignments: &str) {
        self.db
            .execute_unprepared(&format!("UPDATE settings SET {assignments} WHERE id = 1"))
            .await
            .unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    }

    /// `column` of the newest queued mail of `kind` to `to`.
    pub async fn newest_mail<T: sea_orm::TryGetable>(
        &self,
        kind: &str,
        to: &str,
        column: &str,
    ) -> T {
        self.db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "SELECT {column} FROM email_outbox WHERE kind = '{kind}' AND recipient = '{to}' \
                     ORDER BY created_at DESC, id DESC LIMIT 1"
                ),
            ))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {kind} mail to {to}"))
            .try_get("", column)
            .unwrap()
    }

    /// The raw token of the newest queued mail's link of `kind` to `to`.
    pub async fn link_token(&self, kind: &str, to: &str) -> String {
        let link: String = self.newest_mail(kind, to, "link").await;
        link.split("token=")
            .nth(1)
            .and_then(|t| t.split('&').next())
            .unwrap()
            .to_owned()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.file.display()));
        }
    }
}
