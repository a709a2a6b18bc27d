//! Changing a customer's email address. The reset email goes to the stored address, so who can
//! change it decides who can take the account over; the rules:
//!
//! - asking takes the current password (checked like a sign-in: same limits, a wrong one
//!   counts), so a stolen session alone cannot move the account to another address;
//! - the change applies only when the *new* address confirms, through a single-use link (its
//!   SHA-256 alone is stored) that lives as long as a reset link;
//! - the *old* address is told at once, with a "this wasn't me" link: it cancels the change
//!   and every change asked for after it, signs every device out and voids the password, which
//!   whoever asked knew. Before the confirmation the owner then sets a new password with
//!   "Forgot Your Password?". Once a change is confirmed the link works for a shorter window
//!   ([`DEFAULT_REVERT_WINDOW`]), and using it *freezes* the account: the address from before
//!   comes back (while no other account has taken it), but no reset link is issued until an
//!   admin recovers the account, or the address being removed agrees: it is told, with a link
//!   that gives the account back to the address from before ([`EmailChanges::release`]).
//!   People change address because they lose the old mailbox; whoever reads it later must not
//!   get the account by clicking a link alone;
//! - a newer request supersedes an older one; applying a change voids outstanding reset links.
//!
//! The tokens are [`RawResetToken`]s by shape (256 random bits), kept in a table of their own,
//! so no email-change token can ever be used as a reset token or the other way round.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::{CustomerPrincipal, Wiring, parse_email_field},
    customer::Customer,
    email::Email,
    kernel::client::ClientInfo,
    limits::{Check, ClientKey, LimitKey, PrincipalKind, Rule},
    password::PasswordCandidate,
    ports::{MailKind, MailSignal, NewMail},
    reset::{LOCALE_PLACEHOLDER, RawResetToken},
};

/// How long the old address's "this wasn't me" link works: well past the confirmation link's
/// lifetime, so an owner who reads the notice days later can still undo a confirmed change.
pub const CANCEL_WINDOW: Duration = Duration::days(7);
/// How long the "this wasn't me" link works once the change is confirmed (at most; never
/// longer than [`CANCEL_WINDOW`] from the request). `LATCHKEY_EMAIL_CHANGE_REVERT_HOURS`.
pub const DEFAULT_REVERT_WINDOW: Duration = Duration::hours(48);
/// Email-change requests per customer per hour (each sends two messages).
pub const MAX_REQUESTS_PER_HOUR: u32 = 5;
/// Email-change requests per client address per hour, over every account.
pub const MAX_REQUESTS_PER_CLIENT_PER_HOUR: u32 = 10;

/// A change about to be recorded with its two messages.
#[derive(Debug, Clone)]
pub struct NewEmailChange {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub old_email: Email,
    pub new_email: Email,
    pub confirm_hash: String,
    pub cancel_hash: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub cancel_until: DateTime<Utc>,
    /// To the new address, with the confirmation link.
    pub confirm_mail: NewMail,
    /// To the old address, with the cancel link.
    pub notice_mail: NewMail,
}

/// A recorded change, found by one of its hashes.
#[derive(Debug, Clone)]
pub struct StoredEmailChange {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub cancel_until: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
    /// Until when the removed address's "give it back" link works (a frozen account only).
    pub release_until: Option<DateTime<Utc>>,
}

/// Which of a change's two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailChangeLink {
    Confirm,
    Cancel,
    /// To the address a "this wasn't me" removed: it agrees to give the account back.
    Release,
}

/// The link offered to the address a "this wasn't me" removes, should it freeze the account:
/// following it, that address agrees to give the account back to the address from before.
#[derive(Debug, Clone)]
pub struct ReleaseOffer {
    pub hash: String,
    /// The full link (it carries the raw token): kept in the outbox row until sent.
    pub link: String,
    pub until: DateTime<Utc>,
}

/// What the removed address's agreement came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Released,
    /// Used already, or the account was recovered (or frozen again) meanwhile.
    Gone,
}

/// What a "this wasn't me" came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Already cancelled (or the window closed meanwhile): nothing changed.
    Gone,
    /// No change it undid had been confirmed: the account never left the address.
    Stopped,
    /// It undid a confirmed change: the account is frozen until an admin recovers it.
    Frozen,
}

