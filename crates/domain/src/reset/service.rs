//! The password reset use cases: "Forgot Your Password?" and the "New Password" form.

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::store::AccountStore,
    accounts::{Wiring, parse_email},
    admin::{AdminPrincipal, AuditAction, NewAudit},
    customer::ClientInfo,
    email::Email,
    limits::{Check, LimitKey, PrincipalKind, Refused, Rule},
    ports::{MailSignal, NewMail},
    reset::{RawResetToken, ResetLinks, ResetRequest, ResetStore, request_checks},
};

pub struct Resets {
    store: Arc<dyn ResetStore>,
    accounts: Arc<dyn AccountStore>,
    parts: Wiring,
    links: ResetLinks,
    mail: Arc<dyn MailSignal>,
}

fn rate_limited(refused: Refused) -> Error {
    Error::RateLimited {
        retry_after_seconds: refused.retry_after_seconds,
    }
}

impl Resets {
    pub fn new(
        store: Arc<dyn ResetStore>,
        accounts: Arc<dyn AccountStore>,
        parts: Wiring,
        links: ResetLinks,
        mail: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            accounts,
            parts,
            links,
            mail,
        }
    }

    /// "Reset My Password". For every well-formed address the answer, the statements run, the
    /// rows written and the time taken are the same whether or not an account exists: the
    /// request is recorded as it is, and the mail worker finds the account (if any) later. The
    /// mail is never sent here.
    #[tracing::instrument(name = "resets.request", skip_all)]
    pub async fn request(
        &self,
        email: &str,
        redirect_url: Option<&str>,
        client: &ClientInfo,
    ) -> Result<()> {
        let email = parse_email(email)?;
        let redirect = match redirect_url.filter(|u| !u.is_empty()) {
            Some(url) => Some(self.links.check_redirect(url)?),
            None => None,
        };
        let settings = self.parts.settings.current().await?;
        let now = self.parts.clock.now();
        let token = RawResetToken::generate()?;
        let request = ResetRequest {
            link: self.links.build(redirect.as_deref(), &token, &email),
            limits: request_checks(&settings.reset.limit, &email, client),
            email,
            token_hash: token.hash(),
            expires_at: now + settings.reset.link_lifetime,
            now,
            audit: None,
        };
        match self.store.request_reset(request).await? {
            Ok(()) => {
                self.mail.notify();
                Ok(())
            }
            Err(refused) => {
                tracing::info!(
                    event = "password_reset_request_limited",
                    retry_after_seconds = refused.retry_after_seconds
                );
                Err(rate_limited(refused))
            }
        }
    }

    /// The admin's "Reset Password": the same pipeline and mail as the storefront's, limited per
    /// customer (the settings' hourly cap and spacing), audited in the same transaction. The
    /// admin never sees the token or the password.
    #[tracing::instrument(name = "resets.request_for_customer", skip_all)]
    pub async fn request_for_customer(
        &self,
        principal: &AdminPrincipal,
        customer_id: Uuid,
        client: &ClientInfo,
    ) -> Result<()> {
        let customer = self
            .accounts
            .customer_by_id(customer_id)
            .await?
            .ok_or(Error::NotFound)?;
        if customer.frozen_at.is_some() {
            // Which mailbox gets the link is the recovery's decision, made explicitly.
            return Err(Error::bad_input(
                "customerId",
                "the account is frozen pending recovery: recover it (adminRecoverCustomer) first",
            ));
        }
        let settings = self.parts.settings.current().await?;
        let now = self.parts.clock.now();
        let token = RawResetToken::generate()?;
        let limit = &settings.reset.limit;
        let request = ResetRequest {
            link: self.links.build(None, &token, &customer.email),
            limits: vec![Check::new(
                LimitKey::ResetRequestByCustomer(customer_id),
                Rule {
                    max: limit.max_per_hour,
                    window: crate::reset::LIMIT_WINDOW,
                    min_interval: limit.min_interval,
                },
            )],
            email: customer.email.clone(),
            token_hash: token.hash(),
            expires_at: now + settings.reset.link_lifetime,
            now,
            audit: Some(
                NewAudit::by(principal, AuditAction::AdminResetPassword, now, client)
                    .about(customer_id),
            ),
        };
        match self.store.request_reset(request).await? {
            Ok(()) => {
                self.mail.notify();
                tracing::info!(event = "admin_reset_password", admin_id = %principal.admin.id, customer_id = %customer_id);
                Ok(())
            }
            Err(refused) => Err(rate_limited(refused)),
        }
    }

    /// "Reset Password" on the New Password form. The token alone names the account; `email`,
    /// when given, must match it. Success signs the customer out everywhere, clears lockout,
    /// voids other links and queues a "password changed" notice. It never signs in.
    #[tracing::instrument(name = "resets.reset", skip_all)]
    pub async fn reset(
        &self,
        email: Option<&str>,
        token: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.parts.clock.now();
        let lookup = async {
            let stored = match RawResetToken::parse(token) {
                Some(raw) => self.store.find_reset_token(&raw.hash()).await?,
                None => None,
            };
            match stored {
                None => Err(Error::ResetTokenInvalid),
                Some(t) if t.used_at.is_some() || t.superseded_at.is_some() => {
                    Err(Error::ResetTokenInvalid)
                }
                Some(t) if t.expires_at <= now => Err(Error::ResetTokenExpired),
                Some(t) => match email.map(Email::parse) {
                    Some(Ok(e)) if e.key() != t.email_key => Err(Error::ResetTokenInvalid),
                    Some(Err(_)) => Err(Error::ResetTokenInvalid),
                    _ => Ok(t),
                },
            }
        };
        let token = match self.parts.redeem_link(client, lookup).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(event = "password_reset_refused", reason = %e);
                return Err(e);
            }
        };
        let customer = self
            .accounts
            .customer_by_id(token.customer_id)
            .await?
            .filter(|c| c.email.key() == token.email_key)
            .ok_or(Error::ResetTokenInvalid)?;
        let settings = self.parts.settings.current().await?;
        // A policy failure does not use the link up: the customer can try another password.
        let password = self.parts.new_password(
            new,
            &settings.password,
            &[
                customer.email.local_part(),
                &customer.firstname,
                &customer.lastname,
            ],
        )?;
        let hash = self.parts.hasher.hash(&password).await?;
        let notice = NewMail::password_changed(&customer, now);
        if !self
            .store
            .complete_reset(token.id, customer.id, hash, now, notice)
            .await?
        {
            return Err(Error::ResetTokenInvalid);
        }
        self.mail.notify();
        // The reset cleared the lock; the guesses that led to it stop counting too.
        self.parts
            .sign_in
            .forget_failures(PrincipalKind::Customer, customer.email.key())
            .await?;
        tracing::info!(event = "password_reset_completed", customer_id = %customer.id);
        Ok(())
    }
}
