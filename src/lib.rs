//! The Latchkey server: configuration, wiring of storage and hashing into the use cases, the
//! HTTP edge, and the CLI's commands.

pub mod captcha;
pub mod client_ip;
pub mod config;
pub mod export;
pub mod files;
/// Password hashing lives in its own crate; `latchkey::hashing` keeps its old path.
pub use latchkey_hashing as hashing;
// The workers live in a crate of their own; their old paths stay.
pub use workers::{bulk, mail};
pub mod http;
pub mod import;
pub mod introspect;
pub mod keys;
pub mod listener;
pub mod pages;
pub mod secrets;
pub mod telemetry;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use domain::{
    accounts::Accounts,
    admin::Admins,
    clock::Clock,
    reset::{ResetLinks, Resets},
    token::TokenCodec,
};
use graphql::{SchemaOptions, Services};
use persistence::{Backend, Stores};
use tokio::{net::TcpListener, sync::watch};

use crate::{
    client_ip::TrustedProxies,
    config::Config,
    hashing::{Argon2Hasher, SharedHasher},
    http::{AppState, HttpOptions},
    mail::{MailWorker, Templates, Transport, Wakeup},
};

/// A wired server, ready to serve.
pub struct Server {
    pub router: axum::Router,
    pub db: persistence::Connection,
    /// SQL statements run so far by this server.
    pub statements: Arc<std::sync::atomic::AtomicU64>,
    /// The mail delivery worker (interactive lane); `serve` runs it beside the HTTP server.
    pub mail: MailWorker,
    /// The bulk lane's mail worker.
    pub bulk_mail: MailWorker,
    /// Works bulk jobs' chunks.
    pub bulk: bulk::BulkWorker,
    /// GraphQL operations in flight; `serve` waits for them before closing the database.
    pub operations: http::Operations,
    /// The metrics listener (`LATCHKEY_METRICS_LISTEN`), bound by `build`; `None` when off.
    pub metrics: Option<(TcpListener, axum::Router)>,
    /// The API port's bounds on slow, idle and too many connections.
    pub connections: listener::ConnectionLimits,
    /// Reloads the signing keys (asymmetric keys only).
    pub keys: Option<keys::KeyRefresher>,
    /// Housekeeping (expired sessions, old limit events, links and sent mail).
    pub cleanup: Arc<persistence::SqlCleanup>,
    /// Pushes security events to the subscribed services.
    pub events: workers::events::EventWorker,
    /// The signed-in check's cache and the reads of the session log that keep it true.
    pub session_cache: persistence::Coherence,
}

impl Server {
    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }
}

/// How long `serve` waits, after the last connection closed, for operations whose clients had
/// already gone away.
const OPERATIONS_GRACE: Duration = Duration::from_secs(15);

/// Connects to the database named by the configuration.
pub async fn connect(config: &Config) -> anyhow::Result<(persistence::Connection, Backend)> {
    let backend = Backend::of(&config.database_url)
        .context("DATABASE_URL must start with sqlite: or postgres://")?;
    let transaction_pooling = config.database_pooler == crate::config::Pooler::Transaction;
    if transaction_pooling {
        anyhow::ensure!(
            backend == Backend::Postgres,
            "LATCHKEY_DATABASE_POOLER=transaction is for PostgreSQL behind PgBouncer"
        );
        anyhow::ensure!(
            config.database_schema.is_none(),
            "LATCHKEY_DATABASE_SCHEMA sets the search_path of each session, which transaction \
             pooling does not keep: set it on the database role instead \
             (ALTER ROLE <role> SET search_path = <schema>) and unset LATCHKEY_DATABASE_SCHEMA"
        );
    }
    let db = persistence::connect(
        &config.database_url,
        config.database_schema.as_deref(),
        persistence::PoolOptions {
            max_connections: config.database_max_connections,
            idle_in_transaction_timeout: Duration::from_secs(
                config.database_idle_in_transaction_timeout_seconds,
            ),
            transaction_pooling,
        },
    )
    .await
    .context("cannot connect to the database named by DATABASE_URL")?;
    Ok((db, backend))
}

/// `latchkey migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let (db, _) = connect(config).await?;
    persistence::migrate(&db).await.context("migrating")?;
    Ok(())
}

