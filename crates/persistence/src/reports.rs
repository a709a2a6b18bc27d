//! "This wasn't me" from a security mail: the mail it came in, and securing the account.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Result,
    admin::NewAudit,
    customer::Customer,
    ports::NewMail,
    report::{REPORTABLE, ReportStore},
    stored_hash::VOID_PASSWORD,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{customer, email_outbox, reset_request},
    rows::{insert_audit, lock_customer, revoke_sessions, supersede_tokens, to_customer},
};

/// The "this wasn't me" repository.
#[derive(Debug, Clone)]
pub struct SqlReports {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl ReportStore for SqlReports {
    async fn reported_mail(&self, message_id: Uuid) -> Result<Option<(Customer, DateTime<Utc>)>> {
        let found = email_outbox::Entity::find_by_id(message_id)
            .filter(email_outbox::Column::Kind.is_in(REPORTABLE.map(|k| k.as_str())))
            .find_also_related(customer::Entity)
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(found.and_then(|(mail, c)| Some((to_customer(c?), mail.created_at))))
    }

    async fn unlock_customer(&self, customer_id: Uuid, audit: NewAudit) -> Result<Option<String>> {
        crate::rows::unlock_customer(&self.db, customer_id, audit).await
    }

    async fn report_account(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
        notice: NewMail,
    ) -> Result<u64> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let Some(locked) = lock_customer(txn, customer_id).await? else {
                    // Deleted meanwhile: nothing left to secure.
                    return Ok(End::Rollback(0));
                };
                // Requests for the address not resolved yet would mail a live link and code
                // after this.
                reset_request::Entity::delete_many()
                    .filter(reset_request::Column::EmailKey.eq(locked.email_key))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                customer::Entity::update_many()
                    .col_expr(customer::Column::PasswordHash, Expr::value(VOID_PASSWORD))
                    .col_expr(customer::Column::ReportedAt, Expr::value(Some(now)))
                    .col_expr(customer::Column::UpdatedAt, Expr::value(now))
                    .filter(customer::Column::Id.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Sessions revoked and pending email changes superseded; then every
                // outstanding reset link, and with them their codes.
                let cause = Cause::new(Reason::ReportedNotMe, Actor::User);
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
                let revoked = revoke_sessions(txn, [customer_id], None, now, cause).await?;
                supersede_tokens(txn, [customer_id], now).await?;
                insert_audit(txn, audit).await?;
                email_outbox::Entity::insert(crate::outbox::new_row(notice))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                Ok(End::Commit(revoked))
            })
        })
        .await
    }
}
