//! The email outbox: rows written in the transaction of the change that caused them, claimed
//! by delivery workers (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), sent,
//! then scrubbed of the link and code.

use chrono::{DateTime, Duration, Utc};
use domain::{
    Result,
    customer::Locale,
    ports::{MailKind, MailLane, NewMail},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::db::{WriteTurn, queue_work};
use crate::{
    db::End,
    db::db_err,
    entities::{customer, email_outbox, reset_request},
};

pub(crate) const PENDING: &str = "pending";
const SENDING: &str = "sending";
const SENT: &str = "sent";
const DEAD: &str = "dead";
/// A new message has had no attempt yet.
pub(crate) const NO_ATTEMPTS: i32 = 0;
/// After this many failed attempts a message is dead-lettered (kept, never silently dropped).
const MAX_ATTEMPTS: i32 = 10;
const MAX_BACKOFF: Duration = Duration::minutes(5);

/// A claimed message with what the templates need.
#[derive(Clone)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub claim_id: Uuid,
    pub kind: MailKind,
    pub recipient: String,
    pub locale: Locale,
    pub link: Option<String>,
    pub link_expires_at: Option<DateTime<Utc>>,
    /// A one-time code, with when it stops working.
    pub code: Option<(String, DateTime<Utc>)>,
    pub firstname: String,
    pub lastname: String,
    pub attempts: i32,
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

pub(crate) fn new_row(mail: NewMail) -> email_outbox::ActiveModel {
    let (link, link_expires_at) = mail.link.unzip();
    email_outbox::ActiveModel {
        id: Set(mail.id),
        kind: Set(mail.kind.as_str().to_owned()),
        customer_id: Set(mail.customer_id),
        recipient: Set(mail.recipient),
        locale: Set(mail.locale.as_str().to_owned()),
        link: Set(link),
        link_expires_at: Set(link_expires_at),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(mail.created_at),
        claim_id: Set(None),
        claimed_until: Set(None),
        last_error: Set(None),
        created_at: Set(mail.created_at),
        sent_at: Set(None),
        lane: Set(MailLane::Interactive.as_str().to_owned()),
        code: Set(None),
        code_expires_at: Set(None),
    }
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at five minutes.
fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::seconds(1i64 << exp).min(MAX_BACKOFF)
}

fn due(now: DateTime<Utc>, lane: MailLane) -> Condition {
    Condition::all()
        .add(email_outbox::Column::Lane.eq(lane.as_str()))
        .add(email_outbox::Column::Status.eq(PENDING))
        .add(email_outbox::Column::NextAttemptAt.lte(now))
}

/// The email outbox, for the mail workers.
#[derive(Debug, Clone)]
pub struct SqlOutbox {
    pub(crate) db: DatabaseConnection,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
}

impl SqlOutbox {
    /// Puts the messages of `lane` whose claim expired (a worker died mid-send) back in line;
    /// how many. The workers ask once a round, not once a claim.
    pub async fn requeue_expired(&self, now: DateTime<Utc>, lane: MailLane) -> Result<u64> {
        let requeue = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::Status, Expr::value(PENDING))
            .col_expr(
                email_outbox::Column::ClaimId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(email_outbox::Column::NextAttemptAt, Expr::value(now))
            .filter(email_outbox::Column::Lane.eq(lane.as_str()))
            .filter(email_outbox::Column::Status.eq(SENDING))
            .filter(email_outbox::Column::ClaimedUntil.lt(now));
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                let done = requeue.exec(txn).await.map_err(db_err)?;
                Ok(End::Commit(done.rows_affected))
            })
        })
        .await
    }

    /// Claims up to `batch` due messages of `lane` for `lease`, in the order they fell due
    /// (an index range, however long the lane's queue). Safe with many workers on many
    /// replicas: each row is claimed by one.
    pub async fn claim_mail(
        &self,
        now: DateTime<Utc>,
        batch: u64,
        lease: Duration,
        lane: MailLane,
    ) -> Result<Vec<OutboxMessage>> {
        let claim_id = Uuid::now_v7();
        let candidates = Query::select()
            .column(email_outbox::Column::Id)
            .from(email_outbox::Entity)
            .cond_where(due(now, lane))
            .order_by(email_outbox::Column::NextAttemptAt, sea_orm::Order::Asc)
            .limit(batch)
            .to_owned();
        let claim = Query::update()
            .table(email_outbox::Entity)
            .value(email_outbox::Column::Status, Expr::val(SENDING))
            .value(email_outbox::Column::ClaimId, Expr::val(claim_id))
            .value(email_outbox::Column::ClaimedUntil, Expr::val(now + lease))
            .and_where(email_outbox::Column::Id.in_subquery(candidates))
            // Re-checked against the row as it is when locked, so a row another worker just
            // claimed is skipped.
            .cond_where(due(now, lane))
            .to_owned();
        let rows = if self.db.get_database_backend() == DatabaseBackend::Postgres {
            // The candidates in a CTE of their own, run once: as `IN (subquery)` the planner
            // may run the locking subquery again for every row it scans, and with statistics
            // from before a bulk job queued 20,000 messages one claim took 28 s. The claimed
            // ids come back with it, so the rows are then read by primary key (`claim_id` has
            // no index), in the same unit of work, planned for the queue as it is.
            queue_work(&self.db, move |txn| {
                Box::pin(async move {
                    let claimed = txn
                        .query_all_raw(sea_orm::Statement::from_sql_and_values(
                            DatabaseBackend::Postgres,
                            "WITH candidates AS MATERIALIZED (SELECT id FROM email_outbox \
                             WHERE lane = $1 AND status = $2 AND next_attempt_at <= $3 \
                             ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                             UPDATE email_outbox SET status = $5, claim_id = $6, \
                             claimed_until = $7 FROM candidates \
                             WHERE email_outbox.id = candidates.id \
                             RETURNING email_outbox.id",
                            [
                                lane.as_str().into(),
                                PENDING.into(),
                                now.into(),
                                i64::try_from(batch).unwrap_or(i64::MAX).into(),
                                SENDING.into(),
                                claim_id.into(),
                                (now + lease).into(),
                            ],
                        ))
                        .await
                        .map_err(db_err)?
                        .iter()
                        .map(|row| row.try_get::<Uuid>("", "id"))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(db_err)?;
                    if claimed.is_empty() {
                        return Ok(End::Commit(Vec::new()));
                    }
                    let rows = email_outbox::Entity::find()
                        .filter(email_outbox::Column::Id.is_in(claimed))
                        .order_by_asc(email_outbox::Column::CreatedAt)
                        .find_also_related(customer::Entity)
                        .all(txn)
                        .await
                        .map_err(db_err)?;
                    Ok(End::Commit(rows))
                })
            })
            .await?
        } else {
            // SQLite has one writer: the claim is one statement under the write turn, and the
            // claimed rows are read after it, the turn given back.
            let claimed = {
                let _turn = self.write_turn.take(&self.db).await;
                self.db
                    .execute(&claim)
                    .await
                    .map_err(db_err)?
                    .rows_affected()
            };
            if claimed == 0 {
                return Ok(Vec::new());
            }
            email_outbox::Entity::find()
                .filter(email_outbox::Column::ClaimId.eq(claim_id))
                .order_by_asc(email_outbox::Column::CreatedAt)
                .find_also_related(customer::Entity)
                .all(&self.db)
                .await
                .map_err(db_err)?
        };
        Ok(rows
            .into_iter()
            .filter_map(|(m, c)| {
                let kind = MailKind::parse(&m.kind)?;
                let (firstname, lastname) =
                    c.map(|c| (c.firstname, c.lastname)).unwrap_or_default();
                Some(OutboxMessage {
                    id: m.id,
                    claim_id,
                    kind,
                    recipient: m.recipient,
                    locale: Locale::parse(&m.locale).unwrap_or_default(),
                    link: m.link,
                    link_expires_at: m.link_expires_at,
                    code: m.code.zip(m.code_expires_at),
                    firstname,
                    lastname,
                    attempts: m.attempts,
                })
            })
            .collect())
    }

    /// When the message next in line of `lane` (the earliest due; or one being sent) was
    /// queued, and for the interactive lane also a reset request not resolved yet: how far
    /// behind delivery is, on every replica. Index reads only, however long the queue.
    pub async fn oldest_unsent(&self, lane: MailLane) -> Result<Option<DateTime<Utc>>> {
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                let next: Option<DateTime<Utc>> = email_outbox::Entity::find()
                    .select_only()
                    .column(email_outbox::Column::CreatedAt)
                    .filter(email_outbox::Column::Lane.eq(lane.as_str()))
                    .filter(email_outbox::Column::Status.eq(PENDING))
                    .order_by_asc(email_outbox::Column::NextAttemptAt)
                    .limit(1)
                    .into_tuple()
                    .one(txn)
                    .await
                    .map_err(db_err)?;
                let sending: Option<Option<DateTime<Utc>>> = email_outbox::Entity::find()
                    .select_only()
                    .column_as(email_outbox::Column::CreatedAt.min(), "oldest")
                    .filter(email_outbox::Column::Lane.eq(lane.as_str()))
                    .filter(email_outbox::Column::Status.eq(SENDING))
                    .into_tuple()
                    .one(txn)
                    .await
                    .map_err(db_err)?;
                let unresolved: Option<Option<DateTime<Utc>>> = if lane == MailLane::Interactive {
                    reset_request::Entity::find()
                        .select_only()
                        .column_as(reset_request::Column::CreatedAt.min(), "oldest")
                        .into_tuple()
                        .one(txn)
                        .await
                        .map_err(db_err)?
                } else {
                    None
                };
                Ok(End::Commit(
                    [next, sending.flatten(), unresolved.flatten()]
                        .into_iter()
                        .flatten()
                        .min(),
                ))
            })
        })
        .await
    }

    /// Marks messages of one claim sent and scrubs their links (the raw reset tokens), in one
    /// statement.
    pub async fn mark_sent(&self, sent: &[OutboxMessage], now: DateTime<Utc>) -> Result<()> {
        let Some(first) = sent.first() else {
            return Ok(());
        };
        let _turn = self.write_turn.take(&self.db).await;
        let update = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::Status, Expr::value(SENT))
            .col_expr(email_outbox::Column::SentAt, Expr::value(Some(now)))
            .col_expr(
                email_outbox::Column::Link,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                email_outbox::Column::Code,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                email_outbox::Column::ClaimId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(
                email_outbox::Column::Attempts,
                Expr::col(email_outbox::Column::Attempts).add(1),
            )
            .filter(email_outbox::Column::Id.is_in(sent.iter().map(|m| m.id)))
            .filter(email_outbox::Column::ClaimId.eq(first.claim_id));
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                update.exec(txn).await.map_err(db_err)?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    /// Schedules a retry with backoff, or dead-letters after [`MAX_ATTEMPTS`] or at once for a
    /// `permanent` refusal. Returns true when the message is now dead.
    pub async fn mark_failed(
        &self,
        m: &OutboxMessage,
        now: DateTime<Utc>,
        error: &str,
        permanent: bool,
    ) -> Result<bool> {
        let attempts = m.attempts + 1;
        let dead = permanent || attempts >= MAX_ATTEMPTS;
        let error: String = error.chars().take(500).collect();
        let mut update = email_outbox::Entity::update_many()
            .col_expr(email_outbox::Column::Attempts, Expr::value(attempts))
            .col_expr(
                email_outbox::Column::Status,
                Expr::value(if dead { DEAD } else { PENDING }),
            )
            .col_expr(
                email_outbox::Column::NextAttemptAt,
                Expr::value(now + backoff(attempts)),
            )
            .col_expr(
                email_outbox::Column::ClaimId,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(email_outbox::Column::LastError, Expr::value(Some(error)))
            .filter(email_outbox::Column::Id.eq(m.id))
            .filter(email_outbox::Column::ClaimId.eq(m.claim_id));
        if dead {
            // A dead message will never be sent: do not keep a usable link or code in it.
            update = update
                .col_expr(
                    email_outbox::Column::Link,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    email_outbox::Column::Code,
                    Expr::value(Option::<String>::None),
                );
        }
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                update.exec(txn).await.map_err(db_err)?;
                Ok(End::Commit(dead))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_within_seconds_and_are_capped() {
        assert_eq!(backoff(1), Duration::seconds(1));
        assert_eq!(backoff(2), Duration::seconds(2));
        assert_eq!(backoff(4), Duration::seconds(8));
        assert_eq!(backoff(30), Duration::minutes(5));
    }
}
