//! The ground floor every repository stands on: the database error, which database this is
//! ([`Backend`]), SQLite's write turn, and units of work — how every multi-statement write
//! runs. Nothing here knows a feature.
//!
//! Two rules of units of work, enforced here so no repository has to remember them:
//! - **A caller going away cannot cut a write in half.** The transaction runs in a task of its
//!   own and the caller awaits its handle. If the caller's future is dropped (a client hangs
//!   up and hyper drops the handler, a timeout fires, a `select!` loses), the task still
//!   reaches its COMMIT or ROLLBACK: the answer may be lost, the write never is, and no
//!   connection goes back to the pool with a transaction open.
//! - **Every transaction ends explicitly.** The work says [`End::Commit`] or [`End::Rollback`];
//!   an error rolls back. Nothing relies on a drop guard queueing a ROLLBACK.

use std::{future::Future, pin::Pin};

use std::sync::Arc;

use domain::{Error, Result};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};
use tracing::Instrument;
use uuid::Uuid;

/// Storage failures are internal: the detail goes to the log, never to the client.
pub(crate) fn db_err(e: DbErr) -> Error {
    Error::internal_from(e)
}

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

/// The turn to write on SQLite, for the writers that run all the time (the reset-request
/// writer, the mail worker). SQLite has one writer; a connection that finds it busy sleeps in
/// SQLite's busy handler (1, 2, 5, 10 … ms) however soon the lock is released, so a short
/// write beside a steady stream of others costs each of them milliseconds. Writers that take
/// this turn first queue in-process and start the moment the previous one is done. Nothing on
/// PostgreSQL. One per database, shared by the repositories that write all the time.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteTurn(Arc<tokio::sync::Mutex<()>>);

impl WriteTurn {
    pub(crate) async fn take(
        &self,
        db: &DatabaseConnection,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => Some(self.0.lock().await),
            _ => None,
        }
    }
}