/// Connects and makes sure the schema is current: SQLite is migrated on start; PostgreSQL must
/// be migrated beforehand with `latchkey migrate` (so replicas never race to change the
/// schema).
pub(crate) async fn prepare_database(
    config: &Config,
) -> anyhow::Result<(persistence::Connection, Backend)> {
    let (db, backend) = connect(config).await?;
    match backend {
        Backend::Sqlite => {
            persistence::migrate(&db).await.context("migrating")?;
            if persistence::sqlite_plans_stable(&db).await? == Some(false) {
                tracing::warn!(
                    "this build's SQLite lacks SQLITE_ENABLE_QPSG (set by .cargo/config.toml): \
                     every single-row look-up will re-prepare its statement; build from the \
                     repository root to get it"
                );
            }
        }
        Backend::Postgres => {
            let pending = persistence::pending_migrations(&db).await?;
            anyhow::ensure!(
                pending.is_empty(),
                "the database needs migrations ({}): run `latchkey migrate` first",
                pending.join(", ")
            );
        }
    }
    Ok((db, backend))
}

/// The shared parts every use-case group is built from: one hasher, one limiter, one sign-in
/// core, the settings.
fn wiring(
    config: &Config,
    stores: &Stores,
    hasher: Arc<SharedHasher>,
    tokens: TokenCodec,
    clock: Arc<dyn Clock>,
    sealing: &[u8],
) -> anyhow::Result<domain::accounts::Wiring> {
    let store_name = config
        .mail_from
        .parse::<lettre::message::Mailbox>()
        .ok()
        .and_then(|m| m.name)
        .unwrap_or_default();
    let sign_in = Arc::new(domain::sign_in::SignIn::new(
        stores.credentials.clone(),
        stores.limits.clone(),
        hasher.clone(),
        tokens.clone(),
        clock.clone(),
        domain::sign_in::SessionCaps {
            max_live: config.max_sessions,
            sign_ins_per_hour: config.max_sign_ins_per_hour,
        },
    ));
    let work = domain::guard::WorkKey::derive(sealing).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut guard = domain::guard::AttackGuard::new(stores.limits.clone(), clock.clone(), work);
    if let Some(url) = &config.captcha_verify_url {
        let secret = config.captcha_secret.clone().ok_or_else(|| {
            anyhow::anyhow!("LATCHKEY_CAPTCHA_VERIFY_URL is set without LATCHKEY_CAPTCHA_SECRET")
        })?;
        guard = guard.with_captcha(Arc::new(captcha::HttpCaptcha::new(url, secret)?));
    }
    let guard = Arc::new(guard);
    Ok(domain::accounts::Wiring {
        hasher,
        limiter: stores.limits.clone(),
        settings: stores.settings.clone(),
        tokens,
        clock,
        sign_in,
        guard,
        store_name,
    })
}

