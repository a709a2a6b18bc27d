//! "This wasn't me" on every security mail: the reset mail (link, code, or both), the sign-in
//! code mail and the "password changed" notice carry a link that, with one button (opening it changes nothing),
//! secures the account at once:
//!
//! - every session is revoked and the password voided (whoever set off the mail may know it);
//! - outstanding reset links and codes die, and pending email changes are superseded;
//! - the account is marked *reported* for the store's staff (the grid's `reportedAt`, an audit
//!   entry with the customer as actor);
//! - the customer gets one mail with the next step: a fresh "Forgot Your Password?" from the
//!   same address (the mailbox that reported is the one that gets the link), or the store's
//!   support. A password set by that reset clears the mark.
//!
//! (The email-change notice's "this wasn't me" is its cancel link, which does the same and
//! more: `email_change`.)
//!
//! The link names the mail it came in (the outbox row's id) with an HMAC-SHA256 under a key
//! derived from the server's secret: nothing is stored for it, it cannot be forged for another
//! mail, and it works as long as the sent mail's row is kept (a week).

use std::sync::Arc;

use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::Mac;
use uuid::Uuid;

use crate::keys::MacKey;
use crate::{
    Error, Result,
    accounts::Wiring,
    admin::{AuditAction, NewAudit},
    customer::Customer,
    kernel::client::ClientInfo,
    ports::{MailKind, MailSignal, NewMail},
};

/// The mail kinds that carry the link.
pub const REPORTABLE: [MailKind; 5] = [
    MailKind::PasswordReset,
    MailKind::PasswordChanged,
    MailKind::SignInCode,
    MailKind::BreachedPassword,
    MailKind::SignInLocked,
];

/// How long the unlock link of a mail about wrong passwords works.
pub const UNLOCK_LINK_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// One kind of link in a security mail: a MAC (under a key of its own) of the mail's outbox id.
#[derive(Clone)]
struct SignedLink {
    key: MacKey,
    /// `…/account/<page>?token={token}`.
    template: String,
}

impl SignedLink {
    /// The key is derived from `secret` (the server's own, at least 32 bytes) with HKDF, under
    /// `label`, so it is no other key.
    fn new(secret: &[u8], label: &str, public_url: &str, page: &str) -> Result<Self> {
        Ok(Self {
            key: MacKey::derive(secret, label)?,
            template: format!(
                "{}/account/{page}?token={{token}}",
                public_url.trim_end_matches('/')
            ),
        })
    }

    /// The token for the mail with this outbox id: the id and its MAC, 64 URL-safe characters.
    fn token(&self, message_id: Uuid) -> String {
        let mut mac = self.key.mac();
        mac.update(message_id.as_bytes());
        let mut bytes = message_id.as_bytes().to_vec();
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn link(&self, message_id: Uuid) -> String {
        self.template.replace("{token}", &self.token(message_id))
    }

    /// The mail a token names, if its MAC is right (checked in constant time).
    fn open(&self, token: &str) -> Option<Uuid> {
        if token.len() != 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (id, tag) = bytes.split_at_checked(16)?;
        let mut mac = self.key.mac();
        mac.update(id);
        mac.verify_slice(tag).ok()?;
        Uuid::from_slice(id).ok()
    }
}

/// Builds and checks the links of security mails: "this wasn't me" (every [`REPORTABLE`]
/// mail) and "unlock" (the mail about wrong passwords, [`MailKind::SignInLocked`]), each under
/// its own key, so one never opens as the other. `Debug` never shows the keys.
#[derive(Clone)]
pub struct ReportLinks {
    not_me: SignedLink,
    unlock: SignedLink,
}

impl std::fmt::Debug for ReportLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportLinks(<key>)")
    }
}

impl ReportLinks {
    pub fn new(secret: &[u8], public_url: &str) -> Result<Self> {
        Ok(Self {
            not_me: SignedLink::new(secret, "this-wasn't-me links v1", public_url, "not-me")?,
            unlock: SignedLink::new(secret, "sign-in unlock links v1", public_url, "unlock")?,
        })
    }

    /// The "this wasn't me" token for the mail with this outbox id.
    pub fn token(&self, message_id: Uuid) -> String {
        self.not_me.token(message_id)
    }

    pub fn link(&self, message_id: Uuid) -> String {
        self.not_me.link(message_id)
    }

    /// The mail a "this wasn't me" token names, if its MAC is right.
    pub fn open(&self, token: &str) -> Option<Uuid> {
        self.not_me.open(token)
    }

    /// The unlock token for the mail with this outbox id.
    pub fn unlock_token(&self, message_id: Uuid) -> String {
        self.unlock.token(message_id)
    }

    pub fn unlock_link(&self, message_id: Uuid) -> String {
        self.unlock.link(message_id)
    }

    /// The mail an unlock token names, if its MAC is right.
    pub fn open_unlock(&self, token: &str) -> Option<Uuid> {
        self.unlock.open(token)
    }
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    /// The customer a sent or queued mail of a [`REPORTABLE`] kind went to, and when the mail
    /// was queued, if the mail's row is still kept and the customer exists.
    async fn reported_mail(&self, message_id: Uuid) -> Result<Option<(Customer, DateTime<Utc>)>>;

    /// In one transaction: voids the password, marks the account reported, revokes every
    /// session, voids outstanding reset links and codes (and requests not resolved yet),
    /// supersedes pending email changes, writes `audit` and queues `notice`. The number of
    /// sessions revoked.
    async fn report_account(
        &self,
        customer_id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
        notice: NewMail,
    ) -> Result<u64>;