/// What an admin's recovery of a frozen account came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    Recovered(Customer),
    /// The account is not frozen: nothing to recover.
    NotFrozen,
    /// Another account has the address the admin chose.
    EmailTaken,
    NotFound,
}

/// What applying a confirmed change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed(Customer),
    /// Another account took the new address meanwhile; nothing changed.
    EmailTaken,
    /// A concurrent use of the link (or a cancel) won; nothing changed.
    Gone,
}

#[async_trait]
pub trait EmailChangeStore: Send + Sync {
    /// In one transaction: refuses (`Ok(false)`) when an account has the new address;
    /// otherwise supersedes the customer's pending changes, records this one and queues both
    /// messages.
    async fn request_email_change(&self, change: NewEmailChange) -> Result<bool>;
    async fn find_email_change(
        &self,
        token_hash: &str,
        link: EmailChangeLink,
    ) -> Result<Option<StoredEmailChange>>;
    /// In one transaction, only if the change is still pending: the customer gets the new
    /// address (and its search text), outstanding reset links are voided, and the change is
    /// marked confirmed.
    /// The cancel link then works until `revert_until` at the latest. Refused (`Gone`) once
    /// the account's password was changed or voided after the request.
    async fn confirm_email_change(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        revert_until: DateTime<Utc>,
    ) -> Result<Applied>;
    /// In one transaction, only if not cancelled yet: marks the change and every later change
    /// of the customer cancelled, puts back the address from before the change if the account
    /// is elsewhere now and no other account has that address since, voids the password,
    /// revokes every live session of the customer and voids outstanding reset links and
    /// pending email changes. When one of the changes it undid was confirmed, it also freezes
    /// the account and queues `frozen_notice` (rendered for the address being removed).
    /// The frozen account's notice carries `offer`'s link, and the change keeps its hash.
    async fn cancel_email_change(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        offer: ReleaseOffer,
    ) -> Result<Cancelled>;
    /// The removed address agreed, in one transaction with its audit entry: once only, and
    /// only while the account is still frozen by this change's revert, unfreezes it at the
    /// address it has (the password stays void: its owner sets one with "Forgot Your
    /// Password?") and voids reset links.
    async fn release_frozen(
        &self,
        change_id: Uuid,
        now: DateTime<Utc>,
        audit: crate::admin::NewAudit,
    ) -> Result<Released>;
    /// An admin's recovery of a frozen account, in one transaction with its audit entry:
    /// unfreezes it, moves it to `email` when given (refused when another account has or
    /// holds that address), and voids reset links. The password stays void: the admin sends
    /// a reset link next, to the address the account now has.
    async fn recover_frozen(
        &self,
        customer_id: Uuid,
        email: Option<Email>,
        now: DateTime<Utc>,
        audit: crate::admin::NewAudit,
    ) -> Result<Recovered>;
}

/// Where the two links point: templates with `{token}` (and optionally `{locale}`).
#[derive(Debug, Clone)]
pub struct EmailChangeLinks {
    pub confirm: String,
    pub cancel: String,
    pub release: String,
}

impl EmailChangeLinks {
    /// The built-in storefront pages under `public_url`.
    pub fn under(public_url: &str) -> Self {
        Self {
            confirm: format!(
                "{public_url}/account/confirm-email?token={{token}}&lang={LOCALE_PLACEHOLDER}"
            ),
            cancel: format!(
                "{public_url}/account/cancel-email-change?token={{token}}&lang={LOCALE_PLACEHOLDER}"
            ),
            release: format!(
                "{public_url}/account/release-account?token={{token}}&lang={LOCALE_PLACEHOLDER}"
            ),
        }
    }
}

pub struct EmailChanges {
    store: Arc<dyn EmailChangeStore>,
    parts: Wiring,
    links: EmailChangeLinks,
    mail: Arc<dyn MailSignal>,
    revert_window: Duration,
}

impl EmailChanges {
    pub fn new(
        store: Arc<dyn EmailChangeStore>,
        parts: Wiring,
        links: EmailChangeLinks,
        mail: Arc<dyn MailSignal>,
        revert_window: Duration,
    ) -> Self {
        Self {
            store,
            parts,
            links,
            mail,
            revert_window,
        }
    }

