//! Housekeeping: deletes rows nobody needs any more, on one replica at a time (a PostgreSQL
//! transaction-scoped advisory lock; SQLite has one writer). Pending and dead-lettered mail,
//! live sessions and usable reset links are never touched.

use chrono::{DateTime, Duration, Utc};
use domain::Result;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    QueryFilter, Statement,
};

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{
        access_token, admin_access_token, admin_device_grant, admin_password_token,
        admin_spent_challenge, code_flow, email_change, email_outbox, event_delivery, limit_event,
        password_reset_token,
    },
};

/// Sessions are kept a day after they end (so "signed out" can still be explained).
const SESSION_GRACE: Duration = Duration::days(1);
/// For limit events recorded before each event carried its own expiry: longer than any window
/// those versions had (1 hour for requests, 15 minutes for invalid tokens).
const LEGACY_EVENT_RETENTION: Duration = Duration::hours(2);
/// Reset tokens feed `lastResetRequestedAt`; kept a month.
const RESET_RETENTION: Duration = Duration::days(30);
/// Email changes are kept a month after their "this wasn't me" link stopped working (the
/// customer's export lists them; while the link works the old address is held by them).
const EMAIL_CHANGE_RETENTION: Duration = Duration::days(30);
/// Admin invitation and reset links, a month after they expired.
const ADMIN_LINK_RETENTION: Duration = Duration::days(30);
/// Code flows, a day after their code stopped working (until then a guess answers "expired").
const CODE_FLOW_RETENTION: Duration = Duration::days(1);
/// Sent mail rows (already scrubbed of links) are kept a week for support questions.
const SENT_RETENTION: Duration = Duration::days(7);
/// Any constant the whole fleet agrees on.
const CLEANUP_LOCK: i64 = 0x6c61_7463_686b_6579; // "latchkey"

/// Rows deleted by one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    pub sessions: u64,
    pub limit_events: u64,
    pub reset_tokens: u64,
    pub sent_mail: u64,
    pub email_changes: u64,
    pub admin_links: u64,
    pub code_flows: u64,
    /// Security events delivered more than a week ago.
    pub delivered_events: u64,
    /// False when another replica held the lock and this pass did nothing.
    pub ran: bool,
}

/// Housekeeping.
#[derive(Debug, Clone)]
pub struct SqlCleanup {
    pub(crate) db: DatabaseConnection,
}

impl SqlCleanup {
    pub async fn cleanup(&self, now: DateTime<Utc>) -> Result<Cleanup> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                if txn.get_database_backend() == DatabaseBackend::Postgres {
                    let row = txn
                        .query_one_raw(Statement::from_sql_and_values(
                            DatabaseBackend::Postgres,
                            "SELECT pg_try_advisory_xact_lock($1) AS locked",
                            [CLEANUP_LOCK.into()],
                        ))
                        .await
                        .map_err(db_err)?;
                    let locked = row
                        .and_then(|r| r.try_get::<bool>("", "locked").ok())
                        .unwrap_or(false);
                    if !locked {
                        return Ok(End::Rollback(Cleanup::default()));
                    }
                }
                let ended = now - SESSION_GRACE;
                let sessions = access_token::Entity::delete_many()
                    .filter(
                        Condition::any()
                            .add(access_token::Column::ExpiresAt.lt(ended))
                            .add(access_token::Column::RevokedAt.lt(ended)),
                    )
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected
                    + admin_access_token::Entity::delete_many()
                        .filter(
                            Condition::any()
                                .add(admin_access_token::Column::ExpiresAt.lt(ended))
                                .add(admin_access_token::Column::RevokedAt.lt(ended)),
                        )
                        .exec(txn)
                        .await
                        .map_err(db_err)?
                        .rows_affected
                    // A spent sign-in challenge is kept only while it could still be opened.
                    + admin_spent_challenge::Entity::delete_many()
                        .filter(admin_spent_challenge::Column::ExpiresAt.lt(ended))
                        .exec(txn)
                        .await
                        .map_err(db_err)?
                        .rows_affected
                    // An admin's browser grants end like sessions ("Remember this browser").
                    + admin_device_grant::Entity::delete_many()
                        .filter(
                            Condition::any()
                                .add(admin_device_grant::Column::ExpiresAt.lt(ended))
                                .add(admin_device_grant::Column::RevokedAt.lt(ended)),
                        )
                        .exec(txn)
                        .await
                        .map_err(db_err)?
                        .rows_affected;
                let limit_events = limit_event::Entity::delete_many()
                    .filter(
                        Condition::any()
                            .add(limit_event::Column::ExpiresAt.lt(now))
                            .add(
                                Condition::all()
                                    .add(limit_event::Column::ExpiresAt.is_null())
                                    .add(limit_event::Column::At.lt(now - LEGACY_EVENT_RETENTION)),
                            ),
                    )
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let reset_tokens = password_reset_token::Entity::delete_many()
                    .filter(password_reset_token::Column::CreatedAt.lt(now - RESET_RETENTION))
                    .filter(password_reset_token::Column::ExpiresAt.lt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let sent_mail = email_outbox::Entity::delete_many()
                    .filter(email_outbox::Column::Status.eq("sent"))
                    .filter(email_outbox::Column::SentAt.lt(now - SENT_RETENTION))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let email_changes = email_change::Entity::delete_many()
                    .filter(email_change::Column::CancelUntil.lt(now - EMAIL_CHANGE_RETENTION))
                    .filter(email_change::Column::ExpiresAt.lt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let admin_links = admin_password_token::Entity::delete_many()
                    .filter(admin_password_token::Column::ExpiresAt.lt(now - ADMIN_LINK_RETENTION))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let code_flows = code_flow::Entity::delete_many()
                    .filter(code_flow::Column::ExpiresAt.lt(now - CODE_FLOW_RETENTION))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                let delivered_events = event_delivery::Entity::delete_many()
                    .filter(event_delivery::Column::Status.eq(crate::events::DELIVERED))
                    .filter(event_delivery::Column::DeliveredAt.lt(now - SENT_RETENTION))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                Ok(End::Commit(Cleanup {
                    sessions,
                    limit_events,
                    reset_tokens,
                    sent_mail,
                    email_changes,
                    admin_links,
                    code_flows,
                    delivered_events,
                    ran: true,
                }))
            })
        })
        .await
    }
}
