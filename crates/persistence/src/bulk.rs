//! Bulk jobs (`domain::bulk`): the frozen selection in `bulk_job_items`, chunks claimed with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer), each applied, deleted from
//! the list and counted in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Error, Result,
    admin::{NewAudit, Page},
    bulk::{
        BulkAction, BulkJob, BulkJobCursor, BulkJobStatus, BulkStore, BulkTarget, ChunkDone,
        NewBulkJob, ResetIssuer, Selection,
    },
    customer::Locale,
    ports::MailLane,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
    sea_query::{Expr, ExprTrait, LockType, Query},
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    db::{WriteTurn, queue_work},
    entities::{bulk_job, bulk_job_item, customer},
    grid::Grid,
    resets::{ResetFor, insert_resets, reset_rows},
    rows::insert_audit,
    rows::supersede_tokens,
};

fn to_job(m: bulk_job::Model) -> Result<BulkJob> {
    let bad = || Error::internal(format!("bulk job {} has an unknown action or status", m.id));
    Ok(BulkJob {
        id: m.id,
        action: BulkAction::parse(&m.action).ok_or_else(bad)?,
        status: BulkJobStatus::parse(&m.status).ok_or_else(bad)?,
        total: u64::try_from(m.total).unwrap_or(0),
        processed: u64::try_from(m.processed).unwrap_or(0),
        failed: u64::try_from(m.failed).unwrap_or(0),
        started_at: m.started_at,
        finished_at: m.finished_at,
        started_by: m.started_by,
    })
}

fn running() -> Condition {
    Condition::all().add(bulk_job::Column::Status.eq(BulkJobStatus::Running.as_str()))
}

/// Bulk jobs.
#[derive(Debug, Clone)]
pub struct SqlBulk {
    pub(crate) db: DatabaseConnection,
    /// The grid's filters and search, to freeze a selection.
    pub(crate) grid: Grid,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
    /// Per bulk job, the last customer this process took.
    pub(crate) bulk_cursors:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Uuid, Uuid>>>,
}

