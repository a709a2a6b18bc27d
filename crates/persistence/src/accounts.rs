//! The customer and session repository.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use domain::{
    Error, Result,
    customer::{Customer, Locale, Session},
    email::Email,
    ports::{AccountStore, CreateCustomerError, NewCustomer, NewMail, ProfileChange},
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait,
    SqlErr, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{access_token, customer},
    rows::{apply_password_change, live, lock_customer, to_customer},
};

/// How stale `last_used_at` may get before a request refreshes it: one write a minute per
/// token at most, instead of one per request.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// The customer and session repository.
#[derive(Debug, Clone)]
pub struct SqlAccounts {
    pub(crate) db: DatabaseConnection,
    /// The signed-in check's SQL, rendered once for this database: it runs on every
    /// authenticated request, and building it with sea-query each time cost about a tenth of
    /// the request's instructions (callgrind, BENCHMARKS.md).
    pub(crate) live_session_sql: std::sync::Arc<str>,
}

impl SqlAccounts {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        let live_session_sql = live_session_query(Uuid::nil(), DateTime::<Utc>::MIN_UTC)
            .build(db.get_database_backend())
            .sql
            .into();
        Self {
            db,
            live_session_sql,
        }
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
        .column_as(customer::Column::Id, "id")
        .column_as(customer::Column::Email, "email")
        .column_as(customer::Column::Firstname, "firstname")
        .column_as(customer::Column::Lastname, "lastname")
        .column_as(customer::Column::Locale, "locale")
        .column_as(customer::Column::CreatedAt, "created_at")
        .column_as(customer::Column::PasswordChangedAt, "password_changed_at")
        .column_as(customer::Column::LockedUntil, "locked_until")
        .column_as(customer::Column::FrozenAt, "frozen_at")
        .join(JoinType::InnerJoin, access_token::Relation::Customer.def())
}

fn to_session(m: access_token::Model) -> Session {
    Session {
        id: m.id,
        customer_id: m.customer_id,
        created_at: m.created_at,
        expires_at: m.expires_at,
        last_used_at: m.last_used_at,
        client_ip: m.client_ip,
        user_agent: m.user_agent,
    }
}

#[derive(FromQueryResult)]
struct LiveRow {
    last_used_at: DateTime<Utc>,
    id: Uuid,
    email: String,
    firstname: String,
    lastname: String,
    locale: String,
    created_at: DateTime<Utc>,
    password_changed_at: DateTime<Utc>,
    locked_until: Option<DateTime<Utc>>,
    frozen_at: Option<DateTime<Utc>>,
}

#[async_trait]
impl AccountStore for SqlAccounts {
    async fn update_profile(
        &self,
        customer_id: Uuid,
        change: ProfileChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Customer>> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let Some(current) = lock_customer(txn, customer_id).await? else {
                    return Ok(End::Rollback(None));
                };
                let firstname = change.firstname.unwrap_or(current.firstname.clone());
                let lastname = change.lastname.unwrap_or(current.lastname.clone());
                let locale = change
                    .locale
                    .map_or(current.locale.clone(), |l| l.as_str().to_owned());
                let search_text =
                    domain::search::search_text(&current.email_key, &firstname, &lastname);
                let mut model: customer::ActiveModel = current.into();
                model.firstname = Set(firstname);
                model.lastname = Set(lastname);
                model.locale = Set(locale);
                model.search_text = Set(search_text);
                model.updated_at = Set(now);
                let updated = model.update(txn).await.map_err(db_err)?;
                Ok(End::Commit(Some(to_customer(updated))))
            })
        })
        .await
    }

    async fn create_customer(&self, new: NewCustomer) -> Result<Customer, CreateCustomerError> {
        let search_text =
            domain::search::search_text(new.email.key(), &new.firstname, &new.lastname);
        let model = customer::ActiveModel {
            id: Set(new.id),
            email: Set(new.email.as_str().to_owned()),
            email_key: Set(new.email.key().to_owned()),
            firstname: Set(new.firstname),
            lastname: Set(new.lastname),
            locale: Set(new.locale.as_str().to_owned()),
            password_hash: Set(new.password_hash),
            password_changed_at: Set(new.now),
            failed_sign_ins: Set(0),
            locked_until: Set(None),
            created_at: Set(new.now),
            updated_at: Set(new.now),
            external_id: Set(None),
            search_text: Set(search_text),
            frozen_at: Set(None),
        };
        if crate::rows::email_in_use(&self.db, new.email.key(), None, new.now)
            .await
            .map_err(CreateCustomerError::Other)?
        {
            return Err(CreateCustomerError::EmailTaken);
        }
        match customer::Entity::insert(model).exec(&self.db).await {
            Ok(_) => {}
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(CreateCustomerError::EmailTaken);
            }
            Err(e) => return Err(CreateCustomerError::Other(db_err(e))),
        }
        self.customer_by_id(new.id)
            .await
            .map_err(CreateCustomerError::Other)?
            .ok_or_else(|| {
                CreateCustomerError::Other(Error::internal("inserted customer vanished"))
            })
    }

    async fn customer_by_id(&self, id: Uuid) -> Result<Option<Customer>> {
        Ok(customer::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_customer))
    }

    async fn customers_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Customer>> {
        Ok(customer::Entity::find()
            .filter(customer::Column::Id.is_in(ids.to_vec()))
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect())
    }

    async fn set_password(
        &self,
        customer_id: Uuid,
        password_hash: String,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<u64> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                apply_password_change(txn, customer_id, password_hash, keep, now, notice)
                    .await
                    .map(End::Commit)
            })
        })
        .await
    }

    async fn live_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Customer>> {
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
        if row.last_used_at + LAST_USED_GRANULARITY <= now {
            access_token::Entity::update_many()
                .col_expr(access_token::Column::LastUsedAt, Expr::value(now))
                .filter(access_token::Column::Id.eq(id))
                .exec(&self.db)
                .await
                .map_err(db_err)?;
        }
        Ok(Some(Customer {
            id: row.id,
            email: Email::from_trusted(row.email),
            firstname: row.firstname,
            lastname: row.lastname,
            locale: Locale::parse(&row.locale).unwrap_or_default(),
            created_at: row.created_at,
            password_changed_at: row.password_changed_at,
            locked_until: row.locked_until,
            frozen_at: row.frozen_at,
        }))
    }

    async fn live_sessions(&self, customer_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>> {
        Ok(access_token::Entity::find()
            .filter(access_token::Column::CustomerId.eq(customer_id))
            .filter(live(now))
            .order_by_desc(access_token::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_session)
            .collect())
    }

    async fn revoke_session(
        &self,
        customer_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let result = access_token::Entity::update_many()
            .col_expr(access_token::Column::RevokedAt, Expr::value(Some(now)))
            .filter(access_token::Column::Id.eq(id))
            .filter(access_token::Column::CustomerId.eq(customer_id))
            .filter(live(now))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(result.rows_affected == 1)
    }
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
