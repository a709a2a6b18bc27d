//! Security events for the rest of the store: what happened to an account (its sessions
//! revoked, its password changed, it was disabled, deleted, or its address changed), recorded
//! in the transaction of the change and pushed to the store's other services that subscribed.
//!
//! - **Recorded with the change.** A repository records the event in the unit of work that makes
//!   the change (one delivery row per subscription that wants it), so a rolled-back change sends
//!   nothing and a committed one is never lost.
//! - **Two formats.** Standard Webhooks (JSON, HMAC-SHA256 under a per-subscription secret) or
//!   OpenID Shared Signals Security Event Tokens (RFC 8417, CAEP and RISC event types) signed with
//!   the server's current signing key, pushed per RFC 8935.
//! - **Delivery** (the event worker): at least once, with the same event id on every attempt;
//!   in order per subject within a subscription; retried with backoff and jitter (the
//!   worker's attempts, about a day by default), then dead-lettered for an administrator to
//!   replay.
//! - **Never** a token or a password: a subject's id, a session's id, the reason and who acted;
//!   the subject's email only for a subscription allowed it.

mod endpoint;
mod render;
mod store;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use endpoint::{EndpointPolicy, EndpointRefusal, Network};
pub use render::{Rendered, SetSigner, WebhookSecret, render, ssf_configuration};
pub use store::{EventStore, SubscriptionPatch};

use crate::{
    Error, Result, SessionId,
    admin::{AdminPrincipal, AuditAction, NewAudit},
    clock::Clock,
    kernel::client::ClientInfo,
};

/// What happened, in the store's terms; each maps to one CAEP or RISC event type and one
/// Standard Webhooks type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Sessions ended: one (a sign-out, a session cap's eviction) or every one.
    SessionRevoked,
    /// The password was set, changed, reset or voided; or an admin's second factors removed.
    CredentialChange,
    /// The account can no longer be used: frozen after "this wasn't me", or an admin disabled.
    AccountDisabled,
    /// A disabled account is usable again.
    AccountEnabled,
    /// The account was deleted.
    AccountPurged,
    /// The account's email address changed.
    IdentifierChanged,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::SessionRevoked,
        Self::CredentialChange,
        Self::AccountDisabled,
        Self::AccountEnabled,
        Self::AccountPurged,
        Self::IdentifierChanged,
    ];

    /// The name stored and shown (the CAEP/RISC event type's last segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionRevoked => "session-revoked",
            Self::CredentialChange => "credential-change",
            Self::AccountDisabled => "account-disabled",
            Self::AccountEnabled => "account-enabled",
            Self::AccountPurged => "account-purged",
            Self::IdentifierChanged => "identifier-changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event type's URI in a Security Event Token.
    pub fn set_uri(self) -> &'static str {
        match self {
            Self::SessionRevoked => {
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
            }
            Self::CredentialChange => {
                "https://schemas.openid.net/secevent/caep/event-type/credential-change"
            }
            Self::AccountDisabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
            }
            Self::AccountEnabled => {
                "https://schemas.openid.net/secevent/risc/event-type/account-enabled"
            }
            Self::AccountPurged => {
                "https://schemas.openid.net/secevent/risc/event-type/account-purged"
            }
            Self::IdentifierChanged => {
                "https://schemas.openid.net/secevent/risc/event-type/identifier-changed"
            }
        }
    }

    /// The `type` of a Standard Webhooks message.
    pub fn webhook_type(self) -> &'static str {
        match self {
            Self::SessionRevoked => "session.revoked",
            Self::CredentialChange => "credential.changed",
            Self::AccountDisabled => "account.disabled",
            Self::AccountEnabled => "account.enabled",
            Self::AccountPurged => "account.purged",
            Self::IdentifierChanged => "identifier.changed",
        }
    }
}

/// Why it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The customer (or admin) signed out of this session.
    SignOut,
    /// An admin's Force Sign In (one customer or admin).
    ForceSignIn,
    /// A bulk Force Sign In job.
    BulkForceSignIn,
    /// The password was changed by its owner.
    PasswordChanged,
    /// The password was set through a reset link or code.
    PasswordReset,
    /// An admin's password was set through an invitation or a reset link.
    PasswordSet,
    /// A new sign-in went past the cap of live sessions and ended the oldest.
    SessionCap,
    /// "This wasn't me" from a security mail: sessions ended and the password voided.
    ReportedNotMe,
    /// The account was frozen: its address was taken back by "this wasn't me".
    Frozen,
    /// A frozen account was recovered or released.
    Recovered,
    /// The account was deleted (by its owner or an admin).
    Deleted,
    /// The email address changed.
    EmailChanged,
    /// An admin was disabled or enabled.
    AdminDisabled,
    AdminEnabled,
    /// An admin's second factors were removed by another admin or an operator.
    FactorsReset,
    /// An admin removed a second factor of their own, or replaced their recovery codes.
    FactorChanged,
    /// A bulk job made the password stop working until a new one is set.
    NewPasswordRequired,
    /// The "Send test event" button.
    Test,
}