    /// `requestCustomerEmailChange`: checks the current password, then records the change and
    /// mails both addresses. Nothing about the account changes until the new address confirms.
    #[tracing::instrument(name = "email_change.request", skip_all)]
    pub async fn request(
        &self,
        principal: &CustomerPrincipal,
        new_email: &str,
        current_password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let customer = &principal.customer;
        let new_email = parse_email_field("newEmail", new_email)?;
        if new_email.key() == customer.email.key() {
            return Err(Error::bad_input(
                "newEmail",
                "is already this account's email address",
            ));
        }
        let candidate =
            PasswordCandidate::parse(current_password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.parts.settings.current().await?;
        self.parts
            .sign_in
            .verify(
                PrincipalKind::Customer,
                customer.email.key(),
                &candidate,
                client,
                &settings,
            )
            .await?;
        let now = self.parts.clock.now();
        // A taken address counts too: the answer must not become a free address oracle. It
        // says what `createCustomer` says, so it spends the client's registration budget as
        // well: many accounts' hourly budgets cannot add up to more questions than
        // registering would answer.
        let limit = [
            Check::new(
                LimitKey::EmailChangeByCustomer(customer.id),
                Rule::per(MAX_REQUESTS_PER_HOUR, Duration::hours(1)),
            ),
            Check::new(
                LimitKey::EmailChangeByIp(ClientKey::of(client)),
                Rule::per(MAX_REQUESTS_PER_CLIENT_PER_HOUR, Duration::hours(1)),
            ),
            Check::new(
                LimitKey::RegistrationByIp(ClientKey::of(client)),
                Rule::per(
                    settings.clients.registrations_per_ip_per_hour,
                    Duration::hours(1),
                ),
            ),
        ];
        self.parts.spend(&limit, now).await?;
        let confirm = RawResetToken::generate()?;
        let cancel = RawResetToken::generate()?;
        let expires_at = now + settings.reset.link_lifetime;
        let cancel_until = now + CANCEL_WINDOW.max(settings.reset.link_lifetime);
        let link =
            |template: &str, token: &RawResetToken| template.replace("{token}", token.expose());
        let change = NewEmailChange {
            id: Uuid::now_v7(),
            customer_id: customer.id,
            old_email: customer.email.clone(),
            new_email: new_email.clone(),
            confirm_hash: confirm.hash(),
            cancel_hash: cancel.hash(),
            now,
            expires_at,
            cancel_until,
            confirm_mail: NewMail {
                id: Uuid::now_v7(),
                kind: MailKind::EmailChangeConfirm,
                customer_id: Some(customer.id),
                recipient: new_email.as_str().to_owned(),
                locale: customer.locale,
                created_at: now,
                link: Some((link(&self.links.confirm, &confirm), expires_at)),
            },
            notice_mail: NewMail {
                id: Uuid::now_v7(),
                kind: MailKind::EmailChangeNotice,
                customer_id: Some(customer.id),
                recipient: customer.email.as_str().to_owned(),
                locale: customer.locale,
                created_at: now,
                link: Some((link(&self.links.cancel, &cancel), cancel_until)),
            },
        };
        if !self.store.request_email_change(change).await? {
            // Said exactly as `createCustomer` says it, and no more.
            return Err(Error::bad_input(
                "newEmail",
                "an account with this email address already exists",
            ));
        }
        self.mail.notify();
        tracing::info!(event = "email_change_requested", customer_id = %customer.id);
        Ok(())
    }

    /// `confirmCustomerEmailChange`: the new address's link. Works once, while the change is
    /// pending and the link is within its lifetime.
    #[tracing::instrument(name = "email_change.confirm", skip_all)]
    pub async fn confirm(&self, token: &str, client: &ClientInfo) -> Result<Customer> {
        let now = self.parts.clock.now();
        let lookup = async {
            let change = self.find(token, EmailChangeLink::Confirm).await?;
            if change.confirmed_at.is_some()
                || change.cancelled_at.is_some()
                || change.superseded_at.is_some()
            {
                return Err(Error::LinkInvalid);
            }
            if now >= change.expires_at {
                return Err(Error::LinkExpired);
            }
            Ok(change)
        };
        let change = self.parts.redeem_link(client, lookup).await?;
        let revert_until = now + self.revert_window;
        match self
            .store
            .confirm_email_change(change.id, now, revert_until)
            .await?
        {
            Applied::Changed(customer) => {
                tracing::info!(event = "email_changed", customer_id = %customer.id);
                Ok(customer)
            }
            Applied::EmailTaken => Err(Error::bad_input(
                "newEmail",
                "an account with this email address already exists",
            )),
            Applied::Gone => Err(Error::LinkInvalid),
        }
    }

    /// `cancelCustomerEmailChange`: the old address's "this wasn't me" link.
    #[tracing::instrument(name = "email_change.cancel", skip_all)]
    pub async fn cancel(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let change = self.find(token, EmailChangeLink::Cancel).await?;
            if change.cancelled_at.is_some() {
                return Err(Error::LinkInvalid);
            }
            if now >= change.cancel_until {
                return Err(Error::LinkExpired);
            }
            Ok(change)
        };
        let change = self.parts.redeem_link(client, lookup).await?;
        let release = RawResetToken::generate()?;
        let offer = ReleaseOffer {
            hash: release.hash(),
            link: self.links.release.replace("{token}", release.expose()),
            until: now + CANCEL_WINDOW,
        };
        match self
            .store
            .cancel_email_change(change.id, now, offer)
            .await?
        {
            Cancelled::Gone => return Err(Error::LinkInvalid),
            Cancelled::Stopped => {
                tracing::info!(event = "email_change_cancelled", customer_id = %change.customer_id);
            }
            Cancelled::Frozen => {
                self.mail.notify();
                tracing::info!(event = "account_frozen", customer_id = %change.customer_id);
            }
        }
        Ok(())
    }

