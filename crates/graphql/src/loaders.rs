//! DataLoaders, one set per request (so nothing cached outlives it): the admin-only customer
//! fields, and customers by id for a gateway's `_entities` batch. The grid primes the field
//! loaders with the whole page in one statement per field, so a page costs the same number of
//! statements whatever its size; a lone customer (the Edit page) loads through them on demand.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use chrono::{DateTime, Utc};
use domain::{accounts::Accounts, admin::Admins, customer::Customer};
use uuid::Uuid;

pub struct ActiveTokenCounts(pub Arc<Admins>);
pub struct LastResetRequests(pub Arc<Admins>);
pub struct PasswordFactsOf(pub Arc<Admins>);
pub struct CustomersById(pub Arc<Accounts>);

pub struct Loaders {
    pub token_counts: DataLoader<ActiveTokenCounts, HashMapCache>,
    pub last_resets: DataLoader<LastResetRequests, HashMapCache>,
    pub password_facts: DataLoader<PasswordFactsOf, HashMapCache>,
    pub customers: DataLoader<CustomersById, HashMapCache>,
}

impl Loaders {
    pub fn new(admins: &Arc<Admins>, accounts: &Arc<Accounts>) -> Self {
        Self {
            customers: DataLoader::with_cache(
                CustomersById(accounts.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            token_counts: DataLoader::with_cache(
                ActiveTokenCounts(admins.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            last_resets: DataLoader::with_cache(
                LastResetRequests(admins.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            password_facts: DataLoader::with_cache(
                PasswordFactsOf(admins.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }
}

// Every key gets a value (0, or None), so a customer without tokens or resets is cached too
// and never loaded twice.

impl Loader<Uuid> for ActiveTokenCounts {
    type Value = u64;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, Self::Error> {
        let found = self
            .0
            .active_token_counts(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))?;
        Ok(keys
            .iter()
            .map(|k| (*k, found.get(k).copied().unwrap_or(0)))
            .collect())
    }
}

impl Loader<Uuid> for LastResetRequests {
    type Value = Option<DateTime<Utc>>;
    type Error = Arc<String>;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Option<DateTime<Utc>>>, Self::Error> {
        let found = self
            .0
            .last_reset_requests(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))?;
        Ok(keys.iter().map(|k| (*k, found.get(k).copied())).collect())
    }
}

impl Loader<Uuid> for PasswordFactsOf {
    type Value = domain::admin::PasswordFacts;
    type Error = Arc<String>;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, domain::admin::PasswordFacts>, Self::Error> {
        self.0
            .password_facts(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))
    }
}

impl Loader<Uuid> for CustomersById {
    type Value = Customer;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Customer>, Self::Error> {
        Ok(self
            .0
            .customers(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))?
            .into_iter()
            .map(|c| (c.id, c))
            .collect())
    }
}
