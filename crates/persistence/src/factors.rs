//! Admins' second factors (`domain::factors`): sealed TOTP secrets with the newest step each
//! accepted, and the hashes of recovery codes. A step and a recovery code are each spent by
//! one guarded statement, so two requests with one code cannot both succeed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Result,
    admin::{AdminUser, NewAudit},
    factors::{DeviceGrant, FactorKind, FactorStore, Removal, StoredFactor, grant::NewGrant},
    ports::NewMail,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{
        admin_device_grant, admin_factor, admin_recovery_code, admin_spent_challenge, admin_user,
        email_outbox,
    },
    rows::{insert_audit, lock_admin, revoke_admin_sessions, to_admin},
};

/// A row of a kind this build does not know is `FactorKind::Unknown`: it still counts as a
/// factor (fail closed), and signs nobody in.
fn to_factor(m: admin_factor::Model) -> StoredFactor {
    StoredFactor {
        id: m.id,
        admin_id: m.admin_id,
        kind: FactorKind::parse(&m.kind),
        name: m.name,
        sealed_secret: m.sealed_secret,
        created_at: m.created_at,
        confirmed_at: m.confirmed_at,
        last_used_step: m.last_used_step.and_then(|s| u64::try_from(s).ok()),
        last_used_at: m.last_used_at,
    }
}

fn to_row(f: StoredFactor) -> admin_factor::ActiveModel {
    admin_factor::ActiveModel {
        id: Set(f.id),
        admin_id: Set(f.admin_id),
        kind: Set(f.kind.as_str().to_owned()),
        name: Set(f.name),
        sealed_secret: Set(f.sealed_secret),
        created_at: Set(f.created_at),
        confirmed_at: Set(f.confirmed_at),
        last_used_step: Set(f.last_used_step.map(stored_step)),
        last_used_at: Set(f.last_used_at),
    }
}

