//! The port sign-in reads credentials and stores sessions through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, kernel::client::ClientInfo, limits::PrincipalKind};

/// What the core needs to know of an account to check its password.
#[derive(Clone)]
pub struct StoredCredentials {
    pub id: Uuid,
    pub password_hash: String,
    pub locked_until: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("id", &self.id)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

/// A stored hash to replace after a successful check.
#[derive(Clone)]
pub struct Rehash {
    /// The stored hash the password was verified against.
    pub replaces: String,
    /// Its successor, Latchkey's argon2id with today's parameters.
    pub new: String,
}

impl std::fmt::Debug for Rehash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rehash")
    }
}

/// The stored hashes a password was verified against: the one read, and its rehash when one
/// was written. A session is stored only while the account still has one of them, so a
/// password set meanwhile (a reset, a change, "require a new password") wins over a sign-in
/// that is still hashing. `Debug` never shows them.
#[derive(Clone)]
pub struct VerifiedHashes(pub Vec<String>);

impl std::fmt::Debug for VerifiedHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedHashes")
    }
}

/// A session about to be stored, for either kind of principal.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: crate::SessionId,
    pub principal_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client: ClientInfo,
    pub verified: VerifiedHashes,
    /// Live sessions the principal may hold: once this one is stored, the oldest beyond this
    /// many are revoked (so a flood of correct sign-ins, aliased or not, cannot pile up
    /// sessions without end; a customer's devices list shows the newest this many).
    pub max_live: u32,
}

/// Credentials and sessions of both kinds of principal. `login` is the normalised sign-in
/// name: an email's key for customers, a username's key for admins.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    async fn credentials(
        &self,
        kind: PrincipalKind,
        login: &str,
    ) -> Result<Option<StoredCredentials>>;

    /// Counts one wrong password for the account signed in as `login`, and notes until when
    /// the failure locked the name (`locked_until`, the latest lock wins), in one statement
    /// (concurrent failures all count). For a name without an account it matches nothing.
    async fn record_failure(
        &self,
        kind: PrincipalKind,
        login: &str,
        locked_until: Option<DateTime<Utc>>,
    ) -> Result<()>;

    /// Clears the failure counter; stores `rehash` when the stored hash had old parameters or
    /// came from another platform, in the same statement, and only if the stored hash is still
    /// the one that was verified (a password set meanwhile, by a reset, stays).
    async fn record_success(
        &self,
        kind: PrincipalKind,
        id: Uuid,
        rehash: Option<Rehash>,
    ) -> Result<()>;

    /// Stores the session if the principal still has one of `session.verified`'s hashes (and,
    /// for an admin, is not disabled), in one statement that waits for a password change in
    /// progress; false when it did not.
    /// Stores the session only while the account still has a hash of `verified` (and, for
    /// admins, is enabled); then revokes the principal's oldest live sessions beyond
    /// `max_live`. False when nothing was stored.
    async fn create_session(&self, kind: PrincipalKind, session: NewSession) -> Result<bool>;
}
