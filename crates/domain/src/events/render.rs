//! What a receiver gets: a Standard Webhooks message or a Security Event Token, each signed.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::Mac;
use serde_json::{Value, json};

use super::{EventFormat, EventType, Outgoing, Subscription};
use crate::{Error, Result, token::TokenCodec};

const SECRET_PREFIX: &str = "whsec_";
/// The SSF verification event: what a test sends a SET receiver.
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// The webhook type of a test.
const WEBHOOK_TEST: &str = "latchkey.test";

/// A subscription's Standard Webhooks secret (`whsec_` and 32 random bytes in base64): shown
/// once to the administrator, stored sealed. Its `Debug` says nothing.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<secret>)")
    }
}

impl WebhookSecret {
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        Ok(Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(key))))
    }

    /// A secret as stored (opened from its seal).
    pub fn from_stored(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the secret's bytes.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> Result<String> {
        let key = STANDARD
            .decode(self.0.strip_prefix(SECRET_PREFIX).unwrap_or(&self.0))
            .map_err(|_| Error::internal("a webhook secret is not base64"))?;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key)
            .map_err(|_| Error::internal("HMAC key"))?;
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        Ok(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ))
    }
}

/// Signs Security Event Tokens (the access tokens' codec: the current key, its `kid`).
pub trait SetSigner: Send + Sync {
    fn sign_set(&self, claims: &Value, now: DateTime<Utc>) -> Result<String>;
}

impl SetSigner for TokenCodec {
    fn sign_set(&self, claims: &Value, now: DateTime<Utc>) -> Result<String> {
        self.sign_event(claims, now)
            .map_err(|e| Error::internal(format!("{e:?}")))
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// What the event says about its subject and cause, the same in both formats.
fn facts(d: &Outgoing, include_email: bool) -> Value {
    let mut subject = json!({"kind": d.subject_kind.as_str(), "id": d.subject_id.to_string()});
    if include_email && let Some(email) = &d.email {
        subject["email"] = json!(email);
    }
    let mut data = json!({
        "event_id": d.event_id.to_string(),
        "subject": subject,
        "reason": d.cause.reason.as_str(),
        "actor": d.cause.actor.as_str(),
        "occurred_at": d.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if let Some(session) = d.session {
        data["session_id"] = json!(session.to_string());
    }
    if include_email && let Some(new) = &d.new_email {
        data["new_email"] = json!(new);
    }
    data
}

/// The SET's subject: the token's own issuer and subject (what a receiver verifying access
/// tokens with the JWKS keys its sessions by), and the one session when only one ended.
fn set_subject(d: &Outgoing) -> Value {
    let mut subject = json!({
        "format": "complex",
        "user": {"format": "iss_sub", "iss": crate::token::ISSUER, "sub": d.subject_id.to_string()},
    });
    if let Some(session) = d.session {
        subject["session"] = json!({"format": "opaque", "id": session.to_string()});
    }
    subject
}

fn set_event(d: &Outgoing, include_email: bool) -> Value {
    let mut event = json!({
        "event_timestamp": d.occurred_at.timestamp(),
        "initiating_entity": d.cause.actor.as_str(),
        "reason_admin": {"en": d.cause.reason.explained()},
    });
    match d.event_type {
        EventType::CredentialChange => {
            event["credential_type"] = json!(match d.cause.reason {
                super::Reason::FactorsReset | super::Reason::FactorChanged => "app",
                _ => "password",
            });
            event["change_type"] = json!(match d.cause.reason {
                super::Reason::ReportedNotMe | super::Reason::NewPasswordRequired => "revoke",
                super::Reason::FactorsReset | super::Reason::FactorChanged => "delete",
                _ => "update",
            });
        }
        EventType::AccountDisabled if d.cause.reason == super::Reason::Frozen => {
            event["reason"] = json!("hijacking");
        }
        EventType::IdentifierChanged if include_email => {
            if let Some(new) = &d.new_email {
                event["new-value"] = json!(new);
            }
        }
        _ => {}
    }
    event
}

/// The request for one delivery, signed: `issuer` is this server's public URL (the SET's
/// `iss`), `now` the send time (each attempt signs anew; the event id stays).
pub fn render(
    d: &Outgoing,
    subscription: &Subscription,
    secret: Option<&WebhookSecret>,
    signer: &dyn SetSigner,
    issuer: &str,
    now: DateTime<Utc>,
) -> Result<Rendered> {
    let include_email = subscription.include_email;
    match subscription.format {
        EventFormat::StandardWebhooks => {
            let secret = secret.ok_or_else(|| Error::internal("a webhook without a secret"))?;
            let kind = if d.cause.reason == super::Reason::Test {
                WEBHOOK_TEST
            } else {
                d.event_type.webhook_type()
            };
            let body = json!({
                "type": kind,
                "timestamp": d.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": facts(d, include_email),
            })
            .to_string();
            let id = d.event_id.to_string();
            let timestamp = now.timestamp();
            let signature = secret.sign(&id, timestamp, &body)?;
            Ok(Rendered {
                content_type: "application/json",
                headers: vec![
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ],
                body,
            })
        }
        EventFormat::SsfSet if d.cause.reason == super::Reason::Test => {
            let claims = json!({
                "iss": issuer,
                "jti": d.event_id.to_string(),
                "iat": now.timestamp(),
                "aud": subscription.audience(),
                "sub_id": {"format": "opaque", "id": subscription.id.to_string()},
                "events": {VERIFICATION: {"state": d.event_id.to_string()}},
            });
            Ok(Rendered {
                content_type: "application/secevent+jwt",
                headers: vec![("accept", "application/json".to_owned())],
                body: signer.sign_set(&claims, now)?,
            })
        }
        EventFormat::SsfSet => {
            let mut claims = json!({
                "iss": issuer,
                "jti": d.event_id.to_string(),
                "iat": now.timestamp(),
                "aud": subscription.audience(),
                "sub_id": set_subject(d),
                "events": {d.event_type.set_uri(): set_event(d, include_email)},
            });
            if include_email && let Some(email) = &d.email {
                claims["email"] = json!(email);
            }
            // Which kind of account: the audience of the subject's access tokens.
            claims["events"][d.event_type.set_uri()]["subject_token_audience"] =
                json!(d.subject_kind.token_audience());
            Ok(Rendered {
                content_type: "application/secevent+jwt",
                headers: vec![("accept", "application/json".to_owned())],
                body: signer.sign_set(&claims, now)?,
            })
        }
    }
}

/// `/.well-known/ssf-configuration`: the transmitter's metadata (OpenID SSF 1.0). Streams are
/// managed on the Integrations page (or its GraphQL), not through a stream-management endpoint.
pub fn ssf_configuration(issuer: &str) -> Value {
    json!({
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "delivery_methods_supported": ["urn:ietf:rfc:8935"],
        "critical_subject_members": ["user"],
        "default_subjects": "ALL",
        "events_supported": EventType::ALL.iter().map(|t| t.set_uri()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example: this secret, id, timestamp and
    /// body sign to this signature.
    #[test]
    fn webhook_signatures_match_the_specifications_example() {
        let secret = WebhookSecret::from_stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret
                .sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
                .unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
