//! Row operations more than one feature writes with, in the caller's transaction: the
//! customer row (read, locked, its address set), what "signing out everywhere" ends (sessions,
//! reset links, pending email changes), every password change, admin rows and audit entries.
//! They know tables, never a feature: the repositories above call them, and they call nothing
//! but the ground floor ([`crate::db`]) and the outbox's row builder.

use chrono::{DateTime, Utc};
use domain::{
    Result, SessionId,
    admin::{AdminUser, NewAudit, Role},
    customer::{Customer, Locale},
    email::Email,
    events::{Cause, EventType, SecurityEvent},
    ports::NewMail,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, SqlErr, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{db_err, take_sqlite_write_lock},
    entities::{
        access_token, admin_access_token, admin_device_grant, admin_user, audit_log, code_flow,
        customer, email_change, email_outbox, password_reset_token,
    },
};

pub(crate) fn to_customer(m: customer::Model) -> Customer {
    Customer {
        id: m.id,
        email: Email::from_trusted(m.email),
        firstname: m.firstname,
        lastname: m.lastname,
        locale: Locale::parse(&m.locale).unwrap_or_default(),
        created_at: m.created_at,
        password_changed_at: m.password_changed_at,
        locked_until: m.locked_until,
        frozen_at: m.frozen_at,
        reported_at: m.reported_at,
        password_change_required_at: m.password_change_required_at,
    }
}

/// Live tokens: not revoked and not expired at `now`.
pub(crate) fn live(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(access_token::Column::RevokedAt.is_null())
        .add(access_token::Column::ExpiresAt.gt(now))
}

/// Signs the customers out of every live session (but `keep`, the caller's own, when given);
/// returns how many sessions ended. Every sign-out-everywhere (Force Sign In, a reset, a
/// password change, "this wasn't me") goes through here, and so supersedes the customers'
/// pending email changes as well: the account is being taken back from whoever had it.
///
/// Each customer's `session-revoked` event is recorded with it, for `cause`, whether or not a
/// session was live here: the store's other services may hold sessions of their own.
pub(crate) async fn revoke_sessions(
    txn: &DatabaseTransaction,
    customers: impl IntoIterator<Item = Uuid>,
    keep: Option<SessionId>,
    now: DateTime<Utc>,
    cause: Cause,
) -> Result<u64> {
    let customers: Vec<Uuid> = customers.into_iter().collect();
    // Writes first (SQLite's write lock from the first statement); the events after.
    supersede_pending(txn, customers.iter().copied(), now).await?;
    end_sign_in_codes(txn, &customers, now).await?;
    let revoke = access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(access_token::Column::CustomerId.is_in(customers.clone()))
        .filter(live(now));
    let Some(keep) = keep else {
        let revoked = revoke.exec(txn).await.map_err(db_err)?.rows_affected;
        let events: Vec<SecurityEvent> = customers
            .iter()
            .map(|id| SecurityEvent::customer(EventType::SessionRevoked, *id, cause, now))
            .collect();
        crate::events::record(txn, &events).await?;
        return Ok(revoked);
    };
    // One session stays (the one that changed the password): each ended session is named, so
    // a receiver does not end the one that stays.
    let ended = revoke
        .filter(access_token::Column::Id.ne(keep.uuid()))
        .exec_with_returning(txn)
        .await
        .map_err(db_err)?;
    let events: Vec<SecurityEvent> = ended
        .iter()
        .map(|t| {
            SecurityEvent::customer(EventType::SessionRevoked, t.customer_id, cause, now)
                .for_session(SessionId::from_uuid(t.id))
        })
        .collect();
    crate::events::record(txn, &events).await?;
    Ok(ended.len() as u64)
}

/// The customer's row, locked for the rest of the transaction: the writes that derive the
/// search text from it must not interleave. On PostgreSQL `FOR UPDATE`; on SQLite a write that
/// changes nothing comes first, so the transaction holds the write lock from its first
/// statement (a read-then-write transaction could not upgrade past a concurrent writer).
pub(crate) async fn lock_customer(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> Result<Option<customer::Model>> {
    let mut find = customer::Entity::find_by_id(id);
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        find = find.lock_exclusive();
    } else {
        take_sqlite_write_lock(txn, customer::Entity, customer::Column::Id, id).await?;
    }
    find.one(txn).await.map_err(db_err)
}

/// Locks the admin's row for the rest of the transaction (PostgreSQL `FOR UPDATE`; SQLite's
/// write lock), so two changes of their factors run one after the other.
pub(crate) async fn lock_admin(txn: &DatabaseTransaction, id: Uuid) -> Result<()> {
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        admin_user::Entity::find_by_id(id)
            .lock_exclusive()
            .one(txn)
            .await
            .map_err(db_err)?;
        Ok(())
    } else {
        take_sqlite_write_lock(txn, admin_user::Entity, admin_user::Column::Id, id).await
    }
}

