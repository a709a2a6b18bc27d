//! The reset repository's port: what a request records, a stored token, and the three writes
//! of a reset.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, email::Email, ports::NewMail};

/// A reset request after parsing, ready to record. It carries nothing that depends on whether
/// an account has the address: the mail worker resolves that later, off the request path.
#[derive(Debug, Clone)]
pub struct ResetRequest {
    /// The address as submitted (normalised); the worker finds the account by its key.
    pub email: Email,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    /// The full link (it carries the raw token): kept with the request, then in the outbox row
    /// until sent, then scrubbed; deleted with the request when no account has the address.
    pub link: String,
    /// Reserved in the same transaction as the request is recorded: a refused request writes
    /// nothing.
    pub limits: Vec<crate::limits::Check>,
    pub now: DateTime<Utc>,
    /// Written in the same transaction when an admin triggered the reset.
    pub audit: Option<crate::admin::NewAudit>,
}

/// A stored reset token, found by its hash.
#[derive(Debug, Clone)]
pub struct StoredResetToken {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub email_key: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ResetStore: Send + Sync {
    /// Records the request, with the same statements and rows whether or not an account has
    /// this email, after applying its limits (exactly, under concurrency and across replicas);
    /// concurrent requests may share one transaction (group commit), and `Ok(Ok(()))` is only
    /// answered once the request is committed. `Err` inside `Ok` means a limit refused it and
    /// nothing was written. Resolving it (superseding the account's outstanding tokens, storing
    /// the new token's hash, queueing the mail; nothing for an unknown address) happens later,
    /// in the mail worker.
    async fn request_reset(
        &self,
        request: ResetRequest,
    ) -> Result<Result<(), crate::limits::Refused>>;

    async fn find_reset_token(&self, token_hash: &str) -> Result<Option<StoredResetToken>>;

    /// In one transaction: consumes the token (only if still unused, not superseded and not
    /// expired at `now`), then applies the password change like
    /// [`crate::accounts::store::AccountStore::set_password`] with no session kept. False when the token was already
    /// consumed (a concurrent reset won).
    async fn complete_reset(
        &self,
        token_id: Uuid,
        customer_id: Uuid,
        password_hash: String,
        now: DateTime<Utc>,
        notice: NewMail,
    ) -> Result<bool>;
}