/// Builds the server.
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
    let refusals = config.production_refusals();
    anyhow::ensure!(
        refusals.is_empty(),
        "refusing to start in production:\n- {}",
        refusals.join("\n- ")
    );
    if config.env == config::Environment::Production && config.events_allow_internal == Some(true) {
        tracing::warn!(
            "LATCHKEY_EVENTS_ALLOW_INTERNAL=true in production: security events may be sent to \
             plain http:// and to loopback, private and link-local addresses (staging only; name \
             your services' networks in LATCHKEY_EVENTS_ALLOWED_NETWORKS instead)"
        );
    }
    let (mut db, backend) = prepare_database(config).await?;
    // Made before the statement counter: the log follower's reads (a few a second whatever
    // the traffic) and a revocation's confirmation are not counted as requests' statements.
    let session_cache = session_cache(config, &db, backend);
    let statements = persistence::count_statements(&mut db);
    let stores = Stores::new(db.clone()).with_session_cache(db.clone(), session_cache.clone());
    let (tokens, key_refresher) =
        keys::token_codec(config, stores.keys.clone(), backend, clock.as_ref()).await?;
    let key_refresher = key_refresher.map(|k| k.waking_on(session_cache.keys_changed()));
    let concurrency = config.hash_concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let hasher = Arc::new(SharedHasher(Arc::new(Argon2Hasher::new(
        concurrency,
        config.hash_queue,
    )?)));
    let wakeups = Wakeups::default();
    // "This wasn't me" links, admins' sealed factor secrets, recovery codes and sign-in
    // challenges are keyed from the server's own secret, the same on every replica.
    let sealing = secrets::server_secrets(config, backend)?.sealing;
    let report_links = domain::report::ReportLinks::new(&sealing, &config.public_base_url())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let parts = wiring(
        config,
        &stores,
        hasher,
        tokens.clone(),
        clock.clone(),
        &sealing,
    )?;
    let factors = Arc::new(
        domain::factors::AdminFactors::new(
            stores.factors.clone(),
            parts.clone(),
            Arc::new(wakeups.mail.clone()),
            &sealing,
            match config.admin_2fa {
                config::AdminTwoFactor::Required => domain::factors::FactorPolicy::Required,
                config::AdminTwoFactor::Optional => domain::factors::FactorPolicy::Optional,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_passkeys(domain::factors::passkey::Passkeys::new(
            &config.public_base_url(),
            &parts.store_name,
        )),
    );
    let events = event_worker(config, &stores, tokens.clone(), clock.clone(), &sealing)?;
    let (services, introspection) = use_cases(
        config,
        &stores,
        parts,
        &wakeups,
        report_links.clone(),
        factors,
        &sealing,
    )?;
    let bulk = bulk::BulkWorker {
        jobs: services.bulk.clone(),
        wakeup: wakeups.bulk.clone(),
        per_second: std::num::NonZeroU32::new(config.bulk_customers_per_second),
        session_cache: Some(session_cache.clone()),
    };
    let schema = graphql::build_schema(
        services,
        &SchemaOptions {
            introspection: config.introspection_enabled(),
            ..SchemaOptions::default()
        },
    );
    let (mail, bulk_mail, store_name) =
        mail_workers(config, &stores, clock, &wakeups, report_links)?;
    let operations = http::Operations::new(config.max_operations);
    let state = AppState {
        schema,
        db: db.clone(),
        proxies: Arc::new(TrustedProxies::parse(&config.trusted_proxies)?),
        graphiql: config.graphiql_enabled(),
        metrics: telemetry::metrics_handle(),
        statements: statements.clone(),
        operations: operations.clone(),
        tokens,
        introspection,
        jwks_max_age_seconds: config.jwks_max_age_seconds,
        ssf_configuration: Arc::new(domain::events::ssf_configuration(&config.public_base_url())),
        session_cache: session_cache.clone(),
    };
    let metrics = metrics_listener(config, &state).await?;
    let router = http::router(
        state,
        &HttpOptions {
            max_body_bytes: config.max_body_bytes,
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
            cors_origins: config.cors_origins.clone(),
            store_name,
        },
    )?;
    Ok(Server {
        router,
        db,
        statements,
        mail,
        bulk_mail,
        bulk,
        operations,
        metrics,
        keys: key_refresher,
        cleanup: stores.cleanup.clone(),
        events,
        session_cache,
        connections: listener::ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds.max(1)),
            max_connections: config.max_connections.max(1),
        },
    })
}

/// The signed-in check's cache (`LATCHKEY_SESSION_CACHE_SIZE`, `_LEASE_MS`): on PostgreSQL it
/// follows the session log over a direct connection, which a transaction-mode pooler cannot
/// give, so there it needs `LATCHKEY_DATABASE_DIRECT_URL`.
fn session_cache(
    config: &Config,
    db: &persistence::Connection,
    backend: Backend,
) -> persistence::Coherence {
    let direct_url = match (&config.database_direct_url, config.database_pooler) {
        (Some(url), _) => Some(url.expose().to_owned()),
        (None, crate::config::Pooler::Session) => Some(config.database_url.clone()),
        (None, crate::config::Pooler::Transaction) => None,
    };
    if backend == Backend::Postgres && direct_url.is_none() && config.session_cache_size > 0 {
        tracing::warn!(
            "the session cache is off: behind a transaction-mode pooler it needs \
             LATCHKEY_DATABASE_DIRECT_URL (a URL that reaches PostgreSQL directly, for LISTEN); \
             every signed-in request reads the database"
        );
    }
    persistence::Coherence::new(
        db.clone(),
        backend,
        persistence::CacheOptions {
            max_holders: config.session_cache_size,
            lease: cache_lease(config),
            direct_url,
            schema: config.database_schema.clone(),
        },
    )
}