/// SQLite: `UPDATE table SET id = id WHERE id = ?`, which takes the write lock and changes
/// nothing (no trigger watches the id).
pub(crate) async fn take_sqlite_write_lock<E: EntityTrait>(
    txn: &DatabaseTransaction,
    _table: E,
    id_column: E::Column,
    id: Uuid,
) -> Result<()> {
    E::update_many()
        .col_expr(id_column, Expr::col(id_column))
        .filter(id_column.eq(id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// How a unit of work ends, with its result.
pub(crate) enum End<T> {
    Commit(T),
    /// Nothing it wrote is kept (a refused request, a lock another replica holds).
    Rollback(T),
}

/// The body of a unit of work: statements on the transaction it is given.
pub(crate) type Work<'t, T> = Pin<Box<dyn Future<Output = Result<End<T>>> + Send + 't>>;

tokio::task_local! {
    /// Set by a unit of work that recorded security events (`note_events_recorded`).
    static RECORDED_EVENTS: std::cell::Cell<bool>;
}

/// Counts this process's commits that recorded security events: each event worker watches it
/// (a change while a worker is busy is still seen when it next waits; other replicas' workers
/// find the events by polling).
static EVENTS_COMMITTED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Called where events are recorded: the unit of work wakes the event workers once it commits
/// (never before: a rolled-back change wakes nobody).
pub(crate) fn note_events_recorded() {
    let _ = RECORDED_EVENTS.try_with(|recorded| recorded.set(true));
}

/// A watch of this process's commits that recorded security events.
pub(crate) fn events_committed() -> tokio::sync::watch::Receiver<u64> {
    EVENTS_COMMITTED.subscribe()
}

/// What the units of work of one request (or job step) committed: any change, and whether one
/// ended sessions or changed what a signed-in check reads in a way that must count everywhere
/// before the answer (it recorded security events, or said so with [`note_revocation`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub wrote: bool,
    pub revoked: bool,
}

tokio::task_local! {
    /// The caller's record of what its units of work committed ([`tracking_commits`]).
    static COMMITS: std::cell::Cell<Committed>;
    /// Set inside a unit of work by [`note_revocation`].
    static REVOKES: std::cell::Cell<bool>;
}

/// Runs `f`, and says what the units of work it awaited committed: the HTTP edge uses it to
/// hold a revoking request's answer until every replica's session cache has applied it.
pub async fn tracking_commits<F: Future>(f: F) -> (F::Output, Committed) {
    COMMITS
        .scope(std::cell::Cell::new(Committed::default()), async {
            let out = f.await;
            (out, COMMITS.with(std::cell::Cell::get))
        })
        .await
}

/// Called in a unit of work whose change must count on every replica before the request
/// answers (a role change, a disabled admin); one that records security events counts already.
pub(crate) fn note_revocation() {
    let _ = REVOKES.try_with(|revoked| revoked.set(true));
}

/// Runs `work` in one transaction on `db`, to completion, whatever happens to the caller.
pub(crate) async fn unit_of_work<T, F>(db: &DatabaseConnection, work: F) -> Result<T>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> Work<'t, T> + Send + 'static,
{
    let db = db.clone();
    let body = async move {
        // SQLite: the write lock from BEGIN (IMMEDIATE). A deferred transaction that reads
        // before it writes cannot take the lock once another connection has committed since
        // its read (SQLITE_BUSY_SNAPSHOT, at once, whatever the busy timeout): the session
        // log's follower commits a few times a second, so that would fail real requests.
        let txn = match db.get_database_backend() {
            DatabaseBackend::Sqlite => {
                db.begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await
            }
            _ => db.begin().await,
        }
        .map_err(db_err)?;
        match work(&txn).await {
            Ok(End::Commit(value)) => {
                txn.commit().await.map_err(db_err)?;
                let recorded = RECORDED_EVENTS.with(std::cell::Cell::get);
                if recorded {
                    EVENTS_COMMITTED.send_modify(|n| *n = n.wrapping_add(1));
                }
                let committed = Committed {
                    wrote: true,
                    revoked: recorded || REVOKES.with(std::cell::Cell::get),
                };
                Ok((value, committed))
            }
            Ok(End::Rollback(value)) => {
                txn.rollback().await.map_err(db_err)?;
                Ok((value, Committed::default()))
            }
            Err(e) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed unit of work failed");
                }
                Err(e)
            }
        }
    };
    let task = tokio::spawn(
        RECORDED_EVENTS
            .scope(
                std::cell::Cell::new(false),
                REVOKES.scope(std::cell::Cell::new(false), body),
            )
            .in_current_span(),
    );
    let (value, committed) = task
        .await
        .map_err(|e| Error::internal(format!("a unit of work did not finish: {e}")))??;
    let _ = COMMITS.try_with(|seen| {
        let before = seen.get();
        seen.set(Committed {
            wrote: before.wrote || committed.wrote,
            revoked: before.revoked || committed.revoked,
        });
    });
    Ok(value)
}

/// A unit of work of a queue's worker (the mail outbox, reset requests, a bulk job's
/// customers): on PostgreSQL its statements are planned for the table as it is now.
///
/// A queue goes from empty to 100,000 rows in seconds, faster than statistics follow
/// (autovacuum's analyze comes up to a minute later, or never where it is off). A
/// prepared statement's generic plan, made while the queue was empty, scans it whole:
/// the mail claim's became a sequential scan joined in a nested loop, 2.4 s per claim of
/// 64 at 100,000 queued (39 mails/s). `plan_cache_mode = force_custom_plan`, for this
/// transaction only, plans each statement with its values and the table's current size.
/// A worker runs a few statements a second, so the planning costs nothing that shows.
pub(crate) async fn queue_work<T, F>(db: &DatabaseConnection, work: F) -> Result<T>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> Work<'t, T> + Send + 'static,
{
    unit_of_work(db, move |txn| {
        Box::pin(async move {
            if txn.get_database_backend() == DatabaseBackend::Postgres {
                txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
                    .await
                    .map_err(db_err)?;
            }
            work(txn).await
        })
    })
    .await
}
