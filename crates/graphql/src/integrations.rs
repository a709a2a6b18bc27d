//! Security-event subscriptions (the console's Integrations page): where Force Sign In, password
//! changes, disabled, deleted and re-addressed accounts are pushed, in Standard Webhooks or
//! Shared Signals format. Everything here needs `INTEGRATIONS_MANAGE`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{
    admin::Permission,
    events::{self, SubscriptionPatch},
};
use uuid::Uuid;

use crate::{
    ApiError,
    context::{admin, request, services},
    guard::RequirePermission,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum EventFormat {
    /// JSON signed per the Standard Webhooks specification (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`, HMAC-SHA256 under the subscription's secret).
    StandardWebhooks,
    /// An OpenID Shared Signals Security Event Token per request (RFC 8417, pushed per RFC
    /// 8935), signed with the server's current signing key (verify with the JWKS).
    SsfSet,
}

impl From<EventFormat> for events::EventFormat {
    fn from(f: EventFormat) -> Self {
        match f {
            EventFormat::StandardWebhooks => Self::StandardWebhooks,
            EventFormat::SsfSet => Self::SsfSet,
        }
    }
}

impl From<events::EventFormat> for EventFormat {
    fn from(f: events::EventFormat) -> Self {
        match f {
            events::EventFormat::StandardWebhooks => Self::StandardWebhooks,
            events::EventFormat::SsfSet => Self::SsfSet,
        }
    }
}

/// What happened to an account (CAEP and RISC event types).
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum SecurityEventType {
    /// Sessions ended (one, or every one): sign-out, Force Sign In, a password change or
    /// reset, a session cap, "this wasn't me", an admin disabled.
    SessionRevoked,
    /// The password was changed, reset, set or voided; an admin's second factors removed.
    CredentialChange,
    /// Frozen after "this wasn't me", or an admin disabled.
    AccountDisabled,
    /// Usable again.
    AccountEnabled,
    /// Deleted.
    AccountPurged,
    /// The email address changed.
    IdentifierChanged,
}

impl From<SecurityEventType> for events::EventType {
    fn from(t: SecurityEventType) -> Self {
        match t {
            SecurityEventType::SessionRevoked => Self::SessionRevoked,
            SecurityEventType::CredentialChange => Self::CredentialChange,
            SecurityEventType::AccountDisabled => Self::AccountDisabled,
            SecurityEventType::AccountEnabled => Self::AccountEnabled,
            SecurityEventType::AccountPurged => Self::AccountPurged,
            SecurityEventType::IdentifierChanged => Self::IdentifierChanged,
        }
    }
}

impl From<events::EventType> for SecurityEventType {
    fn from(t: events::EventType) -> Self {
        match t {
            events::EventType::SessionRevoked => Self::SessionRevoked,
            events::EventType::CredentialChange => Self::CredentialChange,
            events::EventType::AccountDisabled => Self::AccountDisabled,
            events::EventType::AccountEnabled => Self::AccountEnabled,
            events::EventType::AccountPurged => Self::AccountPurged,
            events::EventType::IdentifierChanged => Self::IdentifierChanged,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DeliveryStatus {
    Pending,
    Sending,
    Delivered,
    /// Given up on after the last attempt: replay it when the receiver is fixed.
    Dead,
}

impl From<DeliveryStatus> for events::DeliveryStatus {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Sending => Self::Sending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Dead => Self::Dead,
        }
    }
}

impl From<events::DeliveryStatus> for DeliveryStatus {
    fn from(s: events::DeliveryStatus) -> Self {
        match s {
            events::DeliveryStatus::Pending => Self::Pending,
            events::DeliveryStatus::Sending => Self::Sending,
            events::DeliveryStatus::Delivered => Self::Delivered,
            events::DeliveryStatus::Dead => Self::Dead,
        }
    }
}

/// A receiver of security events.
#[derive(SimpleObject)]
pub struct EventSubscription {
    pub id: ID,
    pub name: String,
    pub url: String,
    pub format: EventFormat,
    pub event_types: Vec<SecurityEventType>,
    pub enabled: bool,
    /// The subject's email address is sent with its events (otherwise its id only).
    pub include_email: bool,
    /// The SET's `aud` (Shared Signals); the URL when unset.
    pub audience: Option<String>,
    /// Requests in flight to it at once, across every replica.
    pub max_in_flight: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<events::Subscription> for EventSubscription {
    fn from(s: events::Subscription) -> Self {
        Self {
            id: ID(s.id.to_string()),
            name: s.name,
            url: s.url,
            format: s.format.into(),
            event_types: s.event_types.into_iter().map(Into::into).collect(),
            enabled: s.enabled,
            include_email: s.include_email,
            audience: s.audience,
            max_in_flight: s.max_in_flight,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A new subscription; `secret` is its Standard Webhooks signing secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedEventSubscription {
    pub subscription: EventSubscription,
    pub secret: Option<String>,
}

/// One event for one subscription.
#[derive(SimpleObject)]
pub struct EventDelivery {
    pub id: ID,
    /// The same on every attempt (`webhook-id`, the SET's `jti`).
    pub event_id: ID,
    pub event_type: SecurityEventType,
    /// `customer` or `admin`.
    pub subject_kind: String,
    pub subject_id: ID,
    pub reason: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The receiver's last HTTP status, when it answered.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<events::Delivery> for EventDelivery {
    fn from(d: events::Delivery) -> Self {
        Self {
            id: ID(d.seq.to_string()),
            event_id: ID(d.event_id.to_string()),
            event_type: d.event_type.into(),
            subject_kind: d.subject_kind.as_str().to_owned(),
            subject_id: ID(d.subject_id.to_string()),
            reason: d.reason.as_str().to_owned(),
            status: d.status.into(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(InputObject)]
pub struct EventSubscriptionInput {
    pub name: String,
    /// `https://` (plain `http://` only outside production); not a loopback, private or
    /// link-local address in production.
    pub url: String,
    pub format: EventFormat,
    pub event_types: Vec<SecurityEventType>,
    #[graphql(default = true)]
    pub enabled: bool,
    #[graphql(default = false)]
    pub include_email: bool,
    pub audience: Option<String>,
    /// 1 to 32 (8).
    pub max_in_flight: Option<i32>,
}

#[derive(InputObject)]
pub struct EventSubscriptionPatch {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<SecurityEventType>>,
    pub enabled: Option<bool>,
    pub include_email: Option<bool>,
    /// An empty string clears it (the URL is the audience again).
    pub audience: Option<String>,
    pub max_in_flight: Option<i32>,
}

fn uuid(id: &ID) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str()).map_err(|_| ApiError::from(domain::Error::NotFound))
}

#[derive(Default)]
pub struct IntegrationsQuery;

#[Object]
impl IntegrationsQuery {
    /// Every security-event subscription, oldest first.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn event_subscriptions(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<EventSubscription>, ApiError> {
        Ok(services(ctx)?
            .integrations
            .subscriptions()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// A subscription's deliveries, newest first (`first` up to 200), of one status or all.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn event_deliveries(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        status: Option<DeliveryStatus>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<EventDelivery>, ApiError> {
        Ok(services(ctx)?
            .integrations
            .deliveries(
                uuid(&subscription_id)?,
                status.map(Into::into),
                u64::try_from(first).unwrap_or(1),
            )
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(Default)]
pub struct IntegrationsMutation;

#[Object]
impl IntegrationsMutation {
    /// A new subscription (audited). A Standard Webhooks one answers its secret this once.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn create_event_subscription(
        &self,
        ctx: &Context<'_>,
        input: EventSubscriptionInput,
    ) -> Result<CreatedEventSubscription, ApiError> {
        let by = admin(ctx).await?;
        let created = services(ctx)?
            .integrations
            .create(
                &by,
                &request(ctx).client,
                events::NewSubscription {
                    name: input.name,
                    url: input.url,
                    format: input.format.into(),
                    event_types: input.event_types.into_iter().map(Into::into).collect(),
                    enabled: input.enabled,
                    include_email: input.include_email,
                    audience: input.audience,
                    max_in_flight: input.max_in_flight,
                },
            )
            .await?;
        Ok(CreatedEventSubscription {
            subscription: created.subscription.into(),
            secret: created.secret.map(|s| s.expose().to_owned()),
        })
    }

    /// Changes a subscription (audited); events already recorded keep their place in line.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn update_event_subscription(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: EventSubscriptionPatch,
    ) -> Result<EventSubscription, ApiError> {
        let by = admin(ctx).await?;
        let patch = SubscriptionPatch {
            name: input.name,
            url: input.url,
            event_types: input
                .event_types
                .map(|t| t.into_iter().map(Into::into).collect()),
            enabled: input.enabled,
            include_email: input.include_email,
            audience: input.audience,
            max_in_flight: input.max_in_flight,
        };
        Ok(services(ctx)?
            .integrations
            .update(&by, &request(ctx).client, uuid(&id)?, patch)
            .await?
            .into())
    }

    /// Deletes a subscription and its deliveries (audited).
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn delete_event_subscription(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let by = admin(ctx).await?;
        services(ctx)?
            .integrations
            .delete(&by, &request(ctx).client, uuid(&id)?)
            .await?;
        Ok(true)
    }

    /// A new Standard Webhooks secret, shown this once; the old one stops signing at once.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn rotate_event_subscription_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<String, ApiError> {
        let by = admin(ctx).await?;
        Ok(services(ctx)?
            .integrations
            .rotate_secret(&by, &request(ctx).client, uuid(&id)?)
            .await?
            .expose()
            .to_owned())
    }

    /// Queues a test event (`session-revoked`, reason `test`, the asking admin as its
    /// subject) for this subscription only.
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn send_test_event(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
    ) -> Result<EventDelivery, ApiError> {
        let by = admin(ctx).await?;
        Ok(services(ctx)?
            .integrations
            .send_test(&by, &request(ctx).client, uuid(&subscription_id)?)
            .await?
            .into())
    }

    /// Puts dead deliveries back in line (these ids, or every dead one of the subscription);
    /// how many (audited).
    #[graphql(guard = "RequirePermission(Permission::IntegrationsManage)")]
    async fn replay_event_deliveries(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        delivery_ids: Option<Vec<ID>>,
    ) -> Result<i32, ApiError> {
        let by = admin(ctx).await?;
        let ids = delivery_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| {
                        id.parse::<i64>()
                            .map_err(|_| ApiError::from(domain::Error::NotFound))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let n = services(ctx)?
            .integrations
            .replay(&by, &request(ctx).client, uuid(&subscription_id)?, ids)
            .await?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}
