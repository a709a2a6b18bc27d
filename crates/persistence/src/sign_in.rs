//! Credentials and sessions for the sign-in core, for customers and admins alike: the same
//! statements on two tables.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent, SubjectKind};
use domain::{
    Result,
    limits::PrincipalKind,
    sign_in::{CredentialStore, NewSession, Rehash, StoredCredentials, VerifiedHashes},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QuerySelect,
    sea_query::{Expr, ExprTrait, IntoIden, LockType, Query, SelectStatement},
};
use uuid::Uuid;

use crate::{
    db::db_err,
    entities::{access_token, admin_access_token, admin_user, customer},
};

/// The columns one kind of principal keeps its credentials in.
struct Columns<E: EntityTrait> {
    table: E,
    id: E::Column,
    login: E::Column,
    hash: E::Column,
    failed: E::Column,
    locked_until: E::Column,
    /// Whether `locked_until` stops a session being minted: an admin's lock is the account
    /// row's; a customer's is per network and kept by the limiter (the row only notes it).
    row_lock: bool,
    /// Set while the principal may not sign in at all (a disabled admin): such a row reads as
    /// no account, which the sign-in core answers like any unknown name.
    disabled: Option<E::Column>,
}

const CUSTOMERS: Columns<customer::Entity> = Columns {
    table: customer::Entity,
    id: customer::Column::Id,
    login: customer::Column::EmailKey,
    hash: customer::Column::PasswordHash,
    failed: customer::Column::FailedSignIns,
    locked_until: customer::Column::LockedUntil,
    row_lock: false,
    disabled: None,
};

const ADMINS: Columns<admin_user::Entity> = Columns {
    table: admin_user::Entity,
    id: admin_user::Column::Id,
    login: admin_user::Column::UsernameKey,
    hash: admin_user::Column::PasswordHash,
    failed: admin_user::Column::FailedSignIns,
    locked_until: admin_user::Column::LockedUntil,
    row_lock: true,
    disabled: Some(admin_user::Column::DisabledAt),
};

impl<E: EntityTrait> Columns<E> {
    async fn credentials(
        &self,
        db: &impl ConnectionTrait,
        login: &str,
    ) -> Result<Option<StoredCredentials>> {
        let mut find = E::find()
            .select_only()
            .column(self.id)
            .column(self.hash)
            .column(self.locked_until)
            .filter(self.login.eq(login));
        if let Some(disabled) = self.disabled {
            find = find.filter(disabled.is_null());
        }
        let row: Option<(Uuid, String, Option<DateTime<Utc>>)> =
            find.into_tuple().one(db).await.map_err(db_err)?;
        Ok(
            row.map(|(id, password_hash, locked_until)| StoredCredentials {
                id,
                password_hash,
                locked_until,
            }),
        )
    }

    /// `FROM <principals> WHERE id = $id AND hash IN (verified) [AND not disabled]`: the source
    /// of a session's row, which selects nothing once the password changed. On PostgreSQL it
    /// locks the row (`FOR SHARE`), so it waits for a password change still in progress and
    /// then reads the new hash; SQLite's one writer serialises the two anyway.
    /// The row a session may be inserted from: the account still has a hash that was
    /// verified, is not locked out at `now` (checked where the token is minted, not where the
    /// sign-in started: a lockout that lands while a sign-in is hashing stops it), and for
    /// admins is enabled.
    fn still_verified(
        &self,
        id: Uuid,
        verified: &VerifiedHashes,
        now: DateTime<Utc>,
        postgres: bool,
    ) -> SelectStatement {
        let mut select = Query::select();
        select
            .from(self.table.into_iden())
            .and_where(self.id.eq(id))
            .and_where(self.hash.is_in(verified.0.iter().cloned()));
        if self.row_lock {
            select.and_where(
                Expr::col(self.locked_until)
                    .is_null()
                    .or(Expr::col(self.locked_until).lte(now)),
            );
        }
        if let Some(disabled) = self.disabled {
            select.and_where(disabled.is_null());
        }
        if postgres {
            select.lock(LockType::Share);
        }
        select
    }

