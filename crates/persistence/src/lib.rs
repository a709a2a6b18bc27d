//! Storage for Latchkey: sea-orm entities (private to this crate) and the repositories that
//! implement the domain's ports, on SQLite and PostgreSQL alike.

mod accounts;
mod admin;
mod cleanup;
mod entities;
mod outbox;
mod resets;
mod settings;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use accounts::SqlStore;
pub use cleanup::Cleanup;
use migration::{Migrator, MigratorTrait};
pub use outbox::OutboxMessage;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

pub use sea_orm::DatabaseConnection as Connection;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// Opens a pool. SQLite gets WAL, a busy timeout and foreign keys; `schema` sets PostgreSQL's
/// search path (tests use one schema each; operators may keep Latchkey out of `public`).
pub async fn connect(
    url: &str,
    schema: Option<&str>,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
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
        });
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
        let db = super::connect("sqlite::memory:", None, 1).await.unwrap();
        assert_eq!(super::sqlite_plans_stable(&db).await.unwrap(), Some(true));
    }
}
