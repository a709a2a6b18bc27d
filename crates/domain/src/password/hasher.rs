//! The port password hashing is reached through (the server wires `latchkey-hashing`).

use async_trait::async_trait;

use crate::{
    Result,
    password::{NewPassword, PasswordCandidate},
};

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
