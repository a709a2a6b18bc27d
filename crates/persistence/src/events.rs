//! Security events, the floor every change stands on: one delivery row per event per
//! subscription that wants it, written in the unit of work of the change that caused it
//! ([`record`], called from `rows.rs` and the feature repositories); and the event worker's
//! claims, in order per subject, within each subscription's cap of requests in flight across
//! every replica (the claim locks the subscription's row on PostgreSQL; SQLite has one writer).
//! The administrators' side (subscriptions, their deliveries, replay) is `integrations.rs`.

use chrono::{DateTime, Duration, Utc};
use domain::{
    Result,
    events::{
        Actor, Cause, Delivery, DeliveryStatus, EventFormat, EventType, Outgoing, Reason,
        SecurityEvent, SubjectKind, Subscription,
    },
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::{
    db::{End, WriteTurn, db_err, queue_work, take_sqlite_write_lock},
    entities::{admin_user, customer, event_delivery, event_subscription},
};

pub(crate) const PENDING: &str = DeliveryStatus::Pending.as_str();
const SENDING: &str = DeliveryStatus::Sending.as_str();
pub(crate) const DELIVERED: &str = DeliveryStatus::Delivered.as_str();
pub(crate) const DEAD: &str = DeliveryStatus::Dead.as_str();
/// Rows per insert statement (well under either database's limit on parameters).
const INSERT_CHUNK: usize = 500;

pub(crate) fn types_to_column(types: &[EventType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn to_subscription(m: &event_subscription::Model) -> Option<Subscription> {
    Some(Subscription {
        id: m.id,
        name: m.name.clone(),
        url: m.url.clone(),
        format: EventFormat::parse(&m.format)?,
        event_types: m
            .event_types
            .split(',')
            .filter_map(EventType::parse)
            .collect(),
        enabled: m.enabled,
        include_email: m.include_email,
        audience: m.audience.clone(),
        max_in_flight: m.max_in_flight,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(crate) fn to_delivery(m: event_delivery::Model) -> Option<Delivery> {
    Some(Delivery {
        seq: m.seq,
        event_id: m.event_id,
        event_type: EventType::parse(&m.event_type)?,
        subject_kind: SubjectKind::parse(&m.subject_kind)?,
        subject_id: m.subject_id,
        reason: Reason::parse(&m.reason)?,
        status: DeliveryStatus::parse(&m.status)?,
        attempts: m.attempts,
        last_status: m.last_status,
        last_error: m.last_error,
        created_at: m.created_at,
        next_attempt_at: m.next_attempt_at,
        delivered_at: m.delivered_at,
    })
}

fn to_outgoing(m: event_delivery::Model) -> Option<Outgoing> {
    Some(Outgoing {
        seq: m.seq,
        claim_id: m.claim_id?,
        attempts: m.attempts,
        event_id: m.event_id,
        event_type: EventType::parse(&m.event_type)?,
        subject_kind: SubjectKind::parse(&m.subject_kind)?,
        subject_id: m.subject_id,
        session: m.session_id,
        cause: Cause::new(Reason::parse(&m.reason)?, Actor::parse(&m.actor)?),
        occurred_at: m.occurred_at,
        email: m.email,
        new_email: m.new_email,
    })
}

/// 1 for a bulk job's events, which go after single changes' (a store signing everyone out
/// after a breach still hears of the next Force Sign In at once); 0 for the rest.
fn priority(e: &SecurityEvent) -> i16 {
    i16::from(matches!(
        e.cause.reason,
        Reason::BulkForceSignIn | Reason::NewPasswordRequired
    ))
}

pub(crate) fn delivery_row(
    subscription: Uuid,
    e: &SecurityEvent,
    email: Option<String>,
    new_email: Option<String>,
) -> event_delivery::ActiveModel {
    event_delivery::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        subscription_id: Set(subscription),
        event_id: Set(e.id),
        event_type: Set(e.event_type.as_str().to_owned()),
        subject_kind: Set(e.subject_kind.as_str().to_owned()),
        subject_id: Set(e.subject_id),
        session_id: Set(e.session.map(|s| s.uuid())),
        reason: Set(e.cause.reason.as_str().to_owned()),
        actor: Set(e.cause.actor.as_str().to_owned()),
        priority: Set(priority(e)),
        occurred_at: Set(e.occurred_at),
        email: Set(email),
        new_email: Set(new_email),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(e.occurred_at),
        claim_id: Set(None),
        claimed_until: Set(None),
        last_status: Set(None),
        last_error: Set(None),
        created_at: Set(e.occurred_at),
        delivered_at: Set(None),
    }
}

/// Records `events` in the caller's transaction: one delivery per event per enabled
/// subscription that wants its type (none, and one cheap read, when nobody subscribed). Every
/// change that ends sessions, changes a credential, disables, deletes or re-addresses an
/// account calls this in its own unit of work, so a rolled-back change sends nothing.
///
/// Every such change must also count on every replica's session cache before its request
/// answers: this says so to the unit of work, subscribers or not.
pub(crate) async fn record(txn: &DatabaseTransaction, events: &[SecurityEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    crate::db::note_revocation();
    let subscriptions: Vec<Subscription> = event_subscription::Entity::find()
        .filter(event_subscription::Column::Enabled.eq(true))
        .all(txn)
        .await
        .map_err(db_err)?
        .iter()
        .filter_map(to_subscription)
        .collect();
    if subscriptions.is_empty() {
        return Ok(());
    }
    let emails = if subscriptions.iter().any(|s| s.include_email) {
        subject_emails(txn, events).await?
    } else {
        Default::default()
    };
    let mut rows = Vec::new();
    for e in events {
        for s in subscriptions.iter().filter(|s| s.wants(e.event_type)) {
            let (email, new_email) = if s.include_email {
                (emails.get(&e.subject_id).cloned(), e.new_email.clone())
            } else {
                (None, None)
            };
            rows.push(delivery_row(s.id, e, email, new_email));
        }
    }
    for chunk in rows.chunks(INSERT_CHUNK) {
        event_delivery::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await
            .map_err(db_err)?;
    }
    // A single change's event waits for its subject's earlier ones: a bulk job's still queued
    // for that subject move up with it (order per subject kept, no wait behind the job).
    let urgent: std::collections::BTreeSet<Uuid> = events
        .iter()
        .filter(|e| priority(e) == 0)
        .map(|e| e.subject_id)
        .collect();
    for subject in urgent {
        event_delivery::Entity::update_many()
            .col_expr(event_delivery::Column::Priority, Expr::value(0i16))
            .filter(event_delivery::Column::SubjectId.eq(subject))
            .filter(event_delivery::Column::Status.eq(PENDING))
            .filter(event_delivery::Column::Priority.eq(1i16))
            .exec(txn)
            .await
            .map_err(db_err)?;
    }
    crate::db::note_events_recorded();
    Ok(())
}

/// The subjects' addresses as stored now (before the change's own update, when it changes the
/// address: an identifier change names the old one as its subject).
async fn subject_emails(
    txn: &DatabaseTransaction,
    events: &[SecurityEvent],
) -> Result<std::collections::HashMap<Uuid, String>> {
    let ids = |kind| {
        events
            .iter()
            .filter(move |e| e.subject_kind == kind)
            .map(|e| e.subject_id)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let mut out = std::collections::HashMap::new();
    let customers = ids(SubjectKind::Customer);
    for chunk in customers
        .into_iter()
        .collect::<Vec<_>>()
        .chunks(INSERT_CHUNK)
    {
        let found: Vec<(Uuid, String)> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::Email)
            .filter(customer::Column::Id.is_in(chunk.to_vec()))
            .into_tuple()
            .all(txn)
            .await
            .map_err(db_err)?;
        out.extend(found);
    }
    let admins: Vec<Uuid> = ids(SubjectKind::Admin).into_iter().collect();
    if !admins.is_empty() {
        let found: Vec<(Uuid, Option<String>)> = admin_user::Entity::find()
            .select_only()
            .column(admin_user::Column::Id)
            .column(admin_user::Column::Email)
            .filter(admin_user::Column::Id.is_in(admins))
            .into_tuple()
            .all(txn)
            .await
            .map_err(db_err)?;
        out.extend(found.into_iter().filter_map(|(id, e)| Some((id, e?))));
    }
    Ok(out)
}

/// Subscriptions and their deliveries.
#[derive(Debug, Clone)]
pub struct SqlEvents {
    pub(crate) db: DatabaseConnection,
    /// SQLite's write turn, shared with the other writers that run all the time.
    pub(crate) write_turn: WriteTurn,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub struct Settled {
    pub seq: i64,
    pub claim_id: Uuid,
    pub subscription_id: Uuid,
    pub subject_id: Uuid,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<i32>,
    /// `None`: delivered. `Some`: why not, and when to try again (`None`: dead).
    pub failure: Option<(String, Option<DateTime<Utc>>)>,
}

impl SqlEvents {
    /// Every enabled subscription, with its sealed webhook secret.
    pub async fn enabled(&self) -> Result<Vec<(Subscription, Option<Vec<u8>>)>> {
        Ok(event_subscription::Entity::find()
            .filter(event_subscription::Column::Enabled.eq(true))
            .order_by_asc(event_subscription::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .filter_map(|m| Some((to_subscription(&m)?, m.secret_sealed)))
            .collect())
    }

    /// A watch of this process's commits that recorded events: the idle worker's wake-up
    /// (events written by another replica are found by polling).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        crate::db::events_committed()
    }

    /// Whether a delivery of the subscription is due now (an index range of its pending
    /// rows): an idle worker's poll.
    pub async fn due(&self, subscription: Uuid, now: DateTime<Utc>) -> Result<bool> {
        Ok(event_delivery::Entity::find()
            .select_only()
            .column(event_delivery::Column::Seq)
            .filter(event_delivery::Column::SubscriptionId.eq(subscription))
            .filter(event_delivery::Column::Status.eq(PENDING))
            .filter(event_delivery::Column::NextAttemptAt.lte(now))
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.db)
            .await
            .map_err(db_err)?
            .is_some())
    }

    /// Claims up to the subscription's room (its cap less what is in flight anywhere) of due
    /// deliveries, each the earliest unsettled one of its subject, single changes' before bulk
    /// jobs', for `lease`.
    pub async fn claim(
        &self,
        subscription: Uuid,
        now: DateTime<Utc>,
        lease: Duration,
        requeue: bool,
        settled: Vec<Settled>,
    ) -> Result<Vec<Outgoing>> {
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                // The previous round's outcomes first, in this transaction.
                settle_in(txn, &settled, now).await?;
                // One claim per subscription at a time, on every replica.
                let sub = if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                    // FOR NO KEY UPDATE: the deliveries' foreign key takes KEY SHARE on this row
                    // in every revoking transaction, which FOR UPDATE would wait for (and make
                    // wait).
                    event_subscription::Entity::find_by_id(subscription)
                        .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
                        .one(txn)
                        .await
                        .map_err(db_err)?
                } else {
                    take_sqlite_write_lock(
                        txn,
                        event_subscription::Entity,
                        event_subscription::Column::Id,
                        subscription,
                    )
                    .await?;
                    event_subscription::Entity::find_by_id(subscription)
                        .one(txn)
                        .await
                        .map_err(db_err)?
                };
                let Some(sub) = sub.filter(|s| s.enabled) else {
                    return Ok(End::Commit(Vec::new()));
                };
                // A replica that died mid-send: its claims go back in line (asked every few
                // seconds, not with every claim).
                if requeue {
                    event_delivery::Entity::update_many()
                        .col_expr(event_delivery::Column::Status, Expr::value(PENDING))
                        .col_expr(
                            event_delivery::Column::ClaimId,
                            Expr::value(Option::<Uuid>::None),
                        )
                        .filter(event_delivery::Column::SubscriptionId.eq(subscription))
                        .filter(event_delivery::Column::Status.eq(SENDING))
                        .filter(event_delivery::Column::ClaimedUntil.lt(now))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                }
                let in_flight = event_delivery::Entity::find()
                    .filter(event_delivery::Column::SubscriptionId.eq(subscription))
                    .filter(event_delivery::Column::Status.eq(SENDING))
                    .count(txn)
                    .await
                    .map_err(db_err)?;
                let room = u64::try_from(sub.max_in_flight)
                    .unwrap_or(1)
                    .saturating_sub(in_flight);
                if room == 0 {
                    return Ok(End::Commit(Vec::new()));
                }
                let (d, e) = (Alias::new("d"), Alias::new("e"));
                use event_delivery::Column as C;
                // The head of each subject: the earliest of its unsettled deliveries. A scalar
                // subquery, run per candidate on the subject index whatever the statistics say
                // (as NOT EXISTS, PostgreSQL with statistics from before a bulk job planned an
                // anti-join over every pending row: 112 ms a claim against 1.6 ms).
                let head_of_subject = Query::select()
                    .expr(sea_orm::sea_query::Func::min(Expr::col((
                        e.clone(),
                        C::Seq,
                    ))))
                    .from_as(event_delivery::Entity, e.clone())
                    .and_where(Expr::col((e.clone(), C::SubscriptionId)).eq(subscription))
                    .and_where(
                        Expr::col((e.clone(), C::SubjectId)).equals((d.clone(), C::SubjectId)),
                    )
                    .and_where(Expr::col((e.clone(), C::Status)).is_in([PENDING, SENDING]))
                    .to_owned();
                let heads = Query::select()
                    .column((d.clone(), C::Seq))
                    .from_as(event_delivery::Entity, d.clone())
                    .and_where(Expr::col((d.clone(), C::SubscriptionId)).eq(subscription))
                    .and_where(Expr::col((d.clone(), C::Status)).eq(PENDING))
                    .and_where(Expr::col((d.clone(), C::NextAttemptAt)).lte(now))
                    .and_where(
                        Expr::col((d.clone(), C::Seq))
                            .eq(Expr::SubQuery(None, Box::new(head_of_subject.into()))),
                    )
                    .order_by((d.clone(), C::Priority), sea_orm::Order::Asc)
                    .order_by((d.clone(), C::Seq), sea_orm::Order::Asc)
                    .limit(room)
                    .to_owned();
                let seqs = txn
                    .query_all(&heads)
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|row| row.try_get::<i64>("", "seq"))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                if seqs.is_empty() {
                    return Ok(End::Commit(Vec::new()));
                }
                let claim_id = Uuid::now_v7();
                let mut rows = event_delivery::Entity::update_many()
                    .col_expr(C::Status, Expr::value(SENDING))
                    .col_expr(C::ClaimId, Expr::value(Some(claim_id)))
                    .col_expr(C::ClaimedUntil, Expr::value(Some(now + lease)))
                    .filter(C::Seq.is_in(seqs))
                    .exec_with_returning(txn)
                    .await
                    .map_err(db_err)?;
                rows.sort_by_key(|r| r.seq);
                Ok(End::Commit(
                    rows.into_iter().filter_map(to_outgoing).collect(),
                ))
            })
        })
        .await
    }

    /// Settles the attempts of a round: delivered, retried later, or dead (when no claim
    /// follows to carry them: a stopping worker).
    pub async fn settle(&self, settled: Vec<Settled>, now: DateTime<Utc>) -> Result<()> {
        if settled.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn.take(&self.db).await;
        queue_work(&self.db, move |txn| {
            Box::pin(async move {
                settle_in(txn, &settled, now).await?;
                Ok(End::Commit(()))
            })
        })
        .await
    }
}

