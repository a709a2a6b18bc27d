//! The port signing keys are kept through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;

/// A signing key as storage keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    /// The raw public key.
    pub public_key: Vec<u8>,
    /// Version, nonce and ciphertext of the seed (see `KeySealer`); `None` once retired.
    pub sealed_private_key: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub signs_from: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .field("signs_from", &self.signs_from)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key, retired ones included, in generation order.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Adds a key; `false` when its generation is taken (someone else added one first).
    async fn add_signing_key(&self, key: StoredKey) -> Result<bool>;
    /// Marks a key retired and forgets its private half; `false` when it was not live.
    async fn retire_signing_key(&self, kid: &str, now: DateTime<Utc>) -> Result<bool>;
}
