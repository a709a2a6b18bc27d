//! Service credentials: the store's other services (cart, orders, loyalty) that may ask
//! `/introspect` whether a token is still live. Each has a name and a secret of 256 random bits,
//! shown once when it is made; only the secret's SHA-256 is stored (a fast hash is enough for a
//! secret nobody can guess, and it lets the look-up go by hash, so its timing says nothing
//! about names).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, Result, clock::Clock};

mod store;
pub use store::ServiceStore;

const SECRET_PREFIX: &str = "lks_";
const MAX_NAME: usize = 64;
/// Secrets longer than this are not ours (ours are 47 characters).
const MAX_SECRET: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCredential {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `/introspect` answers it about admin tokens too (made with `--admin-tokens`); without
    /// it an admin token is `{"active": false}` to this service.
    pub admin_tokens: bool,
}

/// A new credential's secret: printed once, never stored.
pub struct ServiceSecret(String);

impl ServiceSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ServiceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceSecret(<secret>)")
    }
}

fn secret_hash(secret: &str) -> String {
    crate::kernel::sha256_hex(secret.as_bytes())
}

pub struct Services {
    store: Arc<dyn ServiceStore>,
    clock: Arc<dyn Clock>,
}

impl Services {
    pub fn new(store: Arc<dyn ServiceStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// A new credential and its secret (shown once); `admin_tokens`: whether it may ask about
    /// admin tokens as well as customers'.
    #[tracing::instrument(name = "services.create", skip_all)]
    pub async fn create(
        &self,
        name: &str,
        admin_tokens: bool,
    ) -> Result<(ServiceCredential, ServiceSecret)> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::bad_input(
                "name",
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        let secret = format!("{SECRET_PREFIX}{}", {
            use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
            URL_SAFE_NO_PAD.encode(bytes)
        });
        let credential = self
            .store
            .add_service(name, &secret_hash(&secret), admin_tokens, self.clock.now())
            .await?
            .ok_or_else(|| Error::bad_input("name", "a service with this name exists"))?;
        Ok((credential, ServiceSecret(secret)))
    }

    /// The live credential `name` with `secret`, else `None` (unknown name, wrong secret and
    /// revoked credential alike).
    pub async fn authenticate(
        &self,
        name: &str,
        secret: &str,
    ) -> Result<Option<ServiceCredential>> {
        if secret.len() > MAX_SECRET || !secret.starts_with(SECRET_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .service_by_secret_hash(&secret_hash(secret))
            .await?
            .filter(|c| c.name == name && c.revoked_at.is_none()))
    }

    pub async fn list(&self) -> Result<Vec<ServiceCredential>> {
        self.store.services().await
    }

    #[tracing::instrument(name = "services.revoke", skip_all)]
    pub async fn revoke(&self, name: &str) -> Result<()> {
        if self.store.revoke_service(name, self.clock.now()).await? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_to_64_hex_digits_and_differ_by_secret() {
        assert_eq!(secret_hash("lks_a").len(), 64);
        assert_ne!(secret_hash("lks_a"), secret_hash("lks_b"));
    }
}