impl Reason {
    pub const ALL: [Self; 18] = [
        Self::SignOut,
        Self::ForceSignIn,
        Self::BulkForceSignIn,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::PasswordSet,
        Self::SessionCap,
        Self::ReportedNotMe,
        Self::Frozen,
        Self::Recovered,
        Self::Deleted,
        Self::EmailChanged,
        Self::AdminDisabled,
        Self::AdminEnabled,
        Self::FactorsReset,
        Self::FactorChanged,
        Self::NewPasswordRequired,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignOut => "sign_out",
            Self::ForceSignIn => "force_sign_in",
            Self::BulkForceSignIn => "bulk_force_sign_in",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::PasswordSet => "password_set",
            Self::SessionCap => "session_cap",
            Self::ReportedNotMe => "reported_not_me",
            Self::Frozen => "frozen",
            Self::Recovered => "recovered",
            Self::Deleted => "deleted",
            Self::EmailChanged => "email_changed",
            Self::AdminDisabled => "admin_disabled",
            Self::AdminEnabled => "admin_enabled",
            Self::FactorsReset => "factors_reset",
            Self::FactorChanged => "factor_changed",
            Self::NewPasswordRequired => "new_password_required",
            Self::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Said to an administrator of the receiving service (CAEP `reason_admin`).
    pub(crate) fn explained(self) -> &'static str {
        match self {
            Self::SignOut => "The user signed out of this session.",
            Self::ForceSignIn => "A store administrator signed the user out everywhere.",
            Self::BulkForceSignIn => "A store administrator signed many users out everywhere.",
            Self::PasswordChanged => "The user changed their password.",
            Self::PasswordReset => "The password was reset.",
            Self::PasswordSet => "The password was set.",
            Self::SessionCap => "A new sign-in went past the limit of sessions per user.",
            Self::ReportedNotMe => {
                "The user reported activity that was not theirs; the password was voided."
            }
            Self::Frozen => "The account was frozen after its owner reported a takeover.",
            Self::Recovered => "The account was recovered.",
            Self::Deleted => "The account was deleted.",
            Self::EmailChanged => "The account's email address changed.",
            Self::AdminDisabled => "A store administrator was disabled.",
            Self::AdminEnabled => "A store administrator was enabled.",
            Self::FactorsReset => "A store administrator's second factors were removed.",
            Self::FactorChanged => {
                "A store administrator removed a second factor or replaced their recovery codes."
            }
            Self::NewPasswordRequired => {
                "The password stopped working: a store administrator requires a new one."
            }
            Self::Test => "A test event sent from the Integrations page.",
        }
    }
}

/// Who set it off (CAEP's `initiating_entity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The account's owner.
    User,
    /// A store administrator (or an operator at the command line).
    Admin,
    /// A rule of the store (a session cap).
    Policy,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Policy => "policy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::User, Self::Admin, Self::Policy]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Whose account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    Customer,
    Admin,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The `aud` of this kind's access tokens: a receiver verifying tokens with the JWKS
    /// matches the event's subject on it.
    pub fn token_audience(self) -> &'static str {
        match self {
            Self::Customer => crate::token::TokenKind::Customer.audience(),
            Self::Admin => crate::token::TokenKind::Admin.audience(),
        }
    }
}

/// Why it happened and who did it: what every recorded event carries besides its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    pub reason: Reason,
    pub actor: Actor,
}

impl Cause {
    pub const fn new(reason: Reason, actor: Actor) -> Self {
        Self { reason, actor }
    }
}

/// One event to record with the change that causes it.
#[derive(Debug, Clone)]
pub struct SecurityEvent {
    /// The same on every attempt and for every subscription (`webhook-id`, the SET's `jti`):
    /// a receiver that saw it already drops it.
    pub id: Uuid,
    pub event_type: EventType,
    pub subject_kind: SubjectKind,
    pub subject_id: Uuid,
    /// The one session revoked (its access token's `jti`), when only one was.
    pub session: Option<SessionId>,
    pub cause: Cause,
    pub occurred_at: DateTime<Utc>,
    /// For `IdentifierChanged`: the new address (sent only where email is allowed).
    pub new_email: Option<String>,
}

