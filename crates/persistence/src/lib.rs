//! Storage for Latchkey: sea-orm entities (private to this crate) and the repositories that
//! implement the domain's ports, on SQLite and PostgreSQL alike.

mod accounts;
mod admin;
mod admin_users;
mod bulk;
mod cleanup;
mod coherence;
mod db;
mod email_change;
mod entities;
mod erasure;
mod events;
mod factors;
mod grid;
mod import;
mod integrations;
mod keys;
mod limits;
mod outbox;
mod reports;
mod resets;
mod rows;
mod services;
mod sessions;
mod settings;
mod sign_in;
mod stores;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use accounts::SqlAccounts;
pub use admin::SqlAdmin;
pub use admin_users::SqlAdminUsers;
pub use bulk::SqlBulk;
pub use cleanup::Cleanup;
pub use cleanup::SqlCleanup;
pub use coherence::{CacheOptions, Coherence, Confirmation};
pub use db::{Backend, Committed, tracking_commits};
pub use email_change::SqlEmailChanges;
pub use erasure::SqlErasure;
pub use events::{Settled, SqlEvents};
pub use factors::SqlFactors;
pub use import::SqlImports;
pub use import::{DEFAULT_PG_WRITERS, ExportedCustomer, ImportOutcome, ImportSession};
pub use keys::SqlKeys;
pub use limits::SqlLimits;
use migration::{Migrator, MigratorTrait};
pub use outbox::{OutboxMessage, SqlOutbox};
pub use reports::SqlReports;
pub use resets::SqlResets;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
pub use services::SqlServices;
pub use sessions::SqlSessions;
pub use settings::SqlSettings;
pub use sign_in::SqlCredentials;
pub use stores::Stores;

pub use sea_orm::DatabaseConnection as Connection;

/// How the pool behaves; `Default` is what `latchkey serve` uses unless configured.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// PostgreSQL's `idle_in_transaction_session_timeout` for every session of the pool: a
    /// session left inside a transaction (by a bug, here or in a driver) is ended by the server
    /// after this, so it cannot hold rows and locks for minutes. `ZERO` leaves the server's
    /// own setting alone. Longer than any transaction Latchkey runs, which waits on nothing but the
    /// database between its statements. Not sent with `transaction_pooling`.
    pub idle_in_transaction_timeout: Duration,
    /// PostgreSQL behind PgBouncer in transaction mode: the pool's connections are PgBouncer's
    /// clients, each transaction may run on another server session, and PgBouncer refuses
    /// startup parameters it cannot carry from one session to the next (`options`,
    /// `extra_float_digits`), so none is sent. Prepared statements stay: PgBouncer 1.21+
    /// tracks them (`max_prepared_statements`).
    pub transaction_pooling: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            idle_in_transaction_timeout: Duration::from_secs(10),
            transaction_pooling: false,
        }
    }
}

/// Sent to every idle PostgreSQL connection before the pool hands it out, in place of the
/// plain ping: a comment alone, which PostgreSQL answers with an empty result and a
/// ReadyForQuery that carries the session's transaction status, as cheaply as the ping. Sent
/// as a custom `BEGIN` statement, so the driver checks that status for us:
/// `Error::BeginFailed` means "not inside a transaction block" — the healthy answer. (A real
/// SQL probe such as comparing `transaction_timestamp()` with `statement_timestamp()` costs a
/// parse, plan and execution per statement: the signed-in query lost about a third of its
/// throughput on PostgreSQL with it, BENCHMARKS.md.) A session in a *failed* block reads as
/// idle to this check; but such a block can only come from a statement run inside an open
/// one, which this check keeps every borrower from, and its statements fail loudly (25P02)
/// rather than write anything.
const TRANSACTION_STATUS_PROBE: &str = "-- latchkey: is this pooled session inside a transaction?";

/// Opens a pool. SQLite gets WAL, a busy timeout and foreign keys; `schema` sets PostgreSQL's
/// search path (tests use one schema each; operators may keep Latchkey out of `public`).
///
/// On PostgreSQL a pooled connection is never handed out inside a transaction: one that is
/// (the probe above says so) is closed, which makes the server roll its transaction back, and
/// the pool opens a fresh one.
pub async fn connect(
    url: &str,
    schema: Option<&str>,
    pool: PoolOptions,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Deleted rows (a deleted customer's address, names, sessions) are overwritten
                // with zeros, not left in free pages of the file.
                .pragma("secure_delete", "ON")
        });
    if Backend::of(url) == Some(Backend::Postgres) {
        // PostgreSQL takes the setting in milliseconds as a 32-bit integer.
        let idle = pool
            .idle_in_transaction_timeout
            .as_millis()
            .min(i32::MAX as u128);
        if pool.transaction_pooling {
            // sqlx asks for `extra_float_digits` at start-up; Latchkey reads no float as text.
            options.map_sqlx_postgres_opts(|o| o.extra_float_digits(None));
        } else if idle > 0 {
            options.map_sqlx_postgres_opts(move |o| {
                o.options([("idle_in_transaction_session_timeout", idle.to_string())])
            });
        }
        options
            .test_before_acquire(false)
            .map_sqlx_postgres_before_acquire(|conn, meta| {
                Box::pin(async move {
                    use sea_orm::sqlx::{Connection, Error};
                    match conn.begin_with(TRANSACTION_STATUS_PROBE).await {
                        Err(Error::BeginFailed) => Ok(true),
                        Ok(stale) => {
                            // Dropping it queues a ROLLBACK; closing the session (below) makes
                            // sure whatever it held is rolled back and released.
                            drop(stale);
                            metrics::counter!(
                                "latchkey_db_connections_discarded_total",
                                "reason" => "in_transaction"
                            )
                            .increment(1);
                            tracing::error!(
                                idle_ms = meta.idle_for.as_millis() as u64,
                                "a pooled database connection was inside a transaction; closed \
                                 it instead of handing it out (its transaction is rolled back)"
                            );
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
            });
    }
    if let Some(schema) = schema {
        options.set_schema_search_path(schema.to_owned());
    }
    Database::connect(options).await
}

/// Whether the SQLite this binary links was built with `SQLITE_ENABLE_QPSG` (see
/// `.cargo/config.toml`): without it every `.one()` look-up re-prepares its statement.
/// `None` on PostgreSQL.
pub async fn sqlite_plans_stable(db: &DatabaseConnection) -> Result<Option<bool>, DbErr> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(None);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM pragma_compile_options WHERE compile_options = 'ENABLE_QPSG'",
        ))
        .await?;
    Ok(Some(
        row.map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0)
            > 0,
    ))
}

/// Counts every statement this connection (and its clones made afterwards) runs: the admin
/// grid's "constant number of statements" is measured with it, and `/metrics` exports it.
pub fn count_statements(db: &mut DatabaseConnection) -> Arc<AtomicU64> {
    let counter = Arc::new(AtomicU64::new(0));
    let c = counter.clone();
    db.set_metric_callback(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    counter
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Names of migrations not applied yet.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    /// Guards the build flag in `.cargo/config.toml`: without it SQLite re-prepares every
    /// `.one()` statement on every execution (a bound `LIMIT ?` counts as plan-dependent).
    #[tokio::test]
    async fn bundled_sqlite_keeps_cached_statements_prepared() {
        let db = super::connect(
            "sqlite::memory:",
            None,
            super::PoolOptions {
                max_connections: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(super::sqlite_plans_stable(&db).await.unwrap(), Some(true));
    }
}
