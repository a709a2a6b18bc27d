//! The reset repository's port: what a request records, a stored token, and the three writes
//! of a reset.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Result,
    email::Email,
    ports::NewMail,
    reset::{CodePurpose, OneTimeCode},
};

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
    /// `None` when the store resets by code only: the token then stands behind the code.
    pub link: Option<String>,
    /// The code flow this request starts, if it started one.
    pub code: Option<RequestedCode>,
    /// A reset (a token, maybe a link, maybe a code), or a sign-in code (a code alone: no
    /// token, no link, and the account's reset links stay).
    pub purpose: CodePurpose,
    /// Reserved in the same transaction as the request is recorded: a refused request writes
    /// nothing.
    pub limits: Vec<crate::limits::Check>,
    pub now: DateTime<Utc>,
    /// Written in the same transaction when an admin triggered the reset.
    pub audit: Option<crate::admin::NewAudit>,
}

/// A code flow as the request records it: the flow for every address alike.
#[derive(Debug, Clone)]
pub struct RequestedCode {
    pub flow_hash: String,
    pub code_hash: String,
    /// Mailed, then scrubbed like the link.
    pub code: OneTimeCode,
    pub expires_at: DateTime<Utc>,
}

/// A flow after one more attempt was counted against it.
#[derive(Debug, Clone)]
pub struct CodeAttempt {
    pub flow_id: Uuid,
    pub code_hash: String,
    /// The address the flow was asked for (normalised), known or not.
    pub email_key: String,
    /// The reset token the flow stands for (none for an address without an account).
    pub reset_token_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    /// Used or superseded.
    pub ended: bool,
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

    async fn reset_token_by_id(&self, id: Uuid) -> Result<Option<StoredResetToken>>;

    /// Counts one attempt against the flow of `purpose` whose flow id hashes to `flow_hash`,
    /// atomically (of concurrent guesses, at most [`crate::reset::MAX_CODE_ATTEMPTS`] are
    /// ever counted), and answers the flow as it stands; `None` when there is no such flow or
    /// its attempts are spent.
    async fn count_code_attempt(
        &self,
        purpose: CodePurpose,
        flow_hash: &str,
    ) -> Result<Option<CodeAttempt>>;

    /// Ends a flow that was used, once: false when it had ended already (a concurrent use won,
    /// or a newer request superseded it).
    async fn end_code_flow(&self, flow_id: Uuid, now: DateTime<Utc>) -> Result<bool>;

    /// In one transaction: consumes the token (only if still unused, not superseded and not
    /// expired at `now`; its code flows end with it), then applies the password change like
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
