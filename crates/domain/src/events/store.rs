//! The port subscriptions and their deliveries are kept through. Recording events with a change
//! is the repositories' own business (in the change's unit of work); the event worker claims
//! and settles deliveries through the repository directly.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, EventType, SecurityEvent, Subscription};
use crate::{Result, admin::NewAudit};

/// What an administrator changes on a subscription (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub enabled: Option<bool>,
    pub include_email: Option<bool>,
    pub audience: Option<String>,
    pub max_in_flight: Option<i32>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn subscriptions(&self) -> Result<Vec<Subscription>>;
    async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>>;
    /// With its sealed webhook secret, if it has one, and the audit entry.
    async fn create_subscription(
        &self,
        s: &Subscription,
        sealed_secret: Option<Vec<u8>>,
        audit: NewAudit,
    ) -> Result<()>;
    async fn update_subscription(&self, s: &Subscription, audit: NewAudit) -> Result<()>;
    /// `false` when there was none; its deliveries go with it.
    async fn delete_subscription(&self, id: Uuid, audit: NewAudit) -> Result<bool>;
    async fn set_secret(&self, id: Uuid, sealed: Vec<u8>, audit: NewAudit) -> Result<()>;
    /// One delivery of `event` to this subscription only, with the audit entry.
    async fn queue_test(
        &self,
        subscription: Uuid,
        event: &SecurityEvent,
        audit: NewAudit,
    ) -> Result<Delivery>;
    /// Newest first.
    async fn deliveries(
        &self,
        subscription: Uuid,
        status: Option<DeliveryStatus>,
        first: u64,
    ) -> Result<Vec<Delivery>>;
    /// Dead deliveries (`seqs`, or every one) due again now, their attempts counted afresh;
    /// how many.
    async fn replay(
        &self,
        subscription: Uuid,
        seqs: Option<Vec<i64>>,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<u64>;
}
