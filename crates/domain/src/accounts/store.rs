//! The port the customer-side use cases store accounts and sessions through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Result,
    customer::{Customer, Session},
    email::Email,
    ports::NewMail,
};

/// A customer about to be stored.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub id: Uuid,
    pub email: Email,
    pub firstname: String,
    pub lastname: String,
    pub locale: crate::customer::Locale,
    pub password_hash: String,
    pub now: DateTime<Utc>,
}

/// Why a customer could not be stored.
#[derive(Debug)]
pub enum CreateCustomerError {
    EmailTaken,
    Other(crate::Error),
}

/// Profile fields to set; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub locale: Option<crate::customer::Locale>,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Sets the given profile fields (and the search text the names are part of); `None` when
    /// there is no such customer.
    async fn update_profile(
        &self,
        customer_id: Uuid,
        change: ProfileChange,
        now: DateTime<Utc>,
    ) -> Result<Option<Customer>>;
    async fn create_customer(&self, new: NewCustomer) -> Result<Customer, CreateCustomerError>;
    async fn customer_by_id(&self, id: Uuid) -> Result<Option<Customer>>;
    /// The customer signed in as `email_key` (the normalised address), if any.
    async fn customer_by_email(&self, email_key: &str) -> Result<Option<Customer>>;
    /// Queues one message.
    async fn queue_mail(&self, mail: NewMail) -> Result<()>;
    /// The customers among `ids` that exist, in one look-up (any order).
    async fn customers_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Customer>>;
    /// In one transaction: stores the new hash, clears lockout, revokes every live session of
    /// the customer except `keep`, voids outstanding reset links and queues `notice`.
    /// Returns how many sessions were revoked.
    async fn set_password(
        &self,
        customer_id: Uuid,
        password_hash: String,
        keep: Option<crate::SessionId>,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<u64>;

    /// Marks the customer asked to change a password found on the breached list, and queues
    /// `notice`, in one transaction, unless they were asked already; true when this call
    /// marked them.
    async fn require_password_change(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<bool>;

    /// Live sessions of a customer, newest first.
    async fn live_sessions(&self, customer_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>>;

    /// Revokes session `id` if it is live and belongs to `customer_id`; true when it did.
    async fn revoke_session(
        &self,
        customer_id: Uuid,
        id: crate::SessionId,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}
