//! The email-change repository: each change and its two messages in one transaction; applying
//! or cancelling one in another, guarded by the row's own state so a link works once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Result,
    admin::NewAudit,
    customer::Locale,
    email::Email,
    email_change::{
        Applied, Cancelled, EmailChangeLink, EmailChangeStore, NewEmailChange, Recovered,
        ReleaseOffer, Released, StoredEmailChange,
    },
    ports::{MailKind, NewMail},
    stored_hash::VOID_PASSWORD,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, sea_query::Expr,
};
use uuid::Uuid;

use crate::rows::{email_in_use, set_email, supersede_pending};
use crate::{
    db::{End, db_err, unit_of_work},
    entities::{customer, email_change, email_outbox},
    rows::{lock_customer, to_customer},
};

fn to_stored(m: email_change::Model) -> StoredEmailChange {
    StoredEmailChange {
        id: m.id,
        customer_id: m.customer_id,
        expires_at: m.expires_at,
        cancel_until: m.cancel_until,
        confirmed_at: m.confirmed_at,
        cancelled_at: m.cancelled_at,
        superseded_at: m.superseded_at,
        release_until: m.release_until,
    }
}

/// The email-change repository.
#[derive(Debug, Clone)]
pub struct SqlEmailChanges {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl EmailChangeStore for SqlEmailChanges {
    async fn request_email_change(&self, change: NewEmailChange) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // Taken now: refused. Taken between now and the confirmation: the
                // confirmation is refused (the address is unique on the customers table).
                if lock_customer(txn, change.customer_id).await?.is_none()
                    || email_in_use(
                        txn,
                        change.new_email.key(),
                        Some(change.customer_id),
                        change.now,
                    )
                    .await?
                {
                    return Ok(End::Rollback(false));
                }
                supersede_pending(txn, [change.customer_id], change.now).await?;
                email_change::Entity::insert(email_change::ActiveModel {
                    id: Set(change.id),
                    customer_id: Set(change.customer_id),
                    old_email: Set(change.old_email.as_str().to_owned()),
                    old_email_key: Set(change.old_email.key().to_owned()),
                    new_email: Set(change.new_email.as_str().to_owned()),
                    new_email_key: Set(change.new_email.key().to_owned()),
                    confirm_hash: Set(change.confirm_hash),
                    cancel_hash: Set(change.cancel_hash),
                    created_at: Set(change.now),
                    expires_at: Set(change.expires_at),
                    cancel_until: Set(change.cancel_until),
                    confirmed_at: Set(None),
                    cancelled_at: Set(None),
                    superseded_at: Set(None),
                    release_hash: Set(None),
                    release_until: Set(None),
                })
                .exec(txn)
                .await
                .map_err(db_err)?;
                email_outbox::Entity::insert_many([
                    crate::outbox::new_row(change.confirm_mail),
                    crate::outbox::new_row(change.notice_mail),
                ])
                .exec(txn)
                .await
                .map_err(db_err)?;
                Ok(End::Commit(true))
            })
        })
        .await
    }

    async fn find_email_change(
        &self,
        token_hash: &str,
        link: EmailChangeLink,
    ) -> Result<Option<StoredEmailChange>> {
        let column = match link {
            EmailChangeLink::Confirm => email_change::Column::ConfirmHash,
            EmailChangeLink::Cancel => email_change::Column::CancelHash,
            EmailChangeLink::Release => email_change::Column::ReleaseHash,
        };
        Ok(email_change::Entity::find()
            .filter(column.eq(token_hash))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_stored))
    }

    async fn confirm_email_change(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        revert_until: DateTime<Utc>,
    ) -> Result<Applied> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // Claims the change first: of two concurrent uses of the link, one wins. The
                // old address's "this wasn't me" now works for the shorter window only.
                let claimed = email_change::Entity::update_many()
                    .col_expr(email_change::Column::ConfirmedAt, Expr::value(Some(now)))
                    .col_expr(
                        email_change::Column::CancelUntil,
                        Expr::case(
                            email_change::Column::CancelUntil.gt(revert_until),
                            Expr::value(revert_until),
                        )
                        .finally(Expr::col(email_change::Column::CancelUntil))
                        .into(),
                    )
                    .filter(email_change::Column::Id.eq(id))
                    .filter(email_change::Column::ConfirmedAt.is_null())
                    .filter(email_change::Column::CancelledAt.is_null())
                    .filter(email_change::Column::SupersededAt.is_null())
                    .filter(email_change::Column::ExpiresAt.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if claimed.rows_affected != 1 {
                    return Ok(End::Rollback(Applied::Gone));
                }
                let Some(change) = email_change::Entity::find_by_id(id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                else {
                    return Ok(End::Rollback(Applied::Gone));
                };
                let Some(current) = lock_customer(txn, change.customer_id).await? else {
                    return Ok(End::Rollback(Applied::Gone));
                };
                // The account was taken back since the request (its password reset, changed
                // or voided): whoever asked may have been the thief it was taken back from.
                // Every remediation supersedes pending changes as well; this holds even for
                // a row written before that rule.
                if current.password_hash.is_empty()
                    || current.password_hash == VOID_PASSWORD
                    || current.password_changed_at > change.created_at
                {
                    return Ok(End::Rollback(Applied::Gone));
                }
                if email_in_use(txn, &change.new_email_key, Some(change.customer_id), now).await?
                    || !set_email(
                        txn,
                        current,
                        &change.new_email,
                        &change.new_email_key,
                        now,
                        Cause::new(Reason::EmailChanged, Actor::User),
                    )
                    .await?
                {
                    return Ok(End::Rollback(Applied::EmailTaken));
                }
                // Reset links were sent to an address that is no longer (or again) the account's.
                crate::rows::supersede_tokens(txn, [change.customer_id], now).await?;
                let customer = customer::Entity::find_by_id(change.customer_id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                    .map(to_customer);
                Ok(match customer {
                    Some(c) => End::Commit(Applied::Changed(c)),
                    None => End::Rollback(Applied::Gone),
                })
            })
        })
        .await
    }

    async fn cancel_email_change(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        offer: ReleaseOffer,
    ) -> Result<Cancelled> {
        unit_of_work(&self.db, move |txn| {
            let offer = offer.clone();
            Box::pin(async move {
                let claimed = email_change::Entity::update_many()
                    .col_expr(email_change::Column::CancelledAt, Expr::value(Some(now)))
                    .filter(email_change::Column::Id.eq(id))
                    .filter(email_change::Column::CancelledAt.is_null())
                    .filter(email_change::Column::CancelUntil.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if claimed.rows_affected != 1 {
                    return Ok(End::Rollback(Cancelled::Gone));
                }
                let Some(change) = email_change::Entity::find_by_id(id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                else {
                    return Ok(End::Rollback(Cancelled::Gone));
                };
                // Did the account actually move (this change, or one after it, confirmed)?
                let moved = email_change::Entity::find()
                    .filter(email_change::Column::CustomerId.eq(change.customer_id))
                    .filter(email_change::Column::CreatedAt.gte(change.created_at))
                    .filter(email_change::Column::ConfirmedAt.is_not_null())
                    .one(txn)
                    .await
                    .map_err(db_err)?
                    .is_some();
                let mut outcome = Cancelled::Stopped;
                if let Some(current) = lock_customer(txn, change.customer_id).await? {
                    let removed = (current.email.clone(), current.locale.clone());
                    // Back to the address the account had before this change, however many
                    // changes followed it (a thief who moved it on again must not outlast
                    // the first notice), unless another account has registered that address
                    // since (then the account stays where it is, signed out, its password
                    // void).
                    if current.email_key != change.old_email_key
                        && !email_in_use(txn, &change.old_email_key, Some(change.customer_id), now)
                            .await?
                    {
                        set_email(
                            txn,
                            current,
                            &change.old_email,
                            &change.old_email_key,
                            now,
                            Cause::new(Reason::ReportedNotMe, Actor::User),
                        )
                        .await?;
                    }
                    // Whoever asked knew the password: it stops working. Before a confirmation
                    // the owner sets a new one with "Forgot Your Password?"; after one, the
                    // account is frozen: whoever reads the old mailbox (people move because
                    // they lost it) does not get it back by clicking a link, and no reset link
                    // is issued until an admin has checked who owns it.
                    let mut update = customer::Entity::update_many()
                        .col_expr(customer::Column::PasswordHash, Expr::value(VOID_PASSWORD))
                        .col_expr(customer::Column::UpdatedAt, Expr::value(now));
                    if moved {
                        update =
                            update.col_expr(customer::Column::FrozenAt, Expr::value(Some(now)));
                        outcome = Cancelled::Frozen;
                    }
                    update
                        .filter(customer::Column::Id.eq(change.customer_id))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                    if moved && removed.0 != change.old_email {
                        // The address being removed is told: it may be the owner's. If it
                        // agrees, it gives the account back to the address from before.
                        email_change::Entity::update_many()
                            .col_expr(
                                email_change::Column::ReleaseHash,
                                Expr::value(Some(offer.hash.clone())),
                            )
                            .col_expr(
                                email_change::Column::ReleaseUntil,
                                Expr::value(Some(offer.until)),
                            )
                            .filter(email_change::Column::Id.eq(id))
                            .exec(txn)
                            .await
                            .map_err(db_err)?;
                        let notice = NewMail {
                            id: Uuid::now_v7(),
                            kind: MailKind::AccountFrozen,
                            customer_id: Some(change.customer_id),
                            recipient: removed.0,
                            locale: Locale::parse(&removed.1).unwrap_or_default(),
                            created_at: now,
                            link: Some((offer.link.clone(), offer.until)),
                        };
                        email_outbox::Entity::insert(crate::outbox::new_row(notice))
                            .exec(txn)
                            .await
                            .map_err(db_err)?;
                    }
                }
                // The changes asked for after this one are undone with it: their links die.
                email_change::Entity::update_many()
                    .col_expr(email_change::Column::CancelledAt, Expr::value(Some(now)))
                    .filter(email_change::Column::CustomerId.eq(change.customer_id))
                    .filter(email_change::Column::CreatedAt.gte(change.created_at))
                    .filter(email_change::Column::CancelledAt.is_null())
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Signing out everywhere supersedes the customer's pending changes too.
                let cause = Cause::new(Reason::ReportedNotMe, Actor::User);
                // The password is void from here on (and the account frozen, if it moved): those
                // events first, then the sessions', as every credential change sends them.
                let mut events = vec![SecurityEvent::customer(
                    EventType::CredentialChange,
                    change.customer_id,
                    cause,
                    now,
                )];
                if matches!(outcome, Cancelled::Frozen) {
                    events.push(SecurityEvent::customer(
                        EventType::AccountDisabled,
                        change.customer_id,
                        Cause::new(Reason::Frozen, Actor::User),
                        now,
                    ));
                }
                crate::events::record(txn, &events).await?;
                crate::rows::revoke_sessions(txn, [change.customer_id], None, now, cause).await?;
                // Reset links were sent to an address that is no longer (or again) the account's.
                crate::rows::supersede_tokens(txn, [change.customer_id], now).await?;
                Ok(End::Commit(outcome))
            })
        })
        .await
    }

    async fn release_frozen(
        &self,
        change_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Released> {
        unit_of_work(&self.db, move |txn| {
            let audit = audit.clone();
            Box::pin(async move {
                // Claims the link first: of two concurrent uses, one wins.
                let claimed = email_change::Entity::update_many()
                    .col_expr(
                        email_change::Column::ReleaseHash,
                        Expr::value(Option::<String>::None),
                    )
                    .filter(email_change::Column::Id.eq(change_id))
                    .filter(email_change::Column::ReleaseHash.is_not_null())
                    .filter(email_change::Column::ReleaseUntil.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if claimed.rows_affected != 1 {
                    return Ok(End::Rollback(Released::Gone));
                }
                let Some(change) = email_change::Entity::find_by_id(change_id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                else {
                    return Ok(End::Rollback(Released::Gone));
                };
                // Only the freeze this change's revert set: an admin's recovery (or a later
                // freeze) is not undone by an old link.
                let Some(current) = lock_customer(txn, change.customer_id).await? else {
                    return Ok(End::Rollback(Released::Gone));
                };
                if current.frozen_at.is_none() || current.frozen_at != change.cancelled_at {
                    return Ok(End::Rollback(Released::Gone));
                }
                unfreeze(
                    txn,
                    change.customer_id,
                    now,
                    Cause::new(Reason::Recovered, Actor::User),
                )
                .await?;
                crate::rows::insert_audit(txn, audit).await?;
                Ok(End::Commit(Released::Released))
            })
        })
        .await
    }

    async fn recover_frozen(
        &self,
        customer_id: Uuid,
        email: Option<Email>,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Recovered> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let Some(current) = lock_customer(txn, customer_id).await? else {
                    return Ok(End::Rollback(Recovered::NotFound));
                };
                if current.frozen_at.is_none() {
                    return Ok(End::Rollback(Recovered::NotFrozen));
                }
                if let Some(email) = &email
                    && email.key() != current.email_key
                    && (email_in_use(txn, email.key(), Some(customer_id), now).await?
                        || !set_email(
                            txn,
                            current,
                            email.as_str(),
                            email.key(),
                            now,
                            Cause::new(Reason::Recovered, Actor::Admin),
                        )
                        .await?)
                {
                    return Ok(End::Rollback(Recovered::EmailTaken));
                }
                unfreeze(
                    txn,
                    customer_id,
                    now,
                    Cause::new(Reason::Recovered, Actor::Admin),
                )
                .await?;
                crate::rows::insert_audit(txn, audit).await?;
                let customer = customer::Entity::find_by_id(customer_id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                    .map(to_customer);
                Ok(match customer {
                    Some(c) => End::Commit(Recovered::Recovered(c)),
                    None => End::Rollback(Recovered::NotFound),
                })
            })
        })
        .await
    }
}

/// Unfreezes the customer (by an admin's recovery or the removed address's agreement) and
/// voids the reset links sent while it was frozen; the password stays void.
async fn unfreeze(
    txn: &DatabaseTransaction,
    customer_id: Uuid,
    now: DateTime<Utc>,
    cause: Cause,
) -> Result<()> {
    crate::events::record(
        txn,
        &[SecurityEvent::customer(
            EventType::AccountEnabled,
            customer_id,
            cause,
            now,
        )],
    )
    .await?;
    customer::Entity::update_many()
        .col_expr(
            customer::Column::FrozenAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(customer::Column::UpdatedAt, Expr::value(now))
        .filter(customer::Column::Id.eq(customer_id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    crate::rows::supersede_tokens(txn, [customer_id], now).await?;
    Ok(())
}