impl SqlBulk {
    /// Finishes `job` when nobody is left on its list. Asked after a chunk's commit (inside
    /// its transaction, another worker's uncommitted chunk would still look listed).
    async fn finish_if_done(&self, job: Uuid, now: DateTime<Utc>) -> Result<()> {
        let left = Query::select()
            .expr(Expr::val(1))
            .from(bulk_job_item::Entity)
            .and_where(bulk_job_item::Column::JobId.eq(job))
            .to_owned();
        let _turn = self.write_turn.take(&self.db).await;
        bulk_job::Entity::update_many()
            .col_expr(
                bulk_job::Column::Status,
                Expr::value(BulkJobStatus::Finished.as_str()),
            )
            .col_expr(bulk_job::Column::FinishedAt, Expr::value(Some(now)))
            .filter(bulk_job::Column::Id.eq(job))
            .filter(running())
            .filter(Expr::not_exists(left))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl BulkStore for SqlBulk {
    async fn start_bulk_job(
        &self,
        job: NewBulkJob,
        selection: &Selection,
        mut audit: NewAudit,
    ) -> Result<BulkJob> {
        // The selection, as `INSERT … SELECT`: listed in the database, never in memory.
        let mut select = customer::Entity::find()
            .select_only()
            .expr(Expr::val(job.id))
            .column(customer::Column::Id);
        let mut search = None;
        match selection {
            Selection::Ids(ids) => {
                select = select.filter(customer::Column::Id.is_in(ids.clone()));
            }
            Selection::Filter(filter) => {
                select = select.filter(self.grid.filter_condition(filter, job.now));
                search = filter.search.clone();
            }
        }
        let mut select = select.into_query();
        if let Some(search) = &search {
            self.grid.search_indexed(&mut select, search).await?;
        }
        let list = Query::insert()
            .into_table(bulk_job_item::Entity)
            .columns([
                bulk_job_item::Column::JobId,
                bulk_job_item::Column::CustomerId,
            ])
            .select_from(select)
            .map_err(|e| Error::internal(format!("bulk selection: {e}")))?
            .to_owned();
        let _turn = self.write_turn.take(&self.db).await;
        let id = job.id;
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let total = txn.execute(&list).await.map_err(db_err)?.rows_affected();
                let done = total == 0;
                bulk_job::Entity::insert(bulk_job::ActiveModel {
                    id: Set(job.id),
                    action: Set(job.action.as_str().to_owned()),
                    status: Set(if done {
                        BulkJobStatus::Finished
                    } else {
                        BulkJobStatus::Running
                    }
                    .as_str()
                    .to_owned()),
                    total: Set(i64::try_from(total).unwrap_or(i64::MAX)),
                    processed: Set(0),
                    failed: Set(0),
                    started_by_id: Set(job.started_by_id),
                    started_by: Set(job.started_by.clone()),
                    started_at: Set(job.now),
                    finished_at: Set(done.then_some(job.now)),
                })
                .exec_without_returning(txn)
                .await
                .map_err(db_err)?;
                audit.detail = Some(format!(
                    "{} customers={total}",
                    audit.detail.take().unwrap_or_default()
                ));
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await?;
        self.bulk_job(id)
            .await?
            .ok_or_else(|| Error::internal("a started bulk job vanished"))
    }

    async fn bulk_job(&self, id: Uuid) -> Result<Option<BulkJob>> {
        bulk_job::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_job)
            .transpose()
    }

    async fn bulk_jobs(&self, first: u64, after: Option<&BulkJobCursor>) -> Result<Page<BulkJob>> {
        let total_count = bulk_job::Entity::find()
            .count(&self.db)
            .await
            .map_err(db_err)?;
        let mut select = bulk_job::Entity::find();
        if let Some(c) = after {
            select = select.filter(
                Condition::any()
                    .add(bulk_job::Column::StartedAt.lt(c.started_at))
                    .add(
                        Condition::all()
                            .add(bulk_job::Column::StartedAt.eq(c.started_at))
                            .add(bulk_job::Column::Id.lt(c.id)),
                    ),
            );
        }
        let mut rows = select
            .order_by_desc(bulk_job::Column::StartedAt)
            .order_by_desc(bulk_job::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Ok(Page {
            items: rows
                .into_iter()
                .map(|m| {
                    let cursor = BulkJobCursor {
                        started_at: m.started_at,
                        id: m.id,
                    }
                    .encode();
                    Ok((cursor, to_job(m)?))
                })
                .collect::<Result<_>>()?,
            has_next_page,
            total_count,
            total_count_is_estimate: false,
        })
    }

    async fn cancel_bulk_job(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Option<BulkJob>> {
        let _turn = self.write_turn.take(&self.db).await;
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // In the order a chunk takes its locks (its customers on the list, then the
                // job's row), or the two deadlock: the list first, which waits for a chunk
                // that holds some of it to commit; nobody is left to do, so the list goes with
                // the cancel. A chunk that commits later finds the job cancelled and rolls back.
                bulk_job_item::Entity::delete_many()
                    .filter(bulk_job_item::Column::JobId.eq(id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                let cancelled = bulk_job::Entity::update_many()
                    .col_expr(
                        bulk_job::Column::Status,
                        Expr::value(BulkJobStatus::Cancelled.as_str()),
                    )
                    .col_expr(bulk_job::Column::FinishedAt, Expr::value(Some(now)))
                    .filter(bulk_job::Column::Id.eq(id))
                    .filter(running())
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected
                    == 1;
                if !cancelled {
                    return Ok(End::Rollback(()));
                }
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await?;
        self.bulk_job(id).await
    }

    async fn run_bulk_chunk(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        issue: ResetIssuer,
    ) -> Result<Option<ChunkDone>> {
        let jobs: Vec<(Uuid, String)> = bulk_job::Entity::find()
            .select_only()
            .columns([bulk_job::Column::Id, bulk_job::Column::Action])
            .filter(running())
            .order_by_asc(bulk_job::Column::StartedAt)
            .limit(16)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err)?;
        for (job_id, action) in jobs {
            let Some(action) = BulkAction::parse(&action) else {
                continue;
            };
            // Where this process left off: the list's front is all taken rows (on PostgreSQL,
            // dead index entries until vacuum), and reading past them again on every chunk
            // made a million-customer job quadratic. From the front again when nothing is
            // left past it (rows another worker skipped, or a killed replica gave back).
            let cursor = self
                .bulk_cursors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&job_id)
                .copied();
            let mut done = self
                .bulk_chunk(job_id, action, now, limit, cursor, issue.clone())
                .await?;
            if done.is_none() && cursor.is_some() {
                done = self
                    .bulk_chunk(job_id, action, now, limit, None, issue.clone())
                    .await?;
            }
            {
                let mut cursors = self.bulk_cursors.lock().unwrap_or_else(|e| e.into_inner());
                match &done {
                    Some((_, last)) => cursors.insert(job_id, *last),
                    None => cursors.remove(&job_id),
                };
            }
            let done = done.map(|(d, _)| d);
            if done.as_ref().is_none_or(|d| d.processed < limit) {
                self.finish_if_done(job_id, now).await?;
            }
            if done.is_some() {
                return Ok(done);
            }
        }
        Ok(None)
    }
}

impl SqlBulk {
    /// One chunk of one job (its customers after `after`), in one transaction, and the last
    /// customer taken; `None` when it had nobody left to take (or was cancelled meanwhile,
    /// and then nothing it did is kept).
    async fn bulk_chunk(
        &self,
        job_id: Uuid,
        action: BulkAction,
        now: DateTime<Utc>,
        limit: u64,
        after: Option<Uuid>,
        issue: ResetIssuer,
    ) -> Result<Option<(ChunkDone, Uuid)>> {
        let postgres = self.db.get_database_backend() == DatabaseBackend::Postgres;
        let mut next = Query::select()
            .column(bulk_job_item::Column::CustomerId)
            .from(bulk_job_item::Entity)
            .and_where(bulk_job_item::Column::JobId.eq(job_id))
            .order_by(bulk_job_item::Column::CustomerId, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        if let Some(after) = after {
            next.and_where(bulk_job_item::Column::CustomerId.gt(after));
        }
        let take = Query::delete()
            .from_table(bulk_job_item::Entity)
            .and_where(bulk_job_item::Column::JobId.eq(job_id))
            .and_where(bulk_job_item::Column::CustomerId.in_subquery(next))
            .returning_col(bulk_job_item::Column::CustomerId)
            .to_owned();
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                let taken = take_items(txn, postgres, job_id, limit, after, &take).await?;
                if taken.is_empty() {
                    return Ok(End::Rollback(None));
                }
                let targets = chunk_targets(txn, postgres, action, &taken).await?;
                let failed = (taken.len() - targets.len()) as u64;
                apply_action(txn, action, &targets, now, &issue).await?;
                let processed = taken.len() as u64;
                let counted = bulk_job::Entity::update_many()
                    .col_expr(
                        bulk_job::Column::Processed,
                        Expr::col(bulk_job::Column::Processed).add(processed as i64),
                    )
                    .col_expr(
                        bulk_job::Column::Failed,
                        Expr::col(bulk_job::Column::Failed).add(failed as i64),
                    )
                    .filter(bulk_job::Column::Id.eq(job_id))
                    .filter(running())
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                if counted == 0 {
                    // Cancelled while this chunk ran: none of it is kept.
                    return Ok(End::Rollback(None));
                }
                let last = taken.iter().max().copied().unwrap_or(job_id);
                Ok(End::Commit(Some((
                    ChunkDone {
                        job_id,
                        action,
                        processed,
                        failed,
                    },
                    last,
                ))))
            })
        })
        .await
    }
}