impl SecurityEvent {
    pub fn new(
        event_type: EventType,
        subject_kind: SubjectKind,
        subject_id: Uuid,
        cause: Cause,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type,
            subject_kind,
            subject_id,
            session: None,
            cause,
            occurred_at,
            new_email: None,
        }
    }

    pub fn customer(event_type: EventType, id: Uuid, cause: Cause, now: DateTime<Utc>) -> Self {
        Self::new(event_type, SubjectKind::Customer, id, cause, now)
    }

    pub fn admin(event_type: EventType, id: Uuid, cause: Cause, now: DateTime<Utc>) -> Self {
        Self::new(event_type, SubjectKind::Admin, id, cause, now)
    }

    pub fn for_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    pub fn with_new_email(mut self, email: &str) -> Self {
        self.new_email = Some(email.to_owned());
        self
    }
}

/// How a subscription's events are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// Standard Webhooks: JSON, `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    /// OpenID Shared Signals: a Security Event Token per request (RFC 8417, RFC 8935).
    SsfSet,
}

impl EventFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard_webhooks",
            Self::SsfSet => "ssf_set",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard_webhooks" => Some(Self::StandardWebhooks),
            "ssf_set" => Some(Self::SsfSet),
            _ => None,
        }
    }
}

/// Requests in flight to one subscription, across every replica, unless it says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 8;
const MAX_IN_FLIGHT: i32 = 32;
const MAX_NAME: usize = 64;
const MAX_AUDIENCE: usize = 256;
/// Subscriptions a store may have: each adds rows to every revoking transaction and a task to
/// every replica.
pub const MAX_SUBSCRIPTIONS: usize = 20;
/// Dead deliveries one replay may name.
const MAX_REPLAY: usize = 1000;

/// A receiver of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub format: EventFormat,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    /// The subject's email address goes with its events (off: the id only).
    pub include_email: bool,
    /// The SET's `aud` (SSF): what the receiver expects; the URL when none is set.
    pub audience: Option<String>,
    /// Requests in flight to it at once, across every replica.
    pub max_in_flight: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    pub fn wants(&self, event_type: EventType) -> bool {
        self.enabled && self.event_types.contains(&event_type)
    }

    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.url)
    }
}

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub name: String,
    pub url: String,
    pub format: EventFormat,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    pub include_email: bool,
    pub audience: Option<String>,
    pub max_in_flight: Option<i32>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Sending,
    Delivered,
    /// Given up on: kept for an administrator to see and replay.
    Dead,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sending, Self::Delivered, Self::Dead]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One event for one subscription, as the Integrations page lists it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub subject_kind: SubjectKind,
    pub subject_id: Uuid,
    pub reason: Reason,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The administrators' use cases: subscriptions, their deliveries, replay and a test event.
pub struct Integrations {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    endpoints: EndpointPolicy,
    secrets: crate::keys::Sealer,
}

/// A new subscription, with its signing secret when it has one (shown once).
pub struct Created {
    pub subscription: Subscription,
    pub secret: Option<WebhookSecret>,
}

fn parse_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::BadUserInput {
            field: "name",
            message: format!("a name of 1 to {MAX_NAME} printable characters"),
        });
    }
    Ok(name.to_owned())
}

fn check_types(types: &[EventType]) -> Result<()> {
    if types.is_empty() {
        return Err(Error::BadUserInput {
            field: "eventTypes",
            message: "choose at least one event type".into(),
        });
    }
    Ok(())
}

fn check_in_flight(n: i32) -> Result<i32> {
    if (1..=MAX_IN_FLIGHT).contains(&n) {
        Ok(n)
    } else {
        Err(Error::BadUserInput {
            field: "maxInFlight",
            message: format!("from 1 to {MAX_IN_FLIGHT}"),
        })
    }
}

fn check_audience(audience: Option<String>) -> Result<Option<String>> {
    match audience.map(|a| a.trim().to_owned()) {
        Some(a) if a.is_empty() => Ok(None),
        Some(a) if a.chars().count() > MAX_AUDIENCE || a.chars().any(char::is_control) => {
            Err(Error::BadUserInput {
                field: "audience",
                message: format!("at most {MAX_AUDIENCE} printable characters"),
            })
        }
        // A SET is signed with the access tokens' key: it must never name their audiences,
        // or a careless verifier could take it for a token.
        Some(a) if a.to_ascii_lowercase().starts_with("latchkey") => Err(Error::BadUserInput {
            field: "audience",
            message: "an audience of the receiving service's own (not one of Latchkey's tokens)"
                .into(),
        }),
        other => Ok(other),
    }
}

