//! The password reset repository: the request's limits, tokens and the reset mail, in one
//! transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Result,
    limits::Refused,
    ports::{MailKind, NewMail, ResetRequest, ResetStore, StoredResetToken},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use crate::{
    SqlStore,
    accounts::{apply_password_change, db_err},
    entities::{customer, email_outbox, password_reset_token},
    outbox::{NO_ATTEMPTS, PENDING},
    unit::End,
};

#[async_trait]
impl ResetStore for SqlStore {
    async fn request_reset(&self, r: ResetRequest) -> Result<std::result::Result<(), Refused>> {
        let _turns = self.key_turns.take(&r.limits).await;
        self.unit_of_work(move |txn| {
            Box::pin(async move {
                if let Err(refused) = crate::limits::reserve_in(txn, &r.limits, r.now).await? {
                    return Ok(End::Rollback(Err(refused)));
                }
                // From here the same three statements run whether or not the account exists; for an
                // unknown address each simply matches no row.
                let account = Query::select()
                    .column(customer::Column::Id)
                    .from(customer::Entity)
                    .and_where(customer::Column::EmailKey.eq(r.email.key()))
                    .to_owned();
                let supersede = Query::update()
                    .table(password_reset_token::Entity)
                    .value(password_reset_token::Column::SupersededAt, Expr::val(r.now))
                    .and_where(password_reset_token::Column::CustomerId.in_subquery(account))
                    .and_where(password_reset_token::Column::UsedAt.is_null())
                    .and_where(password_reset_token::Column::SupersededAt.is_null())
                    .to_owned();
                txn.execute(&supersede).await.map_err(db_err)?;

                let token_rows = Query::select()
                    .expr(Expr::val(r.token_id))
                    .column(customer::Column::Id)
                    .expr(Expr::val(r.token_hash.clone()))
                    .column(customer::Column::EmailKey)
                    .expr(Expr::val(r.now))
                    .expr(Expr::val(r.expires_at))
                    .from(customer::Entity)
                    .and_where(customer::Column::EmailKey.eq(r.email.key()))
                    .to_owned();
                let insert_token = Query::insert()
                    .into_table(password_reset_token::Entity)
                    .columns([
                        password_reset_token::Column::Id,
                        password_reset_token::Column::CustomerId,
                        password_reset_token::Column::TokenHash,
                        password_reset_token::Column::EmailKey,
                        password_reset_token::Column::CreatedAt,
                        password_reset_token::Column::ExpiresAt,
                    ])
                    .select_from(token_rows)
                    .map_err(domain::Error::internal)?
                    .to_owned();
                txn.execute(&insert_token).await.map_err(db_err)?;

                // The mail goes to the address stored on the account, never to the submitted string.
                let mail_rows = Query::select()
                    .expr(Expr::val(r.mail_id))
                    .expr(Expr::val(MailKind::PasswordReset.as_str()))
                    .column(customer::Column::Id)
                    .column(customer::Column::Email)
                    .column(customer::Column::Locale)
                    .expr(Expr::val(r.link.clone()))
                    .expr(Expr::val(r.expires_at))
                    .expr(Expr::val(PENDING))
                    .expr(Expr::val(NO_ATTEMPTS))
                    .expr(Expr::val(r.now))
                    .expr(Expr::val(r.now))
                    .from(customer::Entity)
                    .and_where(customer::Column::EmailKey.eq(r.email.key()))
                    .to_owned();
                let insert_mail = Query::insert()
                    .into_table(email_outbox::Entity)
                    .columns([
                        email_outbox::Column::Id,
                        email_outbox::Column::Kind,
                        email_outbox::Column::CustomerId,
                        email_outbox::Column::Recipient,
                        email_outbox::Column::Locale,
                        email_outbox::Column::Link,
                        email_outbox::Column::LinkExpiresAt,
                        email_outbox::Column::Status,
                        email_outbox::Column::Attempts,
                        email_outbox::Column::NextAttemptAt,
                        email_outbox::Column::CreatedAt,
                    ])
                    .select_from(mail_rows)
                    .map_err(domain::Error::internal)?
                    .to_owned();
                txn.execute(&insert_mail).await.map_err(db_err)?;
                if let Some(audit) = r.audit {
                    crate::admin::insert_audit(txn, audit).await?;
                }
                Ok(End::Commit(Ok(())))
            })
        })
        .await
    }

    async fn find_reset_token(&self, token_hash: &str) -> Result<Option<StoredResetToken>> {
        Ok(password_reset_token::Entity::find()
            .filter(password_reset_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await
            .map_err(db_err)?
            .map(|t| StoredResetToken {
                id: t.id,
                customer_id: t.customer_id,
                email_key: t.email_key,
                expires_at: t.expires_at,
                used_at: t.used_at,
                superseded_at: t.superseded_at,
            }))
    }

    async fn complete_reset(
        &self,
        token_id: Uuid,
        customer_id: Uuid,
        password_hash: String,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<bool> {
        self.unit_of_work(move |txn| {
            Box::pin(async move {
                // The guarded update is the single-use check: of concurrent resets with one token,
                // exactly one sees a row affected.
                let consumed = password_reset_token::Entity::update_many()
                    .col_expr(password_reset_token::Column::UsedAt, Expr::value(Some(now)))
                    .filter(password_reset_token::Column::Id.eq(token_id))
                    .filter(password_reset_token::Column::CustomerId.eq(customer_id))
                    .filter(password_reset_token::Column::UsedAt.is_null())
                    .filter(password_reset_token::Column::SupersededAt.is_null())
                    .filter(password_reset_token::Column::ExpiresAt.gt(now))
                    .exec(txn)
                    .await
                    .map_err(db_err)?
                    .rows_affected;
                if consumed != 1 {
                    return Ok(End::Rollback(false));
                }
                apply_password_change(txn, customer_id, password_hash, None, now, notice).await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }
}