/// A round's outcomes, in the caller's transaction.
async fn settle_in(
    txn: &DatabaseTransaction,
    settled: &[Settled],
    now: DateTime<Utc>,
) -> Result<()> {
    if settled.is_empty() {
        return Ok(());
    }
    use event_delivery::Column as C;
    let delivered: Vec<&Settled> = settled.iter().filter(|s| s.failure.is_none()).collect();
    let mut by_status: std::collections::BTreeMap<Option<i32>, Vec<(i64, Uuid)>> =
        Default::default();
    for s in &delivered {
        by_status
            .entry(s.status)
            .or_default()
            .push((s.seq, s.claim_id));
    }
    for (status, rows) in by_status {
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let claims: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
        event_delivery::Entity::update_many()
            .col_expr(C::Status, Expr::value(DELIVERED))
            .col_expr(C::DeliveredAt, Expr::value(Some(now)))
            // Sent: the address is not kept (as the mail outbox scrubs its links).
            .col_expr(C::Email, Expr::value(Option::<String>::None))
            .col_expr(C::NewEmail, Expr::value(Option::<String>::None))
            .col_expr(C::LastStatus, Expr::value(status))
            .col_expr(C::LastError, Expr::value(Option::<String>::None))
            .col_expr(C::ClaimId, Expr::value(Option::<Uuid>::None))
            .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
            .filter(C::Seq.is_in(seqs))
            .filter(C::ClaimId.is_in(claims))
            .exec(txn)
            .await
            .map_err(db_err)?;
    }
    for s in settled.iter() {
        let Some((error, retry_at)) = &s.failure else {
            continue;
        };
        let error: String = error.chars().take(500).collect();
        event_delivery::Entity::update_many()
            .col_expr(
                C::Status,
                Expr::value(if retry_at.is_some() { PENDING } else { DEAD }),
            )
            .col_expr(C::NextAttemptAt, Expr::value(retry_at.unwrap_or(now)))
            .col_expr(C::LastStatus, Expr::value(s.status))
            .col_expr(C::LastError, Expr::value(Some(error)))
            .col_expr(C::ClaimId, Expr::value(Option::<Uuid>::None))
            .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
            .filter(C::Seq.eq(s.seq))
            .filter(C::ClaimId.eq(s.claim_id))
            .exec(txn)
            .await
            .map_err(db_err)?;
        // The subject's later events wait for this one: they are not due before
        // it is tried again, so an idle worker's poll does not wake for them and
        // a claim's scan passes them by.
        if let Some(retry_at) = retry_at {
            event_delivery::Entity::update_many()
                .col_expr(C::NextAttemptAt, Expr::value(*retry_at))
                .filter(C::SubscriptionId.eq(s.subscription_id))
                .filter(C::SubjectId.eq(s.subject_id))
                .filter(C::Status.eq(PENDING))
                .filter(C::Seq.gt(s.seq))
                .filter(C::NextAttemptAt.lt(*retry_at))
                .exec(txn)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(())
}