/// `LATCHKEY_SESSION_CACHE_LEASE_MS`, at least 100 ms.
fn cache_lease(config: &Config) -> Duration {
    Duration::from_millis(config.session_cache_lease_ms.max(100))
}

/// The signals that wake the workers: the interactive mail lane, the bulk mail lane, the bulk
/// job runner.
#[derive(Default)]
struct Wakeups {
    mail: Wakeup,
    bulk_mail: Wakeup,
    bulk: Wakeup,
}

/// Every use-case group, each on its own repositories and the shared parts; and what
/// `/introspect` answers from.
fn use_cases(
    config: &Config,
    stores: &Stores,
    parts: domain::accounts::Wiring,
    wakeups: &Wakeups,
    report_links: domain::report::ReportLinks,
    factors: Arc<domain::factors::AdminFactors>,
    sealing: &[u8],
) -> anyhow::Result<(Services, Arc<introspect::Introspection>)> {
    let mail = || Arc::new(wakeups.mail.clone());
    let public_url = config.public_base_url();
    let link_template = config.storefront_reset_url.clone().unwrap_or_else(|| {
        format!("{public_url}/account/reset-password?token={{token}}&lang={{locale}}")
    });
    let links = ResetLinks::new(link_template, config.reset_url_allowlist.clone())
        .map_err(|e| anyhow::anyhow!("LATCHKEY_STOREFRONT_RESET_URL: {e}"))?;
    let bulk = Arc::new(domain::bulk::BulkJobs::new(
        stores.bulk.clone(),
        stores.settings.clone(),
        parts.clock.clone(),
        links.clone(),
        Arc::new(wakeups.bulk_mail.clone()),
        Arc::new(wakeups.bulk.clone()),
    ));
    let resets = Arc::new(Resets::new(
        stores.resets.clone(),
        stores.accounts.clone(),
        parts.clone(),
        links,
        mail(),
    ));
    // A right password on the breached list may be refused with a reset link mailed.
    let accounts = Arc::new(
        Accounts::new(stores.accounts.clone(), parts.clone(), mail()).with_resets(resets.clone()),
    );
    let email_changes = Arc::new(domain::email_change::EmailChanges::new(
        stores.email_changes.clone(),
        parts.clone(),
        domain::email_change::EmailChangeLinks::under(&public_url),
        mail(),
        chrono::Duration::hours(i64::from(config.email_change_revert_hours)),
    ));
    let erasure = Arc::new(domain::erasure::Erasure::new(
        stores.erasure.clone(),
        parts.clone(),
    ));
    let admin_users = Arc::new(domain::admin::AdminUsers::new(
        stores.admin_users.clone(),
        parts.clone(),
        domain::admin::AdminLinks::under(&public_url),
        mail(),
    ));
    let reports = Arc::new(domain::report::Reports::new(
        stores.reports.clone(),
        parts.clone(),
        report_links,
        mail(),
    ));
    let clock = parts.clock.clone();
    let auth = Arc::new(domain::auth::Authenticator::new(
        stores.sessions.clone(),
        parts.tokens.clone(),
        clock.clone(),
    ));
    let integrations = Arc::new(
        domain::events::Integrations::new(
            stores.events.clone(),
            clock.clone(),
            config.event_endpoints()?,
            sealing,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let admins = Arc::new(Admins::new(stores.admin.clone(), parts));
    let introspection = Arc::new(introspect::Introspection {
        auth: auth.clone(),
        services: domain::services::Services::new(stores.services.clone(), clock),
    });
    let services = Services {
        auth,
        accounts,
        resets,
        admins,
        bulk,
        email_changes,
        erasure,
        admin_users,
        reports,
        factors,
        integrations,
    };
    Ok((services, introspection))
}

/// The security-event worker: SETs signed with the access tokens' keys, webhook secrets opened
/// with the server's secret.
fn event_worker(
    config: &Config,
    stores: &Stores,
    tokens: TokenCodec,
    clock: Arc<dyn Clock>,
    sealing: &[u8],
) -> anyhow::Result<workers::events::EventWorker> {
    Ok(workers::events::EventWorker {
        events: stores.events.clone(),
        signer: Arc::new(tokens),
        secrets: domain::events::secret_sealer(sealing).map_err(|e| anyhow::anyhow!("{e}"))?,
        issuer: config.public_base_url(),
        endpoints: config.event_endpoints()?,
        timeout: Duration::from_secs(config.events_timeout_seconds.max(1)),
        max_attempts: config.events_max_attempts.max(1),
        poll: Duration::from_millis(config.events_poll_ms.max(10)),
        clock,
    })
}

/// The mail workers of the interactive and the bulk lane, and the store's name their mail is
/// signed with.
fn mail_workers(
    config: &Config,
    stores: &Stores,
    clock: Arc<dyn Clock>,
    wakeups: &Wakeups,
    report_links: domain::report::ReportLinks,
) -> anyhow::Result<(MailWorker, MailWorker, String)> {
    let from: lettre::message::Mailbox = config
        .mail_from
        .parse()
        .map_err(|_| anyhow::anyhow!("LATCHKEY_MAIL_FROM is not a valid mailbox"))?;
    let store_name = from.name.clone().unwrap_or_else(|| "Store".into());
    let mail = MailWorker {
        store: stores.outbox.clone(),
        resets: stores.resets.clone(),
        lane: domain::ports::MailLane::Interactive,
        rate: None,
        rate_per_second: 0,
        transport: Transport::new(
            config.smtp_url.as_ref().map(|s| s.expose()),
            Duration::from_secs(config.smtp_timeout_seconds.max(1)),
            config.mail_dir.clone(),
        )?,
        templates: Arc::new(Templates::new(store_name.clone())?.with_reports(report_links)),
        from,
        clock,
        wakeup: wakeups.mail.clone(),
        lease: mail::lease(config.mail_lease_seconds, config.smtp_timeout_seconds),
    };
    let mut bulk_mail = mail.bulk_lane(config.bulk_mail_per_second);
    bulk_mail.wakeup = wakeups.bulk_mail.clone();
    Ok((mail, bulk_mail, store_name))
}

/// The metrics listener (`LATCHKEY_METRICS_LISTEN`), bound now so a taken port fails the start.
async fn metrics_listener(
    config: &Config,
    state: &AppState,
) -> anyhow::Result<Option<(TcpListener, axum::Router)>> {
    match config.metrics_listen.trim() {
        "off" | "" => Ok(None),
        addr => {
            let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
                anyhow::anyhow!("LATCHKEY_METRICS_LISTEN must be host:port or off, not {addr:?}")
            })?;
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding LATCHKEY_METRICS_LISTEN {addr}"))?;
            Ok(Some((listener, http::metrics_router(state.clone()))))
        }
    }
}

