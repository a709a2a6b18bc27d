//! The admin-users repository: invitations, role and disabled changes under the
//! last-administrator rule, Force Sign In for admins, invitation (and admin reset) tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Result,
    admin::{
        AdminChange, AdminResetRequest, AdminTokenPurpose, AdminUpdate, AdminUserStore,
        NewInvitedAdmin, StoredAdminToken,
    },
    admin::{AdminUser, NewAudit, Role},
    customer::Locale,
    ports::{MailKind, MailLane, NewMail},
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, SqlErr,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{admin_password_token, admin_user, email_outbox},
    rows::{insert_audit, revoke_admin_sessions, to_admin},
};

/// Voids every outstanding invitation and reset link of the admin.
async fn supersede_links(
    txn: &DatabaseTransaction,
    admin_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    admin_password_token::Entity::update_many()
        .col_expr(
            admin_password_token::Column::SupersededAt,
            Expr::value(Some(now)),
        )
        .filter(admin_password_token::Column::AdminId.eq(admin_id))
        .filter(admin_password_token::Column::UsedAt.is_null())
        .filter(admin_password_token::Column::SupersededAt.is_null())
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The admin-users repository.
#[derive(Debug, Clone)]
pub struct SqlAdminUsers {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl AdminUserStore for SqlAdminUsers {
    async fn admin_users(&self) -> Result<Vec<AdminUser>> {
        Ok(admin_user::Entity::find()
            .order_by_asc(admin_user::Column::UsernameKey)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .iter()
            .filter_map(to_admin)
            .collect())
    }

    async fn create_invited_admin(&self, new: NewInvitedAdmin) -> Result<Option<AdminUser>> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let model = admin_user::ActiveModel {
                    id: Set(new.id),
                    username: Set(new.username.as_str().to_owned()),
                    username_key: Set(new.username.key()),
                    role: Set(new.role.as_str().to_owned()),
                    password_hash: Set(new.password_hash),
                    failed_sign_ins: Set(0),
                    locked_until: Set(None),
                    created_at: Set(new.now),
                    email: Set(Some(new.email.as_str().to_owned())),
                    disabled_at: Set(None),
                };
                // The insert comes first (SQLite takes its write lock with it); a taken name
                // ends the transaction, which is rolled back at once.
                let admin = match model.insert(txn).await {
                    Ok(admin) => admin,
                    Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                        return Ok(End::Rollback(None));
                    }
                    Err(e) => return Err(db_err(e)),
                };
                admin_password_token::Entity::insert(admin_password_token::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    admin_id: Set(new.id),
                    purpose: Set(AdminTokenPurpose::Invitation.as_str().to_owned()),
                    token_hash: Set(new.token_hash),
                    created_at: Set(new.now),
                    expires_at: Set(new.expires_at),
                    used_at: Set(None),
                    superseded_at: Set(None),
                })
                .exec(txn)
                .await
                .map_err(db_err)?;
                email_outbox::Entity::insert(crate::outbox::new_row(new.mail))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, new.audit).await?;
                Ok(End::Commit(to_admin(&admin)))
            })
        })
        .await
    }

    async fn update_admin(
        &self,
        id: Uuid,
        change: AdminChange,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<AdminUpdate> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                // Every administrator's row, locked (PostgreSQL; SQLite has one writer): two
                // concurrent demotions of the last two cannot both see "another one is left".
                let mut administrators = admin_user::Entity::find()
                    .filter(admin_user::Column::Role.eq(Role::Administrator.as_str()));
                if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                    administrators = administrators.lock_exclusive();
                } else {
                    crate::db::take_sqlite_write_lock(
                        txn,
                        admin_user::Entity,
                        admin_user::Column::Id,
                        id,
                    )
                    .await?;
                }
                let administrators = administrators.all(txn).await.map_err(db_err)?;
                let Some(current) = admin_user::Entity::find_by_id(id)
                    .one(txn)
                    .await
                    .map_err(db_err)?
                else {
                    return Ok(End::Rollback(AdminUpdate::NotFound));
                };
                let role = change
                    .role
                    .map_or(current.role.clone(), |r| r.as_str().to_owned());
                let disabled_at = match change.disabled {
                    Some(true) => current.disabled_at.or(Some(now)),
                    Some(false) => None,
                    None => current.disabled_at,
                };
                let stays_active_administrator =
                    role == Role::Administrator.as_str() && disabled_at.is_none();
                let others_active = administrators
                    .iter()
                    .filter(|a| a.id != id && a.disabled_at.is_none())
                    .count();
                let was_active_administrator =
                    current.role == Role::Administrator.as_str() && current.disabled_at.is_none();
                if was_active_administrator && !stays_active_administrator && others_active == 0 {
                    return Ok(End::Rollback(AdminUpdate::LastAdministrator));
                }
                let was_disabled = current.disabled_at.is_some();
                let mut model: admin_user::ActiveModel = current.into();
                model.role = Set(role);
                model.disabled_at = Set(disabled_at);
                let updated = model.update(txn).await.map_err(db_err)?;
                // A role change counts on every replica before the answer.
                crate::db::note_revocation();
                let change = match (was_disabled, disabled_at.is_some()) {
                    (false, true) => Some((EventType::AccountDisabled, Reason::AdminDisabled)),
                    (true, false) => Some((EventType::AccountEnabled, Reason::AdminEnabled)),
                    _ => None,
                };
                if let Some((event, reason)) = change {
                    crate::events::record(
                        txn,
                        &[SecurityEvent::admin(
                            event,
                            id,
                            Cause::new(reason, Actor::Admin),
                            now,
                        )],
                    )
                    .await?;
                }
                if disabled_at.is_some() && !was_disabled {
                    revoke_admin_sessions(
                        txn,
                        id,
                        now,
                        Cause::new(Reason::AdminDisabled, Actor::Admin),
                    )
                    .await?;
                    // An invitation or reset link must not outlive the disabling either.
                    supersede_links(txn, id, now).await?;
                }
                insert_audit(txn, audit).await?;
                Ok(End::Commit(match to_admin(&updated) {
                    Some(admin) => AdminUpdate::Updated(admin),
                    None => AdminUpdate::NotFound,
                }))
            })
        })
        .await
    }

    async fn revoke_admin_sessions(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Option<u64>> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let exists = admin_user::Entity::find_by_id(id)
                    .select_only()
                    .column(admin_user::Column::Id)
                    .into_tuple::<Uuid>()
                    .one(txn)
                    .await
                    .map_err(db_err)?
                    .is_some();
                if !exists {
                    return Ok(End::Rollback(None));
                }
                let revoked = revoke_admin_sessions(
                    txn,
                    id,
                    now,
                    Cause::new(Reason::ForceSignIn, Actor::Admin),
                )
                .await?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(Some(revoked)))
            })
        })
        .await
    }

    async fn request_admin_reset(&self, r: AdminResetRequest) -> Result<()> {
        // Who the request is for, as a condition each statement carries: the same three
        // statements run for every username, and write rows only for an active admin with an
        // email address.
        let who = || {
            sea_orm::Condition::all()
                .add(admin_user::Column::UsernameKey.eq(r.username_key.clone()))
                .add(admin_user::Column::DisabledAt.is_null())
                .add(admin_user::Column::Email.is_not_null())
        };
        let admin_ids = admin_user::Entity::find()
            .select_only()
            .column(admin_user::Column::Id)
            .filter(who())
            .into_query();
        let supersede = admin_password_token::Entity::update_many()
            .col_expr(
                admin_password_token::Column::SupersededAt,
                Expr::value(Some(r.now)),
            )
            .filter(admin_password_token::Column::UsedAt.is_null())
            .filter(admin_password_token::Column::SupersededAt.is_null())
            .filter(admin_password_token::Column::AdminId.in_subquery(admin_ids))
            .into_query();
        let token = Query::insert()
            .into_table(admin_password_token::Entity)
            .columns([
                admin_password_token::Column::Id,
                admin_password_token::Column::AdminId,
                admin_password_token::Column::Purpose,
                admin_password_token::Column::TokenHash,
                admin_password_token::Column::CreatedAt,
                admin_password_token::Column::ExpiresAt,
            ])
            .select_from(
                admin_user::Entity::find()
                    .select_only()
                    .expr(Expr::val(Uuid::now_v7()))
                    .column(admin_user::Column::Id)
                    .expr(Expr::val(AdminTokenPurpose::Reset.as_str()))
                    .expr(Expr::val(r.token_hash.clone()))
                    .expr(Expr::val(r.now))
                    .expr(Expr::val(r.expires_at))
                    .filter(who())
                    .into_query(),
            )
            .map_err(|e| domain::Error::internal(format!("admin reset: {e}")))?
            .to_owned();
        let mail = Query::insert()
            .into_table(email_outbox::Entity)
            .columns([
                email_outbox::Column::Id,
                email_outbox::Column::Kind,
                email_outbox::Column::Recipient,
                email_outbox::Column::Locale,
                email_outbox::Column::Link,
                email_outbox::Column::LinkExpiresAt,
                email_outbox::Column::Status,
                email_outbox::Column::Attempts,
                email_outbox::Column::NextAttemptAt,
                email_outbox::Column::CreatedAt,
                email_outbox::Column::Lane,
            ])
            .select_from(
                admin_user::Entity::find()
                    .select_only()
                    .expr(Expr::val(r.mail_id))
                    .expr(Expr::val(MailKind::AdminPasswordReset.as_str()))
                    .column(admin_user::Column::Email)
                    .expr(Expr::val(Locale::default().as_str()))
                    .expr(Expr::val(r.link.clone()))
                    .expr(Expr::val(r.expires_at))
                    .expr(Expr::val(crate::outbox::PENDING))
                    .expr(Expr::val(crate::outbox::NO_ATTEMPTS))
                    .expr(Expr::val(r.now))
                    .expr(Expr::val(r.now))
                    .expr(Expr::val(MailLane::Interactive.as_str()))
                    .filter(who())
                    .into_query(),
            )
            .map_err(|e| domain::Error::internal(format!("admin reset mail: {e}")))?
            .to_owned();
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                txn.execute(&supersede).await.map_err(db_err)?;
                txn.execute(&token).await.map_err(db_err)?;
                txn.execute(&mail).await.map_err(db_err)?;
                Ok(End::Commit(()))
            })
        })
        .await
    }

    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<StoredAdminToken>> {
        let Some(t) = admin_password_token::Entity::find()
            .filter(admin_password_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let Some(admin) = admin_user::Entity::find_by_id(t.admin_id)
            .one(&self.db)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        Ok(Some(StoredAdminToken {
            id: t.id,
            admin_id: t.admin_id,
            username: admin.username,
            email: admin.email,
            expires_at: t.expires_at,
            used_at: t.used_at,
            superseded_at: t.superseded_at,
        }))
    }

    async fn complete_admin_token(
        &self,
        token_id: Uuid,
        admin_id: Uuid,
        password_hash: String,
        now: DateTime<Utc>,
        notice: Option<NewMail>,
    ) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let consumed = admin_password_token::Entity::update_many()
                    .col_expr(admin_password_token::Column::UsedAt, Expr::value(Some(now)))
                    .filter(admin_password_token::Column::Id.eq(token_id))
                    .filter(admin_password_token::Column::UsedAt.is_null())
                    .filter(admin_password_token::Column::SupersededAt.is_null())
                    .filter(admin_password_token::Column::ExpiresAt.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if consumed.rows_affected != 1 {
                    return Ok(End::Rollback(false));
                }
                let set = admin_user::Entity::update_many()
                    .col_expr(admin_user::Column::PasswordHash, Expr::value(password_hash))
                    .col_expr(admin_user::Column::FailedSignIns, Expr::value(0))
                    .col_expr(
                        admin_user::Column::LockedUntil,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .filter(admin_user::Column::Id.eq(admin_id))
                    .filter(admin_user::Column::DisabledAt.is_null())
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if set.rows_affected != 1 {
                    // Disabled (or gone) meanwhile: the link sets nothing.
                    return Ok(End::Rollback(false));
                }
                // Any other outstanding link of this admin dies with this one.
                supersede_links(txn, admin_id, now).await?;
                crate::events::record(
                    txn,
                    &[SecurityEvent::admin(
                        EventType::CredentialChange,
                        admin_id,
                        Cause::new(Reason::PasswordSet, Actor::User),
                        now,
                    )],
                )
                .await?;
                revoke_admin_sessions(
                    txn,
                    admin_id,
                    now,
                    Cause::new(Reason::PasswordSet, Actor::User),
                )
                .await?;
                if let Some(notice) = notice {
                    email_outbox::Entity::insert(crate::outbox::new_row(notice))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                }
                Ok(End::Commit(true))
            })
        })
        .await
    }
}