    /// One statement, so the count and the lock can never be split (by a crash, or by a
    /// caller that goes away between two statements). The later of two locks stays.
    async fn record_failure(
        &self,
        db: &impl ConnectionTrait,
        login: &str,
        locked_until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let mut update = Query::update();
        update
            .table(self.table.into_iden())
            .and_where(self.login.eq(login))
            .value(self.failed, Expr::col(self.failed).add(1));
        if let Some(until) = locked_until {
            let later = Expr::col(self.locked_until)
                .is_null()
                .or(Expr::col(self.locked_until).lt(until));
            update.value(
                self.locked_until,
                Expr::case(later, Expr::val(Some(until))).finally(Expr::col(self.locked_until)),
            );
        }
        db.execute(&update).await.map_err(db_err)?;
        Ok(())
    }

    async fn record_success(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
        rehash: Option<Rehash>,
    ) -> Result<()> {
        let mut update = Query::update();
        update
            .table(self.table.into_iden())
            .value(self.failed, Expr::val(0))
            .and_where(self.id.eq(id));
        if let Some(Rehash { replaces, new }) = rehash {
            // Only over the hash that was verified: a reset that landed meanwhile wins.
            update.value(
                self.hash,
                Expr::case(self.hash.eq(replaces), Expr::val(new)).finally(self.hash.into_expr()),
            );
        } else {
            // Nothing to write when the counter is already clear.
            update.and_where(self.failed.ne(0));
        }
        db.execute(&update).await.map_err(db_err)?;
        Ok(())
    }
}

/// Credentials and sessions of both kinds of principal, for the sign-in core.
#[derive(Debug, Clone)]
pub struct SqlCredentials {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl CredentialStore for SqlCredentials {
    async fn credentials(
        &self,
        kind: PrincipalKind,
        login: &str,
    ) -> Result<Option<StoredCredentials>> {
        match kind {
            PrincipalKind::Customer => CUSTOMERS.credentials(&self.db, login).await,
            PrincipalKind::Admin => ADMINS.credentials(&self.db, login).await,
        }
    }

    async fn record_failure(
        &self,
        kind: PrincipalKind,
        login: &str,
        locked_until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        match kind {
            PrincipalKind::Customer => {
                CUSTOMERS
                    .record_failure(&self.db, login, locked_until)
                    .await
            }
            PrincipalKind::Admin => ADMINS.record_failure(&self.db, login, locked_until).await,
        }
    }

    async fn record_success(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        rehash: Option<Rehash>,
    ) -> Result<()> {
        match kind {
            PrincipalKind::Customer => CUSTOMERS.record_success(&self.db, id, rehash).await,
            PrincipalKind::Admin => ADMINS.record_success(&self.db, id, rehash).await,
        }
    }

