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
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, FromQueryResult, JoinType, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, RelationTrait, SqlErr, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    entities::{access_token, customer, email_outbox},
    unit::End,
};

/// How stale `last_used_at` may get before a request refreshes it: one write a minute per
/// token at most, instead of one per request.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// The sea-orm implementation of the domain's stores.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) db: DatabaseConnection,
    /// The signed-in check's SQL, rendered once for this database: it runs on every
    /// authenticated request, and building it with sea-query each time cost about a tenth of
    /// the request's instructions (callgrind, BENCHMARKS.md).
    live_session_sql: std::sync::Arc<str>,
    /// In-process turns for limit keys, taken before a pooled connection is: requests for one
    /// key queue here, not while each holds a connection waiting on the key's advisory lock.
    pub(crate) key_turns: crate::limits::KeyTurns,
    /// The group-commit writer of reset requests (started on first use).
    pub(crate) reset_writer: crate::resets::ResetWriter,
    /// SQLite's write turn for the writers that run all the time.
    pub(crate) write_turn: crate::WriteTurn,
    /// PostgreSQL's pg_trgm word operator, when it serves here (`grid`; asked once).
    pub(crate) trigram_words: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
    /// A sample of the customers' search text, and when it was taken (`grid`).
    pub(crate) trigram_sample:
        std::sync::Arc<tokio::sync::Mutex<Option<std::sync::Arc<crate::grid::Sample>>>>,
    /// Per bulk job, the last customer this process took (`bulk`).
    pub(crate) bulk_cursors:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Uuid, Uuid>>>,
}

impl SqlStore {
    pub fn new(db: DatabaseConnection) -> Self {
        let live_session_sql = live_session_query(Uuid::nil(), DateTime::<Utc>::MIN_UTC)
            .build(db.get_database_backend())
            .sql
            .into();
        Self {
            db,
            live_session_sql,
            key_turns: crate::limits::KeyTurns::default(),
            reset_writer: crate::resets::ResetWriter::default(),
            write_turn: crate::WriteTurn::default(),
            trigram_words: Default::default(),
            trigram_sample: Default::default(),
            bulk_cursors: Default::default(),
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

/// Storage failures are internal: the detail goes to the log, never to the client.
pub(crate) fn db_err(e: DbErr) -> Error {
    Error::internal(e)
}

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
    }
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

/// Live tokens: not revoked and not expired at `now`.
fn live(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(access_token::Column::RevokedAt.is_null())
        .add(access_token::Column::ExpiresAt.gt(now))
}

/// Signs the customers out of every live session (but `keep`, the caller's own, when given);
/// returns how many sessions ended. Every sign-out-everywhere (Force Sign In, a reset, a
/// password change, "this wasn't me") goes through here, and so supersedes the customers'
/// pending email changes as well: the account is being taken back from whoever had it.
pub(crate) async fn revoke_sessions(
    txn: &DatabaseTransaction,
    customers: impl IntoIterator<Item = Uuid>,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let customers: Vec<Uuid> = customers.into_iter().collect();
    crate::email_change::supersede_pending(txn, customers.iter().copied(), now).await?;
    let mut revoke = access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(access_token::Column::CustomerId.is_in(customers))
        .filter(live(now));
    if let Some(keep) = keep {
        revoke = revoke.filter(access_token::Column::Id.ne(keep));
    }
    Ok(revoke.exec(txn).await.map_err(db_err)?.rows_affected)
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn update_profile(
        &self,
        customer_id: Uuid,
        change: ProfileChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Customer>> {
        self.unit_of_work(move |txn| {
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
        if crate::email_change::email_in_use(&self.db, new.email.key(), None, new.now)
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
        self.unit_of_work(move |txn| {
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

/// SQLite: `UPDATE table SET id = id WHERE id = ?`, which takes the write lock and changes
/// nothing (no trigger watches the id).
pub(crate) async fn take_sqlite_write_lock<E: EntityTrait>(
    txn: &DatabaseTransaction,
    _table: E,
    id_column: E::Column,
    id: Uuid,
) -> Result<()> {
    E::update_many()
        .col_expr(id_column, Expr::col(id_column))
        .filter(id_column.eq(id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Every password change, whatever its path: new hash, lockout cleared, sessions revoked
/// (except `keep`), outstanding reset links voided, "password changed" notice queued. Runs in
/// the caller's transaction; its first statement writes, so SQLite takes the write lock at once.
pub(crate) async fn apply_password_change(
    txn: &DatabaseTransaction,
    customer_id: Uuid,
    password_hash: String,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
    notice: NewMail,
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
        .filter(customer::Column::Id.eq(customer_id))
        .exec(txn)
        .await
        .map_err(db_err)?;
    let revoked = revoke_sessions(txn, [customer_id], keep, now).await?;
    crate::resets::supersede_tokens(txn, [customer_id], now).await?;
    email_outbox::Entity::insert(crate::outbox::new_row(notice))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(revoked)
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