    /// `releaseCustomerAccount`: the address a "this wasn't me" removed from a frozen account
    /// agrees that the account goes back to the address it has now (the one from before the
    /// change). Its holder set the change off or lost the race; either way both addresses
    /// now agree, so the account unfreezes there without an admin, its password still void.
    /// Audited (the actor is the customer). Works once, for [`CANCEL_WINDOW`].
    #[tracing::instrument(name = "email_change.release", skip_all)]
    pub async fn release(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let change = self.find(token, EmailChangeLink::Release).await?;
            match change.release_until {
                None => Err(Error::LinkInvalid),
                Some(until) if now >= until => Err(Error::LinkExpired),
                Some(_) => Ok(change),
            }
        };
        let change = self.parts.redeem_link(client, lookup).await?;
        let audit = crate::admin::NewAudit::by_customer(
            change.customer_id,
            crate::admin::AuditAction::ReleaseFrozenAccount,
            now,
        )
        .from_ip(client.ip.map(|ip| ip.to_string()))
        .detail("the address it had moved to gave it back");
        match self.store.release_frozen(change.id, now, audit).await? {
            Released::Released => {
                tracing::info!(event = "account_released", customer_id = %change.customer_id);
                Ok(())
            }
            Released::Gone => Err(Error::LinkInvalid),
        }
    }

    /// `adminRecoverCustomer` (CUSTOMERS_RECOVER, checked by the caller): an admin who has
    /// checked who owns a frozen account unfreezes it, at its current address or at `email`.
    #[tracing::instrument(name = "email_change.recover", skip_all)]
    pub async fn recover(
        &self,
        principal: &crate::admin::AdminPrincipal,
        customer_id: Uuid,
        email: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Customer> {
        let email = email.map(|e| parse_email_field("email", e)).transpose()?;
        let now = self.parts.clock.now();
        let audit = crate::admin::NewAudit::by(
            principal,
            crate::admin::AuditAction::RecoverCustomer,
            now,
            client,
        )
        .about(customer_id)
        .detail(if email.is_some() {
            "moved to the address the admin chose"
        } else {
            "kept at its current address"
        });
        match self
            .store
            .recover_frozen(customer_id, email, now, audit)
            .await?
        {
            Recovered::Recovered(customer) => {
                tracing::info!(event = "account_recovered", admin_id = %principal.admin.id, customer_id = %customer_id);
                Ok(customer)
            }
            Recovered::NotFrozen => Err(Error::bad_input(
                "customerId",
                "the account is not frozen: there is nothing to recover",
            )),
            Recovered::EmailTaken => Err(Error::bad_input(
                "email",
                "an account with this email address already exists",
            )),
            Recovered::NotFound => Err(Error::NotFound),
        }
    }

    async fn find(&self, token: &str, link: EmailChangeLink) -> Result<StoredEmailChange> {
        let token = RawResetToken::parse(token).ok_or(Error::LinkInvalid)?;
        self.store
            .find_email_change(&token.hash(), link)
            .await?
            .ok_or(Error::LinkInvalid)
    }
}
