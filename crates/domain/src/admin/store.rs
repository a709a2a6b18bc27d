//! The admin repository's port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, customer::Customer, email::Email, mail::MailLane, settings::Settings};

/// An admin about to be stored.
#[derive(Debug, Clone)]
pub struct NewAdmin {
    pub id: Uuid,
    pub username: crate::admin::Username,
    pub role: crate::admin::Role,
    pub password_hash: String,
    pub now: DateTime<Utc>,
    /// Where "Forgot Your Password?" mail goes; optional for admins made by the CLI.
    pub email: Option<Email>,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// `Ok(None)` when the username is taken.
    async fn create_admin(&self, new: NewAdmin) -> Result<Option<crate::admin::AdminUser>>;
    /// Revokes one live admin session (sign-out); false when it was not live.
    async fn revoke_admin_session(&self, id: crate::SessionId, now: DateTime<Utc>) -> Result<bool>;

    /// A page of the grid; `now` decides who is locked or signed in now.
    async fn customers_page(
        &self,
        query: &crate::admin::CustomerQuery,
        now: DateTime<Utc>,
    ) -> Result<crate::admin::Page<Customer>>;
    /// Live token counts for many customers in one statement.
    async fn active_token_counts(
        &self,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<Uuid, u64>>;
    /// Password state and external id for many customers, in one statement.
    async fn password_facts(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, crate::admin::PasswordFacts>>;
    /// When each customer last had a reset link issued, in one statement.
    async fn last_reset_requests(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, DateTime<Utc>>>;
    /// Force Sign In: revokes every live session of the customer and writes `audit`, in one
    /// transaction. `None` when there is no such customer.
    async fn revoke_all_sessions(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        audit: crate::admin::NewAudit,
    ) -> Result<Option<u64>>;
    /// Clears the customer's failure count and noted lock and writes `audit`, in one
    /// transaction; the customer's sign-in name (email key), or `None` when there is no such
    /// customer.
    async fn unlock_customer(
        &self,
        customer_id: Uuid,
        audit: crate::admin::NewAudit,
    ) -> Result<Option<String>>;
    async fn update_settings(
        &self,
        settings: &Settings,
        audit: crate::admin::NewAudit,
    ) -> Result<()>;
    /// Mail not delivered yet (oldest first), dead-lettered included.
    async fn undelivered_mail(
        &self,
        first: u64,
        lane: Option<MailLane>,
    ) -> Result<Vec<crate::admin::UndeliveredMail>>;
    async fn audit_page(
        &self,
        query: &crate::admin::AuditQuery,
    ) -> Result<crate::admin::Page<crate::admin::AuditEntry>>;
}