/// Every password change, whatever its path: new hash, lockout cleared, sessions revoked
/// (except `keep`), outstanding reset links voided, "password changed" notice queued, and the
/// `credential-change` and `session-revoked` events recorded for `cause`. Runs in the caller's
/// transaction; its first statement writes, so SQLite takes the write lock at once.
pub(crate) async fn apply_password_change(
    txn: &DatabaseTransaction,
    customer_id: Uuid,
    password_hash: String,
    keep: Option<SessionId>,
    now: DateTime<Utc>,
    notice: NewMail,
    cause: Cause,
) -> Result<u64> {
    customer::Entity::update_many()
        .col_expr(customer::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(customer::Column::PasswordChangedAt, Expr::value(now))
        .col_expr(customer::Column::FailedSignIns, Expr::value(0))
        .col_expr(
            customer::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(customer::Column::UpdatedAt, Expr::value(now))
        // A new password ends a "this wasn't me" report: the account is its owner's again.
        .col_expr(
            customer::Column::ReportedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        // A new password answers the request to replace a breached one.
        .col_expr(
            customer::Column::PasswordChangeRequiredAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(customer::Column::Id.eq(customer_id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    crate::events::record(
        txn,
        &[SecurityEvent::customer(
            EventType::CredentialChange,
            customer_id,
            cause,
            now,
        )],
    )
    .await?;
    let revoked = revoke_sessions(txn, [customer_id], keep, now, cause).await?;
    supersede_tokens(txn, [customer_id], now).await?;
    email_outbox::Entity::insert(crate::outbox::new_row(notice))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(revoked)
}

/// Ends every live session of the admin, and every grant a browser of theirs holds to skip the
/// second factor ("Remember this browser" goes with Force Sign In, a password set, disabling
/// and a reset of their factors); how many sessions.
pub(crate) async fn revoke_admin_sessions(
    txn: &DatabaseTransaction,
    admin_id: Uuid,
    now: DateTime<Utc>,
    cause: Cause,
) -> Result<u64> {
    admin_device_grant::Entity::update_many()
        .col_expr(
            admin_device_grant::Column::RevokedAt,
            Expr::value(Some(now)),
        )
        .filter(admin_device_grant::Column::AdminId.eq(admin_id))
        .filter(admin_device_grant::Column::RevokedAt.is_null())
        .exec(txn)
        .await
        .map_err(db_err)?;
    let revoked = admin_access_token::Entity::update_many()
        .col_expr(
            admin_access_token::Column::RevokedAt,
            Expr::value(Some(now)),
        )
        .filter(admin_access_token::Column::AdminId.eq(admin_id))
        .filter(admin_access_token::Column::RevokedAt.is_null())
        .filter(admin_access_token::Column::ExpiresAt.gt(now))
        .exec(txn)
        .await
        .map_err(db_err)?
        .rows_affected;
    crate::events::record(
        txn,
        &[SecurityEvent::admin(
            EventType::SessionRevoked,
            admin_id,
            cause,
            now,
        )],
    )
    .await?;
    Ok(revoked)
}

/// `None` for a row whose role this build does not know: such an admin can neither sign in nor
/// use a token (default deny).
pub(crate) fn to_admin(m: &admin_user::Model) -> Option<AdminUser> {
    Some(AdminUser {
        id: m.id,
        username: m.username.clone(),
        role: Role::parse(&m.role)?,
        created_at: m.created_at,
        email: m.email.clone(),
        disabled: m.disabled_at.is_some(),
    })
}

pub(crate) async fn insert_audit(db: &impl ConnectionTrait, a: NewAudit) -> Result<()> {
    audit_log::Entity::insert(audit_log::ActiveModel {
        id: Set(a.id),
        at: Set(a.at),
        actor_id: Set(a.actor_id),
        actor: Set(a.actor),
        action: Set(a.action.as_str().to_owned()),
        customer_id: Set(a.customer_id),
        client_ip: Set(a.client_ip),
        detail: Set(a.detail),
    })
    .exec(db)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Pending changes of the customers: not confirmed, cancelled or superseded.
pub(crate) fn pending(customers: impl IntoIterator<Item = Uuid>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(email_change::Column::CustomerId.is_in(customers))
        .add(email_change::Column::ConfirmedAt.is_null())
        .add(email_change::Column::CancelledAt.is_null())
        .add(email_change::Column::SupersededAt.is_null())
}

/// Supersedes every pending email change of `customers`: their confirmation links stop
/// working. Every remediation runs this (a password reset or change, Force Sign In, bulk
/// Force Sign In and Require New Password, "this wasn't me"): a thief who knew the password
/// and asked to move the account to their own address must not confirm it after the owner
/// has taken the account back.
pub(crate) async fn supersede_pending(
    txn: &DatabaseTransaction,
    customers: impl IntoIterator<Item = Uuid>,
    now: DateTime<Utc>,
) -> Result<()> {
    email_change::Entity::update_many()
        .col_expr(email_change::Column::SupersededAt, Expr::value(Some(now)))
        .filter(pending(customers))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Sets the customer's address (and the search text built from it); false when another
/// account has the address.
pub(crate) async fn set_email(
    txn: &DatabaseTransaction,
    current: customer::Model,
    email: &str,
    email_key: &str,
    now: DateTime<Utc>,
    cause: Cause,
) -> Result<bool> {
    // Recorded first: the subject's address is still the old one (the event names the old
    // address as its subject and the new one as its new value). A refused update rolls the
    // whole change back, the event with it.
    crate::events::record(
        txn,
        &[
            SecurityEvent::customer(EventType::IdentifierChanged, current.id, cause, now)
                .with_new_email(email),
        ],
    )
    .await?;
    let search_text = domain::search::search_text(email_key, &current.firstname, &current.lastname);
    let result = customer::Entity::update_many()
        .col_expr(customer::Column::Email, Expr::value(email))
        .col_expr(customer::Column::EmailKey, Expr::value(email_key))
        .col_expr(customer::Column::SearchText, Expr::value(search_text))
        .col_expr(customer::Column::UpdatedAt, Expr::value(now))
        .filter(customer::Column::Id.eq(current.id))
        .exec(txn)
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

/// Whether an account other than `except` has the address, or holds it: an account that
/// moved away from an address keeps it while the change can still be undone (its "this wasn't
/// me" link works), so a thief cannot register the old address and leave the owner nothing to
/// go back to. Held from the request on, not only from the confirmation, so no registration
/// can slip in between the two.
pub(crate) async fn email_in_use(
    db: &impl ConnectionTrait,
    key: &str,
    except: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut holder = customer::Entity::find().filter(customer::Column::EmailKey.eq(key));
    let mut held = email_change::Entity::find()
        .filter(email_change::Column::OldEmailKey.eq(key))
        .filter(email_change::Column::CancelledAt.is_null())
        .filter(email_change::Column::CancelUntil.gt(now));
    if let Some(except) = except {
        holder = holder.filter(customer::Column::Id.ne(except));
        held = held.filter(email_change::Column::CustomerId.ne(except));
    }
    Ok(holder.one(db).await.map_err(db_err)?.is_some()
        || held.one(db).await.map_err(db_err)?.is_some())
}

/// Ends the customers' outstanding sign-in codes: whatever signs them out everywhere or voids
/// their reset links (a reset, a password change, Force Sign In, "this wasn't me", a new reset
/// request) voids the codes that would mint a session tomorrow too. (Reset codes die with
/// their reset token.)
pub(crate) async fn end_sign_in_codes(
    txn: &DatabaseTransaction,
    customers: &[Uuid],
    now: DateTime<Utc>,
) -> Result<()> {
    code_flow::Entity::update_many()
        .col_expr(code_flow::Column::EndedAt, Expr::value(Some(now)))
        .filter(code_flow::Column::Purpose.eq(domain::reset::CodePurpose::SignIn.as_str()))
        .filter(code_flow::Column::CustomerId.is_in(customers.iter().copied()))
        .filter(code_flow::Column::EndedAt.is_null())
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Supersedes the outstanding (unused, not superseded) reset tokens of `customers`, and with
/// them their reset codes and the customers' sign-in codes.
pub(crate) async fn supersede_tokens(
    txn: &DatabaseTransaction,
    customers: impl IntoIterator<Item = Uuid>,
    now: DateTime<Utc>,
) -> Result<()> {
    let customers: Vec<Uuid> = customers.into_iter().collect();
    end_sign_in_codes(txn, &customers, now).await?;
    password_reset_token::Entity::update_many()
        .col_expr(
            password_reset_token::Column::SupersededAt,
            Expr::value(Some(now)),
        )
        .filter(password_reset_token::Column::CustomerId.is_in(customers))
        .filter(password_reset_token::Column::UsedAt.is_null())
        .filter(password_reset_token::Column::SupersededAt.is_null())
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Clears a customer's failure count and noted lock and writes `audit`, in one transaction
/// (an admin's Unlock, or the unlock link mailed to the customer); the customer's sign-in
/// name, or `None` when there is no such customer. The limiter's counts are the caller's to
/// clear.
pub(crate) async fn unlock_customer(
    db: &sea_orm::DatabaseConnection,
    customer_id: Uuid,
    audit: domain::admin::NewAudit,
) -> Result<Option<String>> {
    crate::db::unit_of_work(db, move |txn| {
        Box::pin(async move {
            let Some(found) = customer::Entity::find_by_id(customer_id)
                .one(txn)
                .await
                .map_err(db_err)?
            else {
                return Ok(crate::db::End::Rollback(None));
            };
            customer::Entity::update_many()
                .col_expr(customer::Column::FailedSignIns, Expr::value(0))
                .col_expr(
                    customer::Column::LockedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(customer::Column::Id.eq(customer_id))
                .exec(txn)
                .await
                .map_err(db_err)?;
            insert_audit(txn, audit).await?;
            Ok(crate::db::End::Commit(Some(found.email_key)))
        })
    })
    .await
}
