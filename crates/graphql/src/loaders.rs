//! DataLoaders for the admin-only customer fields: a page of customers costs one statement per
//! field, whatever its size.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use chrono::{DateTime, Utc};
use domain::admins::Admins;
use uuid::Uuid;

pub struct ActiveTokenCounts(pub Arc<Admins>);
pub struct LastResetRequests(pub Arc<Admins>);

impl Loader<Uuid> for ActiveTokenCounts {
    type Value = u64;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, Self::Error> {
        self.0
            .active_token_counts(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))
    }
}

impl Loader<Uuid> for LastResetRequests {
    type Value = DateTime<Utc>;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, DateTime<Utc>>, Self::Error> {
        self.0
            .last_reset_requests(keys)
            .await
            .map_err(|e| Arc::new(e.to_string()))
    }
}