/// Takes (deletes) the job's next `limit` items after `after`, and returns their customers.
async fn take_items(
    txn: &DatabaseTransaction,
    postgres: bool,
    job_id: Uuid,
    limit: u64,
    after: Option<Uuid>,
    take: &sea_orm::sea_query::DeleteStatement,
) -> Result<Vec<Uuid>> {
    let rows = if postgres {
        // The locking subquery in a CTE of its own, run once (see `claim_mail`).
        let (after_sql, mut values): (&str, Vec<sea_orm::Value>) = match after {
            Some(after) => ("AND customer_id > $3", vec![after.into()]),
            None => ("", vec![]),
        };
        values.insert(0, i64::try_from(limit).unwrap_or(i64::MAX).into());
        values.insert(0, job_id.into());
        txn.query_all_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!(
                "WITH next AS MATERIALIZED (SELECT customer_id FROM bulk_job_items \
                 WHERE job_id = $1 {after_sql} ORDER BY customer_id LIMIT $2 \
                 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM bulk_job_items USING next \
                 WHERE bulk_job_items.job_id = $1 \
                 AND bulk_job_items.customer_id = next.customer_id \
                 RETURNING bulk_job_items.customer_id"
            ),
            values,
        ))
        .await
        .map_err(db_err)?
    } else {
        txn.query_all(take).await.map_err(db_err)?
    };
    rows.iter()
        .map(|row| row.try_get::<Uuid>("", "customer_id"))
        .collect::<std::result::Result<_, _>>()
        .map_err(db_err)
}

