//! The customer-side use cases: create an account, sign in and out, change the password, see
//! and end sessions. Each takes untrusted strings, parses them into domain types, and talks to
//! storage and the hasher through ports.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    lockout::check_password,
    ports::{MailSignal, NewMail},
};

use crate::{
    Error, Result,
    clock::Clock,
    customer::{ClientInfo, Customer, Locale, Session, parse_name},
    email::Email,
    password::{NewPassword, PasswordCandidate, PasswordPolicy},
    ports::{
        AccountStore, CreateCustomerError, NewCustomer, NewSession, PasswordHasher, SettingsSource,
    },
    token::{TokenCodec, TokenKind},
};

/// What `createCustomer` receives, still untrusted.
#[derive(Clone)]
pub struct CreateCustomerInput {
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub password: String,
    pub locale: Option<String>,
}

/// A freshly issued access token. The raw token exists only here, on its way to the client.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A signed-in customer: who, and through which session.
#[derive(Debug, Clone)]
pub struct CustomerPrincipal {
    pub customer: Customer,
    pub session_id: Uuid,
}

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    hasher: Arc<dyn PasswordHasher>,
    settings: Arc<dyn SettingsSource>,
    tokens: TokenCodec,
    clock: Arc<dyn Clock>,
    mail: Arc<dyn MailSignal>,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn AccountStore>,
        hasher: Arc<dyn PasswordHasher>,
        settings: Arc<dyn SettingsSource>,
        tokens: TokenCodec,
        clock: Arc<dyn Clock>,
        mail: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            hasher,
            settings,
            tokens,
            clock,
            mail,
        }
    }

    pub async fn create_customer(&self, input: CreateCustomerInput) -> Result<Customer> {
        let email = parse_email(&input.email)?;
        let firstname = parse_name(&input.firstname).ok_or_else(|| {
            Error::bad_input(
                "firstname",
                "must be 1 to 255 characters without control characters",
            )
        })?;
        let lastname = parse_name(&input.lastname).ok_or_else(|| {
            Error::bad_input(
                "lastname",
                "must be 1 to 255 characters without control characters",
            )
        })?;
        let locale = match input.locale.as_deref() {
            None | Some("") => Locale::default(),
            Some(tag) => Locale::parse(tag)
                .ok_or_else(|| Error::bad_input("locale", "supported locales are en, ja and ko"))?,
        };
        let settings = self.settings.current().await?;
        let password = new_password(
            &input.password,
            &settings.password,
            &[email.local_part(), &firstname, &lastname],
        )?;
        let password_hash = self.hasher.hash(&password).await?;
        let new = NewCustomer {
            id: Uuid::now_v7(),
            email,
            firstname,
            lastname,
            locale,
            password_hash,
            now: self.clock.now(),
        };
        match self.store.create_customer(new).await {
            Ok(customer) => Ok(customer),
            Err(CreateCustomerError::EmailTaken) => Err(Error::bad_input(
                "email",
                "an account with this email address already exists",
            )),
            Err(CreateCustomerError::Other(e)) => Err(e),
        }
    }

    /// Signs a customer in. Unknown email, wrong password and a locked account all answer
    /// `AuthenticationFailed` after the same argon2 work.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<IssuedToken> {
        let email = parse_email(email)?;
        let candidate = PasswordCandidate::parse(password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.settings.current().await?;
        let now = self.clock.now();
        let credentials = self.store.credentials_by_email(&email).await?;
        let stored = credentials
            .as_ref()
            .map(|c| (c.password_hash.as_str(), c.customer.locked_until));
        let rehash = check_password(&*self.hasher, &candidate, stored, now, || async {
            if let Some(c) = &credentials {
                self.store
                    .record_failed_sign_in(c.customer.id, &settings.lockout, now)
                    .await?;
                tracing::info!(event = "sign_in_failed", customer_id = %c.customer.id);
            }
            Ok(())
        })
        .await?;
        let Some(customer) = credentials.map(|c| c.customer) else {
            return Err(Error::AuthenticationFailed);
        };
        self.store
            .record_successful_sign_in(customer.id, rehash)
            .await?;
        let expires_at = now + settings.customer_token_lifetime;
        let session_id = Uuid::now_v7();
        self.store
            .create_session(NewSession {
                id: session_id,
                customer_id: customer.id,
                created_at: now,
                expires_at,
                client,
            })
            .await?;
        let token = self
            .tokens
            .sign(
                TokenKind::Customer,
                customer.id,
                session_id,
                now,
                expires_at,
            )
            .map_err(Error::internal)?;
        Ok(IssuedToken { token, expires_at })
    }

    /// Resolves a bearer token to a live session. Any failure is `Unauthenticated`.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<CustomerPrincipal> {
        let bearer = bearer.ok_or(Error::Unauthenticated)?;
        let now = self.clock.now();
        let verified = self
            .tokens
            .verify(TokenKind::Customer, bearer, now)
            .map_err(|_| Error::Unauthenticated)?;
        let customer = self
            .store
            .live_session(verified.session_id, now)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if customer.id != verified.subject {
            return Err(Error::Unauthenticated);
        }
        Ok(CustomerPrincipal {
            customer,
            session_id: verified.session_id,
        })
    }

    /// Ends the presented token's session.
    pub async fn sign_out(&self, principal: &CustomerPrincipal) -> Result<()> {
        self.store
            .revoke_session(
                principal.customer.id,
                principal.session_id,
                self.clock.now(),
            )
            .await?;
        Ok(())
    }

    /// Changes the password after checking the current one; every other session ends.
    /// A wrong current password counts as a failed sign-in.
    pub async fn change_password(
        &self,
        principal: &CustomerPrincipal,
        current: &str,
        new: &str,
    ) -> Result<Customer> {
        let settings = self.settings.current().await?;
        let customer = &principal.customer;
        let password = new_password(
            new,
            &settings.password,
            &[
                customer.email.local_part(),
                &customer.firstname,
                &customer.lastname,
            ],
        )?;
        let candidate = PasswordCandidate::parse(current).ok_or(Error::AuthenticationFailed)?;
        let now = self.clock.now();
        let credentials = self
            .store
            .credentials_by_id(customer.id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        check_password(
            &*self.hasher,
            &candidate,
            Some((
                &credentials.password_hash,
                credentials.customer.locked_until,
            )),
            now,
            || async {
                self.store
                    .record_failed_sign_in(customer.id, &settings.lockout, now)
                    .await
            },
        )
        .await?;
        let hash = self.hasher.hash(&password).await?;
        let notice = NewMail::password_changed(&credentials.customer, now);
        self.store
            .set_password(customer.id, hash, Some(principal.session_id), now, notice)
            .await?;
        self.mail.notify();
        tracing::info!(event = "password_changed", customer_id = %customer.id);
        self.store
            .customer_by_id(customer.id)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// A customer by id (the admin's Edit page).
    pub async fn customer(&self, id: Uuid) -> Result<Option<Customer>> {
        self.store.customer_by_id(id).await
    }

    pub async fn sessions(&self, principal: &CustomerPrincipal) -> Result<Vec<Session>> {
        self.store
            .live_sessions(principal.customer.id, self.clock.now())
            .await
    }

    /// Signs out one device. Someone else's session and an unknown id look the same: NotFound.
    pub async fn revoke_session(&self, principal: &CustomerPrincipal, id: &str) -> Result<()> {
        let id = Uuid::parse_str(id).map_err(|_| Error::NotFound)?;
        if self
            .store
            .revoke_session(principal.customer.id, id, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }
}

pub(crate) fn parse_email(raw: &str) -> Result<Email> {
    Email::parse(raw).map_err(|e| Error::bad_input("email", e.to_string()))
}

pub(crate) fn new_password(
    raw: &str,
    policy: &PasswordPolicy,
    personal: &[&str],
) -> Result<NewPassword> {
    NewPassword::parse(raw, policy, personal).map_err(Error::PasswordPolicy)
}
