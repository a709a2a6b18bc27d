//! The customer and session repository.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Error, Result, SessionId,
    accounts::store::{AccountStore, CreateCustomerError, NewCustomer, ProfileChange},
    customer::{Customer, Session},
    ports::NewMail,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, SqlErr, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{access_token, customer, email_outbox},
    rows::{apply_password_change, live, lock_customer, to_customer},
};

/// The customer and session repository.
#[derive(Debug, Clone)]
pub struct SqlAccounts {
    pub(crate) db: DatabaseConnection,
}

impl SqlAccounts {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn to_session(m: access_token::Model) -> Session {
    Session {
        id: SessionId::from_uuid(m.id),
        customer_id: m.customer_id,
        created_at: m.created_at,
        expires_at: m.expires_at,
        last_used_at: m.last_used_at,
        client_ip: m.client_ip,
        user_agent: m.user_agent,
    }
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
            reported_at: Set(None),
            password_change_required_at: Set(None),
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

    async fn customer_by_email(&self, email_key: &str) -> Result<Option<Customer>> {
        Ok(customer::Entity::find()
            .filter(customer::Column::EmailKey.eq(email_key))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(to_customer))
    }

    async fn queue_mail(&self, mail: NewMail) -> Result<()> {
        email_outbox::Entity::insert(crate::outbox::new_row(mail))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
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
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<u64> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                apply_password_change(
                    txn,
                    customer_id,
                    password_hash,
                    keep,
                    now,
                    notice,
                    Cause::new(Reason::PasswordChanged, Actor::User),
                )
                .await
                .map(End::Commit)
            })
        })
        .await
    }

    async fn require_password_change(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let marked = customer::Entity::update_many()
                    .col_expr(
                        customer::Column::PasswordChangeRequiredAt,
                        Expr::value(Some(now)),
                    )
                    .filter(customer::Column::Id.eq(customer_id))
                    .filter(customer::Column::PasswordChangeRequiredAt.is_null())
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected
                    == 1;
                if marked {
                    email_outbox::Entity::insert(crate::outbox::new_row(notice))
                        .exec(txn)
                        .await
                        .map_err(db_err)?;
                }
                Ok(End::Commit(marked))
            })
        })
        .await
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
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let result = access_token::Entity::update_many()
                    .col_expr(access_token::Column::RevokedAt, Expr::value(Some(now)))
                    .filter(access_token::Column::Id.eq(id.uuid()))
                    .filter(access_token::Column::CustomerId.eq(customer_id))
                    .filter(live(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                if result.rows_affected != 1 {
                    return Ok(End::Rollback(false));
                }
                crate::events::record(
                    txn,
                    &[SecurityEvent::customer(
                        EventType::SessionRevoked,
                        customer_id,
                        Cause::new(Reason::SignOut, Actor::User),
                        now,
                    )
                    .for_session(id)],
                )
                .await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }
}
