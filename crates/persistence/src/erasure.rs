//! Deleting a customer and everything that names them, in one transaction; the export of what
//! is stored about one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::events::{Actor, Cause, EventType, Reason, SecurityEvent};
use domain::{
    Result,
    admin::NewAudit,
    erasure::{
        CustomerExport, ErasureStore, ExportPage, ExportedAudit, ExportedCustomer,
        ExportedEmailChange, ExportedMail, ExportedResetLink, ExportedSession, STORE_STAFF,
        limit_key_prefixes, limit_keys,
    },
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    db::{End, db_err, unit_of_work},
    entities::{
        access_token, audit_log, bulk_job, bulk_job_item, code_flow, customer, email_change,
        email_outbox, limit_event, password_reset_token, reset_request,
    },
    rows::insert_audit,
    rows::lock_customer,
};

/// Deletion and export of one customer.
#[derive(Debug, Clone)]
pub struct SqlErasure {
    pub(crate) db: DatabaseConnection,
}

#[async_trait]
impl ErasureStore for SqlErasure {
    async fn delete_customer(&self, customer_id: Uuid, audit: NewAudit) -> Result<bool> {
        unit_of_work(&self.db, move |txn| {
            Box::pin(async move {
                let Some(current) = lock_customer(txn, customer_id).await? else {
                    return Ok(End::Rollback(false));
                };
                // Before the row goes: a subscription allowed email gets the address.
                let actor = if audit.action == domain::admin::AuditAction::DeleteOwnAccount {
                    Actor::User
                } else {
                    Actor::Admin
                };
                crate::events::record(
                    txn,
                    &[SecurityEvent::customer(
                        EventType::AccountPurged,
                        customer_id,
                        Cause::new(Reason::Deleted, actor),
                        audit.at,
                    )],
                )
                .await?;
                // Rows that point at the customer by id (some also by cascade; spelled out so
                // the rule does not hang on each table's foreign key).
                access_token::Entity::delete_many()
                    .filter(access_token::Column::CustomerId.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                password_reset_token::Entity::delete_many()
                    .filter(password_reset_token::Column::CustomerId.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Every address the account has had (counters and requests are stored under
                // the address they were made for): its old addresses, and the new ones of
                // confirmed changes. But not one another customer holds, or has moved away
                // from and may still go back to: what is stored under it is theirs.
                let now = audit.at;
                let mut addresses = vec![current.email_key.clone()];
                let changes: Vec<(String, String, Option<DateTime<Utc>>)> =
                    email_change::Entity::find()
                        .select_only()
                        .column(email_change::Column::OldEmailKey)
                        .column(email_change::Column::NewEmailKey)
                        .column(email_change::Column::ConfirmedAt)
                        .filter(email_change::Column::CustomerId.eq(customer_id))
                        .into_tuple()
                        .all(txn)
                        .await
                        .map_err(db_err)?;
                for (old, new, confirmed_at) in changes {
                    addresses.push(old);
                    if confirmed_at.is_some() {
                        addresses.push(new);
                    }
                }
                addresses.sort();
                addresses.dedup();
                let mut ours = Vec::with_capacity(addresses.len());
                for address in addresses {
                    if !crate::rows::email_in_use(txn, &address, Some(customer_id), now).await? {
                        ours.push(address);
                    }
                }
                let addresses = ours;
                email_change::Entity::delete_many()
                    .filter(email_change::Column::CustomerId.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Mail to them, sent or not: a sent row still names the address.
                email_outbox::Entity::delete_many()
                    .filter(email_outbox::Column::CustomerId.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // A running job's place for them is done, as failed: the job still ends at
                // processed = total, and says one customer could not be acted on.
                bulk_job::Entity::update_many()
                    .col_expr(
                        bulk_job::Column::Processed,
                        Expr::col(bulk_job::Column::Processed).add(1),
                    )
                    .col_expr(
                        bulk_job::Column::Failed,
                        Expr::col(bulk_job::Column::Failed).add(1),
                    )
                    .filter(
                        bulk_job::Column::Id.in_subquery(
                            sea_orm::sea_query::Query::select()
                                .column(bulk_job_item::Column::JobId)
                                .from(bulk_job_item::Entity)
                                .and_where(bulk_job_item::Column::CustomerId.eq(customer_id))
                                .to_owned(),
                        ),
                    )
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                bulk_job_item::Entity::delete_many()
                    .filter(bulk_job_item::Column::CustomerId.eq(customer_id))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Rows that name the address: reset requests not resolved yet, code flows
                // (theirs go with the account; any left name the address only), limit counters.
                reset_request::Entity::delete_many()
                    .filter(reset_request::Column::EmailKey.is_in(addresses.clone()))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                code_flow::Entity::delete_many()
                    .filter(code_flow::Column::EmailKey.is_in(addresses.clone()))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                let mut named = sea_orm::Condition::any()
                    .add(limit_event::Column::Key.is_in(limit_keys(customer_id, &addresses)));
                for prefix in limit_key_prefixes(&addresses) {
                    named = named.add(crate::limits::key_starts_with(&prefix));
                }
                limit_event::Entity::delete_many()
                    .filter(named)
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                // Events waiting to go keep the address they need; those given up on do not.
                crate::entities::event_delivery::Entity::update_many()
                    .col_expr(
                        crate::entities::event_delivery::Column::Email,
                        sea_orm::sea_query::Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        crate::entities::event_delivery::Column::NewEmail,
                        sea_orm::sea_query::Expr::value(Option::<String>::None),
                    )
                    .filter(crate::entities::event_delivery::Column::SubjectId.eq(customer_id))
                    .filter(crate::entities::event_delivery::Column::Status.eq(crate::events::DEAD))
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                customer::Entity::delete_by_id(customer_id)
                    .exec(txn)
                    .await
                    .map_err(db_err)?;
                insert_audit(txn, audit).await?;
                Ok(End::Commit(true))
            })
        })
        .await
    }

    async fn export_customer(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        mut page: ExportPage,
        audit: Option<NewAudit>,
    ) -> Result<Option<CustomerExport>> {
        let Some(c) = customer::Entity::find_by_id(customer_id)
            .one(&self.db)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        // Recorded before anything is read out: an export is never unaudited.
        if let Some(audit) = audit {
            insert_audit(&self.db, audit).await?;
        }
        let access_token_rows = access_token::Entity::find()
            .filter(access_token::Column::CustomerId.eq(customer_id))
            .order_by_asc(access_token::Column::CreatedAt)
            .order_by_asc(access_token::Column::Id)
            .offset(page.offset())
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let (access_token_rows, more) = one_page(access_token_rows, &page);
        page.more |= more;
        let sessions = access_token_rows
            .into_iter()
            .map(|s| ExportedSession {
                created_at: s.created_at,
                expires_at: s.expires_at,
                last_used_at: s.last_used_at,
                revoked_at: s.revoked_at,
                client_ip: s.client_ip,
                user_agent: s.user_agent,
            })
            .collect();
        let password_reset_token_rows = password_reset_token::Entity::find()
            .filter(password_reset_token::Column::CustomerId.eq(customer_id))
            .order_by_asc(password_reset_token::Column::CreatedAt)
            .order_by_asc(password_reset_token::Column::Id)
            .offset(page.offset())
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let (password_reset_token_rows, more) = one_page(password_reset_token_rows, &page);
        page.more |= more;
        let password_reset_links = password_reset_token_rows
            .into_iter()
            .map(|r| ExportedResetLink {
                created_at: r.created_at,
                expires_at: r.expires_at,
                used_at: r.used_at,
            })
            .collect();
        let email_change_rows = email_change::Entity::find()
            .filter(email_change::Column::CustomerId.eq(customer_id))
            .order_by_asc(email_change::Column::CreatedAt)
            .order_by_asc(email_change::Column::Id)
            .offset(page.offset())
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let (email_change_rows, more) = one_page(email_change_rows, &page);
        page.more |= more;
        let email_changes = email_change_rows
            .into_iter()
            .map(|e| ExportedEmailChange {
                old_email: e.old_email,
                new_email: e.new_email,
                created_at: e.created_at,
                confirmed_at: e.confirmed_at,
                cancelled_at: e.cancelled_at,
            })
            .collect();
        let email_outbox_rows = email_outbox::Entity::find()
            .filter(email_outbox::Column::CustomerId.eq(customer_id))
            .order_by_asc(email_outbox::Column::CreatedAt)
            .order_by_asc(email_outbox::Column::Id)
            .offset(page.offset())
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let (email_outbox_rows, more) = one_page(email_outbox_rows, &page);
        page.more |= more;
        let mail = email_outbox_rows
            .into_iter()
            .map(|m| ExportedMail {
                kind: m.kind,
                recipient: m.recipient,
                status: m.status,
                created_at: m.created_at,
                sent_at: m.sent_at,
            })
            .collect();
        let audit_log_rows = audit_log::Entity::find()
            .filter(audit_log::Column::CustomerId.eq(customer_id))
            .order_by_asc(audit_log::Column::At)
            .order_by_asc(audit_log::Column::Id)
            .offset(page.offset())
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let (audit_log_rows, more) = one_page(audit_log_rows, &page);
        page.more |= more;
        let audit = audit_log_rows
            .into_iter()
            .map(|a| ExportedAudit {
                at: a.at,
                action: a.action,
                // The customer's own actions say so; an admin's never name the admin (a
                // console username is half of a console sign-in).
                actor: if a.actor_id == customer_id {
                    a.actor
                } else {
                    STORE_STAFF.to_owned()
                },
            })
            .collect();
        Ok(Some(CustomerExport {
            exported_at: now,
            page,
            customer: ExportedCustomer {
                id: c.id,
                email: c.email,
                firstname: c.firstname,
                lastname: c.lastname,
                locale: c.locale,
                external_id: c.external_id,
                created_at: c.created_at,
                updated_at: c.updated_at,
                password_changed_at: c.password_changed_at,
                failed_sign_ins: c.failed_sign_ins,
                locked_until: c.locked_until,
            },
            sessions,
            password_reset_links,
            email_changes,
            mail,
            audit,
        }))
    }
}

/// The page's rows of a list read with one row past the page: whether there were more.
fn one_page<T>(mut rows: Vec<T>, page: &ExportPage) -> (Vec<T>, bool) {
    let size = usize::try_from(page.size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}