/// The taken customers the action still applies to (id, email, email key, locale), in id order
/// and, on PostgreSQL, locked: the rest count as failed.
async fn chunk_targets(
    txn: &DatabaseTransaction,
    postgres: bool,
    action: BulkAction,
    taken: &[Uuid],
) -> Result<Vec<(Uuid, String, String, String)>> {
    let mut targets = customer::Entity::find()
        .select_only()
        .columns([
            customer::Column::Id,
            customer::Column::Email,
            customer::Column::EmailKey,
            customer::Column::Locale,
        ])
        .filter(customer::Column::Id.is_in(taken.to_vec()))
        .order_by_asc(customer::Column::Id);
    if action == BulkAction::SendResetEmail {
        // A frozen account gets no link until an admin recovers it (counted as failed, as a
        // customer deleted meanwhile is).
        targets = targets.filter(customer::Column::FrozenAt.is_null());
    }
    if postgres {
        // Serialises with the reset-request worker and sign-ins on these rows.
        targets = targets.lock(LockType::NoKeyUpdate);
    }
    targets.into_tuple().all(txn).await.map_err(db_err)
}

/// The job's action on one chunk's customers.
async fn apply_action(
    txn: &DatabaseTransaction,
    action: BulkAction,
    targets: &[(Uuid, String, String, String)],
    now: DateTime<Utc>,
    issue: &ResetIssuer,
) -> Result<()> {
    let ids: Vec<Uuid> = targets.iter().map(|t| t.0).collect();
    match action {
        BulkAction::ForceSignIn => {
            crate::rows::revoke_sessions(
                txn,
                ids,
                None,
                now,
                Cause::new(Reason::BulkForceSignIn, Actor::Admin),
            )
            .await?;
        }
        BulkAction::RequireNewPassword => {
            crate::rows::supersede_pending(txn, ids.iter().copied(), now).await?;
            customer::Entity::update_many()
                .col_expr(
                    customer::Column::PasswordHash,
                    Expr::value(domain::stored_hash::VOID_PASSWORD),
                )
                .col_expr(customer::Column::UpdatedAt, Expr::value(now))
                .filter(customer::Column::Id.is_in(ids.clone()))
                .exec(txn)
                .await
                .map_err(db_err)?;
            let cause = Cause::new(Reason::NewPasswordRequired, Actor::Admin);
            let events: Vec<_> = ids
                .iter()
                .map(|id| SecurityEvent::customer(EventType::CredentialChange, *id, cause, now))
                .collect();
            crate::events::record(txn, &events).await?;
        }
        BulkAction::SendResetEmail if !ids.is_empty() => {
            supersede_tokens(txn, ids, now).await?;
            let mut tokens = Vec::with_capacity(targets.len());
            let mut mails = Vec::with_capacity(targets.len());
            for (id, email, email_key, locale) in targets {
                let issued = issue(&BulkTarget {
                    customer_id: *id,
                    email: email.clone(),
                    locale: Locale::parse(locale).unwrap_or_default(),
                })?;
                let (token, mail) = reset_rows(
                    ResetFor {
                        token_id: Uuid::now_v7(),
                        customer_id: *id,
                        email,
                        email_key,
                        locale,
                    },
                    issued,
                    None,
                    now,
                    None,
                    MailLane::Bulk,
                );
                tokens.push(token);
                mails.push(mail);
            }
            insert_resets(txn, tokens, mails).await?;
        }
        BulkAction::SendResetEmail => {}
    }
    Ok(())
}
