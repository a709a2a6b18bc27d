//! Units of work: how every multi-statement write runs.
//!
//! Two rules, enforced here so no repository has to remember them:
//! - **A caller going away cannot cut a write in half.** The transaction runs in a task of its
//!   own and the caller awaits its handle. If the caller's future is dropped (a client hangs
//!   up and hyper drops the handler, a timeout fires, a `select!` loses), the task still
//!   reaches its COMMIT or ROLLBACK: the answer may be lost, the write never is, and no
//!   connection goes back to the pool with a transaction open.
//! - **Every transaction ends explicitly.** The work says [`End::Commit`] or [`End::Rollback`];
//!   an error rolls back. Nothing relies on a drop guard queueing a ROLLBACK.

use std::{future::Future, pin::Pin};

use domain::{Error, Result};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, TransactionTrait};
use tracing::Instrument;

use crate::{SqlStore, accounts::db_err};

/// How a unit of work ends, with its result.
pub(crate) enum End<T> {
    Commit(T),
    /// Nothing it wrote is kept (a refused request, a lock another replica holds).
    Rollback(T),
}

/// The body of a unit of work: statements on the transaction it is given.
pub(crate) type Work<'t, T> = Pin<Box<dyn Future<Output = Result<End<T>>> + Send + 't>>;

impl SqlStore {
    /// Runs `work` in one transaction, to completion, whatever happens to the caller.
    pub(crate) async fn unit_of_work<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> Work<'t, T> + Send + 'static,
    {
        let db = self.db.clone();
        let task = tokio::spawn(
            async move {
            let txn = db.begin().await.map_err(db_err)?;
            match work(&txn).await {
                Ok(End::Commit(value)) => {
                    txn.commit().await.map_err(db_err)?;
                    Ok(value)
                }
                Ok(End::Rollback(value)) => {
                    txn.rollback().await.map_err(db_err)?;
                    Ok(value)
                }
                Err(e) => {
                    if let Err(rollback) = txn.rollback().await {
                        tracing::warn!(error = %rollback, "rolling back a failed unit of work failed");
                    }
                    Err(e)
                }
            }
            }
            .in_current_span(),
        );
        task.await
            .map_err(|e| Error::internal(format!("a unit of work did not finish: {e}")))?
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
    pub(crate) async fn queue_work<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> Work<'t, T> + Send + 'static,
    {
        self.unit_of_work(move |txn| {
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
}
