//! The port service credentials are kept through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::ServiceCredential;
use crate::Result;

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// `None` when the name is taken.
    async fn add_service(
        &self,
        name: &str,
        secret_hash: &str,
        admin_tokens: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<ServiceCredential>>;
    async fn service_by_secret_hash(&self, secret_hash: &str) -> Result<Option<ServiceCredential>>;
    async fn services(&self) -> Result<Vec<ServiceCredential>>;
    /// `false` when no live credential has that name.
    async fn revoke_service(&self, name: &str, now: DateTime<Utc>) -> Result<bool>;
}
