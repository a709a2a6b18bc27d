//! The signed-in check's reads: the live session of a customer or an admin token, with its
//! holder, behind the one port authentication uses.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use domain::{
    Result, SessionId,
    admin::AdminUser,
    auth::{Holder, SessionStore},
    customer::{Customer, Locale},
    email::Email,
    token::TokenKind,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, JoinType, QueryFilter,
    QuerySelect, QueryTrait, RelationTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    coherence::{Coherence, Found, SessionRef},
    db::db_err,
    entities::{access_token, admin_access_token, admin_user, customer},
    rows::{live, to_admin},
};

/// How stale `last_used_at` may get before a request refreshes it: one write a minute per
/// token at most, instead of one per request.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// The session repository of authentication.
#[derive(Debug, Clone)]
pub struct SqlSessions {
    db: DatabaseConnection,
    /// The customer check's SQL, rendered once for this database: it runs on every
    /// authenticated request, and building it with sea-query each time cost about a tenth of
    /// the request's instructions (callgrind, BENCHMARKS.md).
    live_session_sql: std::sync::Arc<str>,
    /// The live sessions already seen, kept true by the session log (`coherence.rs`).
    cache: Coherence,
}

impl SqlSessions {
    pub(crate) fn new(db: DatabaseConnection, cache: Coherence) -> Self {
        let live_session_sql = live_session_query(Uuid::nil(), DateTime::<Utc>::MIN_UTC)
            .build(db.get_database_backend())
            .sql
            .into();
        Self {
            db,
            live_session_sql,
            cache,
        }
    }

    async fn touch(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        access_token::Entity::update_many()
            .col_expr(access_token::Column::LastUsedAt, Expr::value(now))
            .filter(access_token::Column::Id.eq(id))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn live_customer(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<(Customer, DateTime<Utc>, DateTime<Utc>)>> {
        let statement = sea_orm::Statement::from_sql_and_values(
            self.db.get_database_backend(),
            &*self.live_session_sql,
            [id.into(), now.into()],
        );
        let found = LiveRow::find_by_statement(statement)
            .one(&self.db)
            .await
            .map_err(db_err)?;
        let Some(row) = found else {
            return Ok(None);
        };
        let last_used_at = if row.last_used_at + LAST_USED_GRANULARITY <= now {
            self.touch(id, now).await?;
            now
        } else {
            row.last_used_at
        };
        let customer = Customer {
            id: row.id,
            email: Email::from_trusted(row.email),
            firstname: row.firstname,
            lastname: row.lastname,
            locale: Locale::parse(&row.locale).unwrap_or_default(),
            created_at: row.created_at,
            password_changed_at: row.password_changed_at,
            locked_until: row.locked_until,
            frozen_at: row.frozen_at,
            reported_at: row.reported_at,
            password_change_required_at: row.password_change_required_at,
        };
        Ok(Some((customer, row.expires_at, last_used_at)))
    }

    async fn live_admin(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<(AdminUser, DateTime<Utc>)>> {
        let found = admin_access_token::Entity::find_by_id(id)
            .filter(admin_access_token::Column::RevokedAt.is_null())
            .filter(admin_access_token::Column::ExpiresAt.gt(now))
            .find_also_related(admin_user::Entity)
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(match found {
            // A disabled admin's tokens are refused (disabling also revokes them).
            Some((token, Some(admin))) if admin.disabled_at.is_none() => {
                to_admin(&admin).map(|admin| (admin, token.expires_at))
            }
            _ => None,
        })
    }
}

#[async_trait]
impl SessionStore for SqlSessions {
    async fn live_session(
        &self,
        kind: TokenKind,
        id: SessionId,
        subject: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Holder>> {
        let id = id.uuid();
        if let Some(hit) = self
            .cache
            .lookup(kind, subject, id, now, LAST_USED_GRANULARITY)
        {
            metrics::counter!("latchkey_session_cache_total", "result" => "hit").increment(1);
            if hit.touch && kind == TokenKind::Customer {
                self.touch(id, now).await?;
            }
            return Ok(Some(hit.holder));
        }
        let ticket = self.cache.ticket(kind, subject);
        let found = match kind {
            TokenKind::Customer => self
                .live_customer(id, now)
                .await?
                .map(|(customer, expires_at, used)| (Holder::Customer(customer), expires_at, used)),
            TokenKind::Admin => self
                .live_admin(id, now)
                .await?
                .map(|(admin, expires_at)| (Holder::Admin(admin), expires_at, now)),
        };
        if self.cache.enabled() {
            metrics::counter!("latchkey_session_cache_total", "result" => "miss").increment(1);
        }
        let Some((holder, expires_at, last_used_at)) = found else {
            return Ok(None);
        };
        let holds = match &holder {
            Holder::Customer(customer) => customer.id == subject,
            Holder::Admin(admin) => admin.id == subject,
        };
        if holds {
            self.cache.fill(
                ticket,
                SessionRef {
                    kind,
                    subject,
                    session: id,
                },
                Found {
                    holder: &holder,
                    expires_at,
                    last_used_at,
                },
            );
        }
        Ok(Some(holder))
    }
}

/// The per-request check: one indexed join reading only what authentication and the `Customer`
/// type need (not the password hash or the session's descriptive columns), by primary key (so
/// at most one row, no LIMIT). Its two parameters are bound in this order: the session id, then
/// `now`.
fn live_session_query(id: Uuid, now: DateTime<Utc>) -> sea_orm::Select<access_token::Entity> {
    access_token::Entity::find_by_id(id)
        .filter(live(now))
        .select_only()
        .column_as(access_token::Column::LastUsedAt, "last_used_at")
        .column_as(access_token::Column::ExpiresAt, "expires_at")
        .column_as(customer::Column::Id, "id")
        .column_as(customer::Column::Email, "email")
        .column_as(customer::Column::Firstname, "firstname")
        .column_as(customer::Column::Lastname, "lastname")
        .column_as(customer::Column::Locale, "locale")
        .column_as(customer::Column::CreatedAt, "created_at")
        .column_as(customer::Column::PasswordChangedAt, "password_changed_at")
        .column_as(customer::Column::LockedUntil, "locked_until")
        .column_as(customer::Column::FrozenAt, "frozen_at")
        .column_as(customer::Column::ReportedAt, "reported_at")
        .column_as(
            customer::Column::PasswordChangeRequiredAt,
            "password_change_required_at",
        )
        .join(JoinType::InnerJoin, access_token::Relation::Customer.def())
}

#[derive(FromQueryResult)]
struct LiveRow {
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    id: Uuid,
    email: String,
    firstname: String,
    lastname: String,
    locale: String,
    created_at: DateTime<Utc>,
    password_changed_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
    frozen_at: Option<DateTime<Utc>>,
    reported_at: Option<DateTime<Utc>>,
    password_change_required_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod live_session_sql {
    use super::*;

    #[test]
    fn the_cached_statement_binds_the_session_id_then_now() {
        let id = Uuid::now_v7();
        let now = Utc::now();
        for backend in [sea_orm::DbBackend::Sqlite, sea_orm::DbBackend::Postgres] {
            let built = live_session_query(id, now).build(backend);
            let values = built.values.map(|v| v.0).unwrap_or_default();
            assert_eq!(values, vec![id.into(), now.into()], "{}", built.sql);
            assert!(!built.sql.contains("LIMIT"), "{}", built.sql);
        }
    }
}
