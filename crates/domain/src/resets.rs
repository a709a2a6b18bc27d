//! The password reset use cases: "Forgot Your Password?" and the "New Password" form.

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::{new_password, parse_email},
    admin::{AdminPrincipal, AuditAction, NewAudit},
    clock::Clock,
    customer::ClientInfo,
    email::Email,
    ports::{
        AccountStore, MailSignal, NewMail, PasswordHasher, ResetRequest, ResetStore, SettingsSource,
    },
    reset::{FAILURE_WINDOW, MAX_INVALID_RESETS, RawResetToken, ResetLinks, limit_keys},
    settings::{LimitMethod, ResetLimit},
};

pub struct Resets {
    store: Arc<dyn ResetStore>,
    accounts: Arc<dyn AccountStore>,
    hasher: Arc<dyn PasswordHasher>,
    settings: Arc<dyn SettingsSource>,
    clock: Arc<dyn Clock>,
    links: ResetLinks,
    mail: Arc<dyn MailSignal>,
}

impl Resets {
    pub fn new(
        store: Arc<dyn ResetStore>,
        accounts: Arc<dyn AccountStore>,
        hasher: Arc<dyn PasswordHasher>,
        settings: Arc<dyn SettingsSource>,
        clock: Arc<dyn Clock>,
        links: ResetLinks,
        mail: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            accounts,
            hasher,
            settings,
            clock,
            links,
            mail,
        }
    }

    /// "Reset My Password". For every well-formed address the answer, the statements run and
    /// the time taken are the same whether or not an account exists; the mail is queued, never
    /// sent here.
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
        let settings = self.settings.current().await?;
        let now = self.clock.now();
        let token = RawResetToken::generate()?;
        let request = ResetRequest {
            link: self.links.build(redirect.as_deref(), &token, &email),
            limit_keys: limit_keys(settings.reset.limit.method, &email, client.ip.as_deref()),
            limit: settings.reset.limit,
            email,
            token_id: Uuid::now_v7(),
            token_hash: token.hash(),
            expires_at: now + settings.reset.link_lifetime,
            mail_id: Uuid::now_v7(),
            now,
            audit: None,
        };
        match self.store.request_reset(request).await? {
            Ok(()) => {
                self.mail.notify();
                Ok(())
            }
            Err(retry_after_seconds) => {
                tracing::info!(
                    event = "password_reset_request_limited",
                    retry_after_seconds
                );
                Err(Error::RateLimited {
                    retry_after_seconds,
                })
            }
        }
    }

    /// The admin's "Reset Password": the same pipeline and mail as the storefront's, limited per
    /// customer (the settings' hourly cap and spacing), audited in the same transaction. The
    /// admin never sees the token or the password.
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
        let settings = self.settings.current().await?;
        let now = self.clock.now();
        let token = RawResetToken::generate()?;
        let request = ResetRequest {
            link: self.links.build(None, &token, &customer.email),
            limit_keys: vec![format!("reset:customer:{customer_id}")],
            limit: ResetLimit {
                method: LimitMethod::ByEmail,
                ..settings.reset.limit
            },
            email: customer.email.clone(),
            token_id: Uuid::now_v7(),
            token_hash: token.hash(),
            expires_at: now + settings.reset.link_lifetime,
            mail_id: Uuid::now_v7(),
            now,
            audit: Some(NewAudit {
                id: Uuid::now_v7(),
                at: now,
                actor_id: principal.admin.id,
                actor: principal.admin.username.clone(),
                action: AuditAction::AdminResetPassword,
                customer_id: Some(customer_id),
                client_ip: client.ip.clone(),
            }),
        };
        match self.store.request_reset(request).await? {
            Ok(()) => {
                self.mail.notify();
                tracing::info!(event = "admin_reset_password", admin_id = %principal.admin.id, customer_id = %customer_id);
                Ok(())
            }
            Err(retry_after_seconds) => Err(Error::RateLimited {
                retry_after_seconds,
            }),
        }
    }

    /// "Reset Password" on the New Password form. The token alone names the account; `email`,
    /// when given, must match it. Success signs the customer out everywhere, clears lockout,
    /// voids other links and queues a "password changed" notice. It never signs in.
    pub async fn reset(
        &self,
        email: Option<&str>,
        token: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.clock.now();
        let failure_key = format!(
            "reset-failure:ip:{}",
            client.ip.as_deref().unwrap_or("unknown")
        );
        let (failures, oldest) = self
            .store
            .count_events(&failure_key, now - FAILURE_WINDOW)
            .await?;
        if failures >= MAX_INVALID_RESETS {
            let wait = oldest.map_or(FAILURE_WINDOW, |o| o + FAILURE_WINDOW - now);
            return Err(Error::RateLimited {
                retry_after_seconds: u64::try_from(wait.num_seconds().max(1)).unwrap_or(1),
            });
        }
        let stored = match RawResetToken::parse(token) {
            Some(raw) => self.store.find_reset_token(&raw.hash()).await?,
            None => None,
        };
        let verdict = match &stored {
            None => Err(Error::ResetTokenInvalid),
            Some(t) if t.used_at.is_some() || t.superseded_at.is_some() => {
                Err(Error::ResetTokenInvalid)
            }
            Some(t) if t.expires_at <= now => Err(Error::ResetTokenExpired),
            Some(t) => match email.map(Email::parse) {
                Some(Ok(e)) if e.key() != t.email_key => Err(Error::ResetTokenInvalid),
                Some(Err(_)) => Err(Error::ResetTokenInvalid),
                _ => Ok(t.clone()),
            },
        };
        let token = match verdict {
            Ok(t) => t,
            Err(e) => {
                self.store.record_event(&failure_key, now).await?;
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
        let settings = self.settings.current().await?;
        // A policy failure does not use the link up: the customer can try another password.
        let password = new_password(
            new,
            &settings.password,
            &[
                customer.email.local_part(),
                &customer.firstname,
                &customer.lastname,
            ],
        )?;
        let hash = self.hasher.hash(&password).await?;
        let notice = NewMail::password_changed(&customer, now);
        if !self
            .store
            .complete_reset(token.id, customer.id, hash, now, notice)
            .await?
        {
            return Err(Error::ResetTokenInvalid);
        }
        self.mail.notify();
        tracing::info!(event = "password_reset_completed", customer_id = %customer.id);
        Ok(())
    }
}