    async fn create_session(&self, kind: PrincipalKind, s: NewSession) -> Result<bool> {
        let postgres = self.db.get_database_backend() == DbBackend::Postgres;
        // The same six columns on both kinds' session tables; customers' also note the last use.
        let (mut select, table, mut columns) = match kind {
            PrincipalKind::Customer => (
                CUSTOMERS.still_verified(s.principal_id, &s.verified, s.created_at, postgres),
                access_token::Entity.into_iden(),
                vec![
                    access_token::Column::Id.into_iden(),
                    access_token::Column::CustomerId.into_iden(),
                    access_token::Column::CreatedAt.into_iden(),
                    access_token::Column::ExpiresAt.into_iden(),
                    access_token::Column::ClientIp.into_iden(),
                    access_token::Column::UserAgent.into_iden(),
                ],
            ),
            PrincipalKind::Admin => (
                ADMINS.still_verified(s.principal_id, &s.verified, s.created_at, postgres),
                admin_access_token::Entity.into_iden(),
                vec![
                    admin_access_token::Column::Id.into_iden(),
                    admin_access_token::Column::AdminId.into_iden(),
                    admin_access_token::Column::CreatedAt.into_iden(),
                    admin_access_token::Column::ExpiresAt.into_iden(),
                    admin_access_token::Column::ClientIp.into_iden(),
                    admin_access_token::Column::UserAgent.into_iden(),
                ],
            ),
        };
        select
            .expr(Expr::val(s.id.uuid()))
            .expr(Expr::val(s.principal_id))
            .expr(Expr::val(s.created_at))
            .expr(Expr::val(s.expires_at))
            .expr(Expr::val(s.client.ip.map(|ip| ip.to_string())))
            .expr(Expr::val(s.client.user_agent));
        if kind == PrincipalKind::Customer {
            columns.push(access_token::Column::LastUsedAt.into_iden());
            select.expr(Expr::val(s.created_at));
        }
        let mut insert = Query::insert();
        insert
            .into_table(table)
            .columns(columns)
            .select_from(select)
            .map_err(domain::Error::internal)?;
        let result = self.db.execute(&insert).await.map_err(db_err)?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        // The cap: the principal's live sessions beyond the newest `max_live` (ids are UUIDv7,
        // in creation order) are revoked. Concurrent sign-ins may leave one more for a
        // moment; the next sign-in's statement trims it.
        let (table, id, owner, revoked, expires) = match kind {
            PrincipalKind::Customer => (
                access_token::Entity.into_iden(),
                access_token::Column::Id.into_iden(),
                access_token::Column::CustomerId.into_iden(),
                access_token::Column::RevokedAt.into_iden(),
                access_token::Column::ExpiresAt.into_iden(),
            ),
            PrincipalKind::Admin => (
                admin_access_token::Entity.into_iden(),
                admin_access_token::Column::Id.into_iden(),
                admin_access_token::Column::AdminId.into_iden(),
                admin_access_token::Column::RevokedAt.into_iden(),
                admin_access_token::Column::ExpiresAt.into_iden(),
            ),
        };
        let live = sea_orm::Condition::all()
            .add(Expr::col(owner).eq(s.principal_id))
            .add(Expr::col(revoked.clone()).is_null())
            .add(Expr::col(expires).gt(s.created_at));
        let mut newest = Query::select();
        newest
            .column(id.clone())
            .from(table.clone())
            .cond_where(live.clone())
            .order_by(id.clone(), sea_orm::sea_query::Order::Desc)
            .limit(u64::from(s.max_live));
        let mut trim = Query::update();
        trim.table(table)
            .value(revoked, Expr::val(s.created_at))
            .cond_where(live)
            .and_where(Expr::col(id.clone()).not_in_subquery(newest))
            .returning_col(id);
        // With a `session-revoked` event per session it ended, in the same unit of work.
        let (principal, now) = (s.principal_id, s.created_at);
        let trimmed = crate::db::unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let ended = txn
                    .query_all(&trim)
                    .await
                    .map_err(db_err)?
                    .iter()
                    .map(|row| row.try_get_by_index::<Uuid>(0))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                let cause = Cause::new(Reason::SessionCap, Actor::Policy);
                let events: Vec<_> = ended
                    .iter()
                    .map(|session| {
                        let kind = match kind {
                            PrincipalKind::Customer => SubjectKind::Customer,
                            PrincipalKind::Admin => SubjectKind::Admin,
                        };
                        SecurityEvent::new(EventType::SessionRevoked, kind, principal, cause, now)
                            .for_session(domain::SessionId::from_uuid(*session))
                    })
                    .collect();
                crate::events::record(txn, &events).await?;
                Ok(crate::db::End::Commit(ended.len()))
            })
        })
        .await?;
        if trimmed > 0 {
            tracing::info!(event = "sessions_over_cap_revoked", kind = kind.as_str(), id = %s.principal_id, revoked = trimmed);
        }
        Ok(true)
    }
}
