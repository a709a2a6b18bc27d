//! The ports: what the use cases need from the outside world. Persistence implements the
//! stores, the server implements the hasher; tests may implement them in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Result,
    customer::{ClientInfo, Customer, CustomerCredentials, Session},
    email::Email,
    lockout::LockoutPolicy,
    password::{NewPassword, PasswordCandidate},
    settings::Settings,
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

/// A session about to be stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client: ClientInfo,
}

/// Why a customer could not be stored.
#[derive(Debug)]
pub enum CreateCustomerError {
    EmailTaken,
    Other(crate::Error),
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_customer(&self, new: NewCustomer) -> Result<Customer, CreateCustomerError>;
    async fn customer_by_id(&self, id: Uuid) -> Result<Option<Customer>>;
    async fn credentials_by_email(&self, email: &Email) -> Result<Option<CustomerCredentials>>;
    async fn credentials_by_id(&self, id: Uuid) -> Result<Option<CustomerCredentials>>;

    /// Counts one failed sign-in atomically (concurrent failures all count) and locks the
    /// account when `policy` says the new count does.
    async fn record_failed_sign_in(
        &self,
        customer_id: Uuid,
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Clears the failure counter; stores `rehash` when the stored hash had old parameters.
    async fn record_successful_sign_in(
        &self,
        customer_id: Uuid,
        rehash: Option<String>,
    ) -> Result<()>;

    /// In one transaction: stores the new hash, clears lockout, and revokes every live session
    /// of the customer except `keep`. Returns how many sessions were revoked.
    async fn set_password(
        &self,
        customer_id: Uuid,
        password_hash: String,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    async fn create_session(&self, session: NewSession) -> Result<()>;

    /// The live (not revoked, not expired) session `id` with its customer, in one look-up.
    /// Notes the use (at most once a minute) for `customerSessions`.
    async fn live_session(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<(Session, Customer)>>;

    /// Live sessions of a customer, newest first.
    async fn live_sessions(&self, customer_id: Uuid, now: DateTime<Utc>) -> Result<Vec<Session>>;

    /// Revokes session `id` if it is live and belongs to `customer_id`; true when it did.
    async fn revoke_session(&self, customer_id: Uuid, id: Uuid, now: DateTime<Utc>)
    -> Result<bool>;
}

/// Where the current settings come from.
#[async_trait]
pub trait SettingsSource: Send + Sync {
    async fn current(&self) -> Result<Settings>;
}

/// Fixed settings (the SPEC defaults unless given others).
#[derive(Debug, Clone, Default)]
pub struct StaticSettings(pub Settings);

#[async_trait]
impl SettingsSource for StaticSettings {
    async fn current(&self) -> Result<Settings> {
        Ok(self.0.clone())
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    /// The password is right; `rehash` holds a new hash when the stored one used old parameters.
    Match {
        rehash: Option<String>,
    },
}

/// Password hashing, off the async runtime and bounded in concurrency.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &NewPassword) -> Result<String>;
    /// With `stored == None`, verifies against a dummy hash so an unknown account costs the same
    /// time as a known one, and reports a mismatch.
    async fn verify(
        &self,
        candidate: &PasswordCandidate,
        stored: Option<&str>,
    ) -> Result<Verification>;
}