impl Integrations {
    /// `sealing` is the server's secret: webhook secrets are sealed under a key derived from it.
    pub fn new(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        endpoints: EndpointPolicy,
        sealing: &[u8],
    ) -> Result<Self> {
        Ok(Self {
            store,
            clock,
            endpoints,
            secrets: secret_sealer(sealing)?,
        })
    }

    pub async fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.store.subscriptions().await
    }

    pub async fn subscription(&self, id: Uuid) -> Result<Subscription> {
        self.store.subscription(id).await?.ok_or(Error::NotFound)
    }

    fn audit(&self, by: &AdminPrincipal, client: &ClientInfo, detail: String) -> NewAudit {
        NewAudit {
            id: Uuid::now_v7(),
            at: self.clock.now(),
            actor_id: by.admin.id,
            actor: by.admin.username.clone(),
            action: AuditAction::ManageIntegration,
            customer_id: None,
            client_ip: client.ip.map(|ip| ip.to_string()),
            detail: Some(detail),
        }
    }

    pub async fn create(
        &self,
        by: &AdminPrincipal,
        client: &ClientInfo,
        new: NewSubscription,
    ) -> Result<Created> {
        let now = self.clock.now();
        let url = self
            .endpoints
            .check_url(&new.url)
            .map_err(|e| e.into_error())?;
        check_types(&new.event_types)?;
        if self.store.subscriptions().await?.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::BadUserInput {
                field: "input",
                message: format!("at most {MAX_SUBSCRIPTIONS} subscriptions"),
            });
        }
        let subscription = Subscription {
            id: Uuid::now_v7(),
            name: parse_name(&new.name)?,
            url,
            format: new.format,
            event_types: dedup(new.event_types),
            enabled: new.enabled,
            include_email: new.include_email,
            audience: check_audience(new.audience)?,
            max_in_flight: check_in_flight(new.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT))?,
            created_at: now,
            updated_at: now,
        };
        let secret = (subscription.format == EventFormat::StandardWebhooks)
            .then(WebhookSecret::generate)
            .transpose()?;
        let sealed = secret
            .as_ref()
            .map(|s| self.seal(subscription.id, s))
            .transpose()?;
        let audit = self.audit(
            by,
            client,
            format!(
                "created {} ({}) to {}, {}, email {}",
                subscription.id,
                subscription.name,
                subscription.url,
                subscription.format.as_str(),
                if subscription.include_email {
                    "on"
                } else {
                    "off"
                }
            ),
        );
        self.store
            .create_subscription(&subscription, sealed, audit)
            .await?;
        Ok(Created {
            subscription,
            secret,
        })
    }

    pub async fn update(
        &self,
        by: &AdminPrincipal,
        client: &ClientInfo,
        id: Uuid,
        patch: SubscriptionPatch,
    ) -> Result<Subscription> {
        let mut s = self.subscription(id).await?;
        if let Some(name) = &patch.name {
            s.name = parse_name(name)?;
        }
        if let Some(url) = &patch.url {
            s.url = self.endpoints.check_url(url).map_err(|e| e.into_error())?;
        }
        if let Some(types) = patch.event_types.clone() {
            check_types(&types)?;
            s.event_types = dedup(types);
        }
        if let Some(enabled) = patch.enabled {
            s.enabled = enabled;
        }
        if let Some(include) = patch.include_email {
            s.include_email = include;
        }
        if let Some(audience) = patch.audience.clone() {
            s.audience = check_audience(Some(audience))?;
        }
        if let Some(n) = patch.max_in_flight {
            s.max_in_flight = check_in_flight(n)?;
        }
        s.updated_at = self.clock.now();
        let audit = self.audit(
            by,
            client,
            format!(
                "updated {id} ({}): to {}, {}, email {}",
                s.name,
                s.url,
                if s.enabled { "enabled" } else { "paused" },
                if s.include_email { "on" } else { "off" }
            ),
        );
        self.store.update_subscription(&s, audit).await?;
        Ok(s)
    }

    pub async fn delete(&self, by: &AdminPrincipal, client: &ClientInfo, id: Uuid) -> Result<()> {
        let audit = self.audit(by, client, format!("deleted {id}"));
        if self.store.delete_subscription(id, audit).await? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// A new webhook secret; the old one stops signing at once.
    pub async fn rotate_secret(
        &self,
        by: &AdminPrincipal,
        client: &ClientInfo,
        id: Uuid,
    ) -> Result<WebhookSecret> {
        let s = self.subscription(id).await?;
        if s.format != EventFormat::StandardWebhooks {
            return Err(Error::BadUserInput {
                field: "id",
                message: "a Shared Signals subscription is signed with the server's keys".into(),
            });
        }
        let secret = WebhookSecret::generate()?;
        let audit = self.audit(by, client, format!("new secret for {id}"));
        self.store
            .set_secret(id, self.seal(id, &secret)?, audit)
            .await?;
        Ok(secret)
    }

    /// Queues a test event for this subscription only (its subject is the admin who asked;
    /// a SET receiver gets the SSF verification event, a webhook the type `latchkey.test`).
    pub async fn send_test(
        &self,
        by: &AdminPrincipal,
        client: &ClientInfo,
        id: Uuid,
    ) -> Result<Delivery> {
        self.subscription(id).await?;
        let event = SecurityEvent::admin(
            EventType::SessionRevoked,
            by.admin.id,
            Cause::new(Reason::Test, Actor::Admin),
            self.clock.now(),
        );
        let audit = self.audit(by, client, format!("sent a test event to {id}"));
        self.store.queue_test(id, &event, audit).await
    }

    pub async fn deliveries(
        &self,
        id: Uuid,
        status: Option<DeliveryStatus>,
        first: u64,
    ) -> Result<Vec<Delivery>> {
        self.subscription(id).await?;
        self.store.deliveries(id, status, first.clamp(1, 200)).await
    }

    /// Dead deliveries (these, or all of the subscription's) back in line; how many.
    pub async fn replay(
        &self,
        by: &AdminPrincipal,
        client: &ClientInfo,
        id: Uuid,
        deliveries: Option<Vec<i64>>,
    ) -> Result<u64> {
        self.subscription(id).await?;
        if deliveries.as_ref().is_some_and(|d| d.len() > MAX_REPLAY) {
            return Err(Error::BadUserInput {
                field: "deliveryIds",
                message: format!("at most {MAX_REPLAY} at once"),
            });
        }
        let audit = self.audit(by, client, format!("replayed dead deliveries of {id}"));
        self.store
            .replay(id, deliveries, self.clock.now(), audit)
            .await
    }

    fn seal(&self, id: Uuid, secret: &WebhookSecret) -> Result<Vec<u8>> {
        self.secrets
            .seal(&id.to_string(), secret.expose().as_bytes())
    }
}