/// `latchkey admin create`: an admin user with a role; the password never comes from an
/// argument.
pub async fn create_admin(
    config: &Config,
    username: &str,
    role: &str,
    password: &str,
) -> anyhow::Result<domain::admin::AdminUser> {
    create_admin_with_email(config, username, role, password, None).await
}

/// `latchkey admin create --email`: the same, with the address "Forgot Your Password?" mails.
pub async fn create_admin_with_email(
    config: &Config,
    username: &str,
    role: &str,
    password: &str,
    email: Option<&str>,
) -> anyhow::Result<domain::admin::AdminUser> {
    let (db, backend) = prepare_database(config).await?;
    let stores = Stores::new(db);
    let hasher = Arc::new(SharedHasher(Arc::new(Argon2Hasher::new(1, 1)?)));
    let (tokens, _) = keys::token_codec(
        config,
        stores.keys.clone(),
        backend,
        &domain::clock::SystemClock,
    )
    .await?;
    let admins = Admins::new(
        stores.admin.clone(),
        wiring(
            config,
            &stores,
            hasher,
            tokens,
            Arc::new(domain::clock::SystemClock),
            &secrets::server_secrets(config, backend)?.sealing,
        )?,
    );
    admins
        .create_admin(username, password, role, email)
        .await
        .map_err(|e| match e {
            domain::Error::BadUserInput { field, message } => anyhow::anyhow!("{field}: {message}"),
            domain::Error::PasswordPolicy(v) => anyhow::anyhow!(
                "the password {}",
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::anyhow!("{other}"),
        })
}

/// `latchkey admin reset-2fa USERNAME`: removes every factor and recovery code of the admin
/// and ends their sessions, for the last administrator who lost everything (audited as the OS
/// user, `os:user@host`). Their next sign-in enrols a factor again. How many sessions ended.
pub async fn reset_admin_factors(config: &Config, username: &str) -> anyhow::Result<u64> {
    /// The running server's mail worker finds the notice on its next poll (a second).
    struct NextPoll;
    impl domain::ports::MailSignal for NextPoll {
        fn notify(&self) {}
    }
    let (db, backend) = prepare_database(config).await?;
    let confirmer = persistence::Coherence::confirmer(db.clone(), backend, cache_lease(config));
    let stores = Stores::new(db);
    let hasher = Arc::new(SharedHasher(Arc::new(Argon2Hasher::new(1, 1)?)));
    let clock: Arc<dyn Clock> = Arc::new(domain::clock::SystemClock);
    let (tokens, _) =
        keys::token_codec(config, stores.keys.clone(), backend, clock.as_ref()).await?;
    let sealing = secrets::server_secrets(config, backend)?.sealing;
    let factors = domain::factors::AdminFactors::new(
        stores.factors.clone(),
        wiring(config, &stores, hasher, tokens, clock, &sealing)?,
        Arc::new(NextPoll),
        &sealing,
        domain::factors::FactorPolicy::Required,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ended = factors
        .reset_by_operator(username, os_actor())
        .await
        .map_err(|e| match e {
            domain::Error::NotFound => anyhow::anyhow!("no admin is named {username}"),
            other => anyhow::anyhow!("{other}"),
        })?;
    // Returns once every running server refuses the ended sessions.
    confirmer.confirm().await;
    Ok(ended)
}

/// Who ran a command, for the audit log: `os:user@host`.
pub(crate) fn os_actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("os:{user}@{host}")
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    server: Server,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let janitor = tokio::spawn(cleanup_loop(
        server.cleanup.clone(),
        server.mail.clock.clone(),
        stopped.clone(),
    ));
    let bulk_mail = tokio::spawn(server.bulk_mail.run(stopped.clone()));
    let bulk = tokio::spawn(server.bulk.run(stopped.clone()));
    let keys = server.keys.map(|k| tokio::spawn(k.run(stopped.clone())));
    let events = tokio::spawn(server.events.run(stopped.clone()));
    let follower = tokio::spawn(server.session_cache.clone().follow(stopped.clone()));
    let worker = tokio::spawn(server.mail.run(stopped));
    let metrics = server.metrics.map(|(listener, router)| {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    });
    let served = listener::serve(listener, server.router, server.connections, shutdown).await;
    // In-flight requests are done; so are (within a grace period) operations whose clients
    // hung up. Then let the worker finish the batch it is sending. What is still queued stays
    // in the outbox for the next start.
    server.operations.tracker.close();
    if tokio::time::timeout(OPERATIONS_GRACE, server.operations.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = server.operations.tracker.len(),
            "stopping with operations still running; each transaction rolls back whole"
        );
    }
    let _ = stop.send(true);
    let _ = worker.await;
    let _ = bulk_mail.await;
    let _ = bulk.await;
    let _ = events.await;
    let _ = follower.await;
    let _ = janitor.await;
    if let Some(keys) = keys {
        let _ = keys.await;
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    server.db.close().await.ok();
    served?;
    Ok(())
}

/// Deletes expired sessions, old limit events and reset tokens, and old sent mail: a minute
/// after start, then every ten minutes; one replica at a time.
async fn cleanup_loop(
    store: Arc<persistence::SqlCleanup>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {},
            _ = stop.changed() => return,
        }
        match store.cleanup(clock.now()).await {
            Ok(done) if done.ran => tracing::info!(
                sessions = done.sessions,
                limit_events = done.limit_events,
                reset_tokens = done.reset_tokens,
                sent_mail = done.sent_mail,
                email_changes = done.email_changes,
                admin_links = done.admin_links,
                delivered_events = done.delivered_events,
                "cleanup"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleanup failed; will retry"),
        }
        wait = Duration::from_secs(600);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