    /// Clears the customer's failure count and noted lock and writes `audit`, in one
    /// transaction; the customer's sign-in name (email key), or `None` when there is no such
    /// customer.
    async fn unlock_customer(&self, customer_id: Uuid, audit: NewAudit) -> Result<Option<String>>;
}

pub struct Reports {
    store: Arc<dyn ReportStore>,
    parts: Wiring,
    links: ReportLinks,
    mail: Arc<dyn MailSignal>,
}

impl Reports {
    pub fn new(
        store: Arc<dyn ReportStore>,
        parts: Wiring,
        links: ReportLinks,
        mail: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            parts,
            links,
            mail,
        }
    }

    /// "This wasn't me" from a security mail. The token is looked up under the client's
    /// budget of invalid links, like every emailed link. Using it again later secures the
    /// account again (the same mailbox, the same request): never an error a mail scanner
    /// could learn from.
    #[tracing::instrument(name = "reports.report", skip_all)]
    pub async fn report(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let id = self.links.open(token).ok_or(Error::LinkInvalid)?;
            self.store
                .reported_mail(id)
                .await?
                .ok_or(Error::LinkInvalid)
        };
        let (customer, mailed_at) = self.parts.redeem_link(client, lookup).await?;
        if mailed_at < customer.password_changed_at {
            // A mail from before the password the customer has set since: the account is
            // theirs again, and an old mail must not void their new password. Answered alike.
            tracing::info!(event = "account_report_stale", customer_id = %customer.id);
            return Ok(());
        }
        let audit = NewAudit::by_customer(customer.id, AuditAction::ReportedNotMe, now)
            .from_ip(client.ip.map(|ip| ip.to_string()))
            .detail("\"this wasn't me\" from a security mail: signed out, password voided");
        let notice = NewMail::account_reported(&customer, now);
        let revoked = self
            .store
            .report_account(customer.id, now, audit, notice)
            .await?;
        self.mail.notify();
        tracing::info!(event = "account_reported", customer_id = %customer.id, revoked);
        Ok(())
    }
}

impl Reports {
    /// "Unlock" from the mail about wrong passwords ([`MailKind::SignInLocked`]), within
    /// [`UNLOCK_LINK_LIFETIME`] of it: the network of the browser that opens it is no longer
    /// locked out. Only that one: the mail goes out *because* of an attack, and a customer who
    /// unlocks without thinking must not lift the attacker's networks' locks or the challenge
    /// (an admin's Unlock, after checking who calls, clears them all). Using it again is
    /// answered alike.
    /// LINK_INVALID / LINK_EXPIRED otherwise, counted against the client's budget of invalid
    /// links like every emailed link.
    #[tracing::instrument(name = "reports.unlock", skip_all)]
    pub async fn unlock(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let id = self.links.open_unlock(token).ok_or(Error::LinkInvalid)?;
            let (customer, mailed_at) = self
                .store
                .reported_mail(id)
                .await?
                .ok_or(Error::LinkInvalid)?;
            if mailed_at + UNLOCK_LINK_LIFETIME <= now {
                return Err(Error::LinkExpired);
            }
            Ok(customer)
        };
        let customer = self.parts.redeem_link(client, lookup).await?;
        let audit = NewAudit::by_customer(customer.id, AuditAction::UnlockCustomer, now)
            .from_ip(client.ip.map(|ip| ip.to_string()))
            .detail("unlocked from the mail about wrong passwords");
        let Some(login) = self.store.unlock_customer(customer.id, audit).await? else {
            return Err(Error::LinkInvalid);
        };
        let settings = self.parts.settings.current().await?;
        self.parts
            .sign_in
            .forget_failures_from(
                crate::limits::PrincipalKind::Customer,
                &login,
                client,
                &settings,
            )
            .await?;
        tracing::info!(event = "customer_unlocked_by_mail", customer_id = %customer.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_under_its_key_and_only_whole() {
        let links = ReportLinks::new(&[7u8; 32], "https://shop.example/").unwrap();
        let id = Uuid::now_v7();
        let token = links.token(id);
        assert_eq!(token.len(), 64);
        assert_eq!(links.open(&token), Some(id));
        assert_eq!(
            links.link(id),
            format!("https://shop.example/account/not-me?token={token}")
        );
        let other = ReportLinks::new(&[8u8; 32], "https://shop.example").unwrap();
        assert_eq!(other.open(&token), None, "another server's key");
        let mut forged = URL_SAFE_NO_PAD.decode(&token).unwrap();
        forged[0] ^= 1;
        assert_eq!(
            links.open(&URL_SAFE_NO_PAD.encode(forged)),
            None,
            "another mail"
        );
        assert_eq!(links.open(&token[..63]), None);
        // The unlock link of the same mail is another token, which opens only as one.
        let unlock = links.unlock_token(id);
        assert_ne!(unlock, token);
        assert_eq!(links.open_unlock(&unlock), Some(id));
        assert_eq!(links.open(&unlock), None);
        assert_eq!(links.open_unlock(&token), None);
        assert_eq!(
            links.unlock_link(id),
            format!("https://shop.example/account/unlock?token={unlock}")
        );
        assert_eq!(links.open(""), None);
        assert_eq!(format!("{links:?}"), "ReportLinks(<key>)");
    }
}