/// Steps are stored as signed 64-bit numbers (both databases' integer); a step beyond that is
/// millions of years away.
fn stored_step(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// The update that spends `step` of `factor_id`: it matches only while every step the factor
/// accepted is older.
fn spend_step(
    factor_id: Uuid,
    step: u64,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<admin_factor::Entity> {
    let step = stored_step(step);
    admin_factor::Entity::update_many()
        .col_expr(admin_factor::Column::LastUsedStep, Expr::value(step))
        .col_expr(admin_factor::Column::LastUsedAt, Expr::value(now))
        .filter(admin_factor::Column::Id.eq(factor_id))
        .filter(
            Condition::any()
                .add(admin_factor::Column::LastUsedStep.is_null())
                .add(admin_factor::Column::LastUsedStep.lt(step)),
        )
}

/// Admins' factors and recovery codes.
#[derive(Debug, Clone)]
pub struct SqlFactors {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl FactorStore for SqlFactors {
    async fn add_totp(&self, f: StoredFactor, stale_before: DateTime<Utc>) -> Result<()> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                admin_factor::Entity::delete_many()
                    .filter(admin_factor::Column::AdminId.eq(f.admin_id))
                    .filter(admin_factor::Column::ConfirmedAt.is_null())
                    .filter(admin_factor::Column::CreatedAt.lt(stale_before))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                admin_factor::Entity::insert(to_row(f))
                    .exec_without_returning(txn)
                    .await
                    .map_err(db_err)?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn add_passkey(&self, f: StoredFactor, audit: NewAudit) -> Result<()> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                admin_factor::Entity::insert(to_row(f))
                    .exec_without_returning(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn update_passkey(
        &self,
        factor_id: Uuid,
        sealed_secret: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        admin_factor::Entity::update_many()
            .col_expr(
                admin_factor::Column::SealedSecret,
                Expr::value(sealed_secret),
            )
            .col_expr(admin_factor::Column::LastUsedAt, Expr::value(Some(now)))
            .filter(admin_factor::Column::Id.eq(factor_id))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn admin(&self, admin_id: Uuid) -> Result<Option<AdminUser>> {
        Ok(admin_user::Entity::find_by_id(admin_id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .as_ref()
            .and_then(to_admin))
    }

    async fn admin_named(&self, username_key: &str) -> Result<Option<AdminUser>> {
        Ok(admin_user::Entity::find()
            .filter(admin_user::Column::UsernameKey.eq(username_key))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .as_ref()
            .and_then(to_admin))
    }

    async fn reset_factors(
        &self,
        admin_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
        notice: Option<NewMail>,
    ) -> Result<u64> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let cause = Cause::new(Reason::FactorsReset, Actor::Admin);
                // The writes first (SQLite's lock), then the events in the order every
                // credential change sends them: the credential, then the sessions.
                admin_factor::Entity::delete_many()
                    .filter(admin_factor::Column::AdminId.eq(admin_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                admin_recovery_code::Entity::delete_many()
                    .filter(admin_recovery_code::Column::AdminId.eq(admin_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                crate::events::record(
                    txn,
                    &[SecurityEvent::admin(
                        EventType::CredentialChange,
                        admin_id,
                        cause,
                        now,
                    )],
                )
                .await?;
                let ended = revoke_admin_sessions(txn, admin_id, now, cause).await?;
                insert_audit(txn, audit).await?;
                if let Some(notice) = notice {
                    email_outbox::Entity::insert(crate::outbox::new_row(notice))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                }
                Ok(End::Commit(ended))
            })
        })
        .await
    }

    async fn factors(&self, admin_id: Uuid) -> Result<Vec<StoredFactor>> {
        Ok(admin_factor::Entity::find()
            .filter(admin_factor::Column::AdminId.eq(admin_id))
            .order_by_asc(admin_factor::Column::CreatedAt)
            .order_by_asc(admin_factor::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_factor)
            .collect())
    }

    async fn use_totp_step(&self, factor_id: Uuid, step: u64, now: DateTime<Utc>) -> Result<bool> {
        let used = spend_step(factor_id, step, now)
            .filter(admin_factor::Column::ConfirmedAt.is_not_null())
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(used.rows_affected == 1)
    }

    async fn confirm_totp(
        &self,
        factor_id: Uuid,
        step: u64,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let confirmed = spend_step(factor_id, step, now)
                    .col_expr(admin_factor::Column::ConfirmedAt, Expr::value(now))
                    .filter(admin_factor::Column::ConfirmedAt.is_null())
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if confirmed.rows_affected != 1 {
                    return Ok(End::Rollback(false));
                }
                insert_audit(txn, audit).await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }

    async fn remove_factor(
        &self,
        admin_id: Uuid,
        factor_id: Uuid,
        keep_one: bool,
        audit: NewAudit,
    ) -> Result<Removal> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // Two removals at once must not each leave the other's factor as the last.
                lock_admin(txn, admin_id).await?;
                let removed = admin_factor::Entity::delete_many()
                    .filter(admin_factor::Column::Id.eq(factor_id))
                    .filter(admin_factor::Column::AdminId.eq(admin_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if removed.rows_affected != 1 {
                    return Ok(End::Rollback(Removal::NotFound));
                }
                // Recovery codes stand in for a factor: with the last confirmed one they go.
                let confirmed_left = admin_factor::Entity::find()
                    .filter(admin_factor::Column::AdminId.eq(admin_id))
                    .filter(admin_factor::Column::ConfirmedAt.is_not_null())
                    .count(txn)
                    .await
                    .map_err(db_err)?;
                if confirmed_left == 0 && keep_one {
                    return Ok(End::Rollback(Removal::LastKept));
                }
                if confirmed_left == 0 {
                    admin_recovery_code::Entity::delete_many()
                        .filter(admin_recovery_code::Column::AdminId.eq(admin_id))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                }
                crate::events::record(
                    txn,
                    &[SecurityEvent::admin(
                        EventType::CredentialChange,
                        admin_id,
                        Cause::new(Reason::FactorChanged, Actor::User),
                        audit.at,
                    )],
                )
                .await?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(Removal::Removed))
            })
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        admin_id: Uuid,
        hashes: Vec<String>,
        now: DateTime<Utc>,
        audit: Option<NewAudit>,
    ) -> Result<()> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // The old set goes in the statement that writes first (SQLite's write lock at
                // once), the new one in the same transaction.
                admin_recovery_code::Entity::delete_many()
                    .filter(admin_recovery_code::Column::AdminId.eq(admin_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if !hashes.is_empty() {
                    admin_recovery_code::Entity::insert_many(hashes.into_iter().map(|hash| {
                        admin_recovery_code::ActiveModel {
                            admin_id: Set(admin_id),
                            code_hash: Set(hash),
                            created_at: Set(now),
                            used_at: Set(None),
                        }
                    }))
                    .exec_without_returning(txn)
                    .await
                    .map_err(db_err)?;
                }
                // A new set replacing an old one (not the first, made with the first factor).
                if let Some(audit) = audit {
                    crate::events::record(
                        txn,
                        &[SecurityEvent::admin(
                            EventType::CredentialChange,
                            admin_id,
                            Cause::new(Reason::FactorChanged, Actor::User),
                            now,
                        )],
                    )
                    .await?;
                    insert_audit(txn, audit).await?;
                }
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        admin_id: Uuid,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let used = admin_recovery_code::Entity::update_many()
            .col_expr(admin_recovery_code::Column::UsedAt, Expr::value(Some(now)))
            .filter(admin_recovery_code::Column::AdminId.eq(admin_id))
            .filter(admin_recovery_code::Column::CodeHash.eq(hash))
            .filter(admin_recovery_code::Column::UsedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(used.rows_affected == 1)
    }

    async fn spend_challenge(&self, hash: String, expires_at: DateTime<Utc>) -> Result<bool> {
        let spent = admin_spent_challenge::Entity::insert(admin_spent_challenge::ActiveModel {
            challenge_hash: Set(hash),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(admin_spent_challenge::Column::ChallengeHash)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await
        .map_err(db_err)?;
        Ok(spent == 1)
    }

    async fn add_grant(&self, g: NewGrant) -> Result<()> {
        admin_device_grant::Entity::insert(admin_device_grant::ActiveModel {
            id: Set(g.id),
            admin_id: Set(g.admin_id),
            secret_hash: Set(g.secret_hash),
            created_at: Set(g.created_at),
            expires_at: Set(g.expires_at),
            last_used_at: Set(None),
            revoked_at: Set(None),
            user_agent: Set(g.user_agent),
        })
        .exec_without_returning(&self.db)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn use_grant(
        &self,
        admin_id: Uuid,
        secret_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let used = admin_device_grant::Entity::update_many()
            .col_expr(
                admin_device_grant::Column::LastUsedAt,
                Expr::value(Some(now)),
            )
            .filter(admin_device_grant::Column::AdminId.eq(admin_id))
            .filter(admin_device_grant::Column::SecretHash.eq(secret_hash))
            .filter(admin_device_grant::Column::RevokedAt.is_null())
            .filter(admin_device_grant::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(used.rows_affected == 1)
    }

    async fn grants(&self, admin_id: Uuid, now: DateTime<Utc>) -> Result<Vec<DeviceGrant>> {
        Ok(admin_device_grant::Entity::find()
            .filter(admin_device_grant::Column::AdminId.eq(admin_id))
            .filter(admin_device_grant::Column::RevokedAt.is_null())
            .filter(admin_device_grant::Column::ExpiresAt.gt(now))
            .order_by_desc(admin_device_grant::Column::CreatedAt)
            .order_by_desc(admin_device_grant::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|m| DeviceGrant {
                id: m.id,
                created_at: m.created_at,
                expires_at: m.expires_at,
                last_used_at: m.last_used_at,
                user_agent: m.user_agent,
            })
            .collect())
    }

    async fn revoke_grant(
        &self,
        admin_id: Uuid,
        grant_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let revoked = admin_device_grant::Entity::update_many()
            .col_expr(
                admin_device_grant::Column::RevokedAt,
                Expr::value(Some(now)),
            )
            .filter(admin_device_grant::Column::Id.eq(grant_id))
            .filter(admin_device_grant::Column::AdminId.eq(admin_id))
            .filter(admin_device_grant::Column::RevokedAt.is_null())
            .filter(admin_device_grant::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(revoked.rows_affected == 1)
    }

    async fn recovery_codes_left(&self, admin_id: Uuid) -> Result<u64> {
        admin_recovery_code::Entity::find()
            .filter(admin_recovery_code::Column::AdminId.eq(admin_id))
            .filter(admin_recovery_code::Column::UsedAt.is_null())
            .count(&self.db)
            .await
            .map_err(db_err)
    }
}