/// The sealer of webhook secrets: the use cases seal, the event worker opens.
pub fn secret_sealer(sealing: &[u8]) -> Result<crate::keys::Sealer> {
    crate::keys::Sealer::new(sealing, "webhook secret v1")
}

fn dedup(types: Vec<EventType>) -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|t| types.contains(t))
        .collect()
}

/// Retries: 1 s, 2 s, 4 s … capped at ten minutes, each with up to a fifth more at random (so
/// a receiver back from an outage is not met by every delivery at once).
pub fn backoff(attempts: i32, jitter: f64) -> chrono::Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let base = chrono::Duration::seconds(1i64 << exp).min(chrono::Duration::minutes(10));
    let extra = (base.num_milliseconds() as f64 * jitter.clamp(0.0, 1.0) * 0.2) as i64;
    base + chrono::Duration::milliseconds(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_and_a_ceiling() {
        assert_eq!(backoff(1, 0.0), chrono::Duration::seconds(1));
        assert_eq!(backoff(3, 0.0), chrono::Duration::seconds(4));
        assert_eq!(backoff(3, 1.0), chrono::Duration::milliseconds(4800));
        assert_eq!(backoff(40, 0.0), chrono::Duration::minutes(10));
    }

    #[test]
    fn every_type_and_reason_reads_back() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert!(t.set_uri().ends_with(t.as_str()));
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}

/// A claimed delivery, with what its message says.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: i64,
    pub claim_id: Uuid,
    pub attempts: i32,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub subject_kind: SubjectKind,
    pub subject_id: Uuid,
    pub session: Option<Uuid>,
    pub cause: Cause,
    pub occurred_at: DateTime<Utc>,
    /// Kept only for a subscription allowed email.
    pub email: Option<String>,
    pub new_email: Option<String>,
}
