//! The customer-side use cases: create an account, sign in and out, change the password, see
//! and end sessions. Each takes untrusted strings, parses them into domain types, and talks to
//! storage and the hasher through ports.

pub mod customer;
pub mod search;
pub mod store;

use store::{AccountStore, CreateCustomerError, NewCustomer, ProfileChange};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    Error, Result,
    clock::Clock,
    customer::{Customer, Locale, Session, parse_name},
    email::Email,
    kernel::client::ClientInfo,
    limits::{
        Check, ClientKey, FAILURE_WINDOW, LimitKey, Limiter, MAX_INVALID_LINKS, PrincipalKind, Rule,
    },
    password::{NewPassword, PasswordCandidate, PasswordPolicy},
    ports::{MailSignal, NewMail, SettingsSource},
    settings::BreachedPasswordSignIn,
    sign_in::{IssuedToken, SignIn},
    token::TokenCodec,
};

/// The mail about wrong passwords goes to one customer at most once in this long: an attack that
/// lasts must not turn it into a mail bomb.
pub const LOCKOUT_MAIL_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// What `createCustomer` receives, still untrusted.
#[derive(Clone)]
pub struct CreateCustomerInput {
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    pub password: String,
    pub locale: Option<String>,
}

/// What `updateCustomer` receives, still untrusted; absent fields stay as they are.
#[derive(Clone, Default)]
pub struct UpdateCustomerInput {
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub locale: Option<String>,
}

/// A signed-in customer: who, and through which session.
#[derive(Debug, Clone)]
pub struct CustomerPrincipal {
    pub customer: Customer,
    pub session_id: crate::SessionId,
}

/// The ports and shared parts a use-case group is built from, wired once by the server.
#[derive(Clone)]
pub struct Wiring {
    pub hasher: Arc<dyn crate::ports::PasswordHasher>,
    pub limiter: Arc<dyn Limiter>,
    pub settings: Arc<dyn SettingsSource>,
    pub tokens: TokenCodec,
    pub clock: Arc<dyn Clock>,
    pub sign_in: Arc<SignIn>,
    /// Asks for a solved proof-of-work challenge while a name or network is under attack.
    pub guard: Arc<crate::guard::AttackGuard>,
    /// The store's name (the mail sender's display name): a password built from it is weak.
    pub store_name: String,
}

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    parts: Wiring,
    mail: Arc<dyn MailSignal>,
    /// Mails the reset link when the store refuses sign-ins with a breached password.
    resets: Option<Arc<crate::reset::Resets>>,
}

impl Accounts {
    pub fn new(store: Arc<dyn AccountStore>, parts: Wiring, mail: Arc<dyn MailSignal>) -> Self {
        Self {
            store,
            parts,
            mail,
            resets: None,
        }
    }

    /// Where a refused breached password's reset link comes from (without it, the refusal
    /// only says to use "Forgot Your Password?").
    pub fn with_resets(mut self, resets: Arc<crate::reset::Resets>) -> Self {
        self.resets = Some(resets);
        self
    }

    /// Registers a customer. Counted per client address once the input is valid (an address
    /// that is taken counts too), before the password is hashed.
    #[tracing::instrument(name = "accounts.create_customer", skip_all)]
    pub async fn create_customer(
        &self,
        input: CreateCustomerInput,
        client: &ClientInfo,
        solution: Option<&str>,
    ) -> Result<Customer> {
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
        let settings = self.parts.settings.current().await?;
        let password = self.parts.new_password(
            &input.password,
            &settings.password,
            &[email.local_part(), &firstname, &lastname],
        )?;
        self.parts
            .guard
            .admit(None, client, &settings, solution)
            .await?;
        let now = self.parts.clock.now();
        let registration = [Check::new(
            LimitKey::RegistrationByIp(ClientKey::of(client)),
            Rule::per(
                settings.clients.registrations_per_ip_per_hour,
                chrono::Duration::hours(1),
            ),
        )];
        if let Err(limited) = self.parts.spend(&registration, now).await {
            tracing::info!(event = "registration_limited");
            return Err(limited);
        }
        let password_hash = self.parts.hasher.hash(&password).await?;
        let new = NewCustomer {
            id: Uuid::now_v7(),
            email,
            firstname,
            lastname,
            locale,
            password_hash,
            now,
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

    /// Signs a customer in. Unknown email, wrong password, a locked account and an account
    /// over its guess budget all answer `AuthenticationFailed`; see [`SignIn`].
    #[tracing::instrument(name = "accounts.sign_in", skip_all)]
    /// While the name or the client's network is under attack, `solution` must be a solved
    /// challenge first (`ChallengeRequired` otherwise, before any password is checked).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
        solution: Option<&str>,
    ) -> Result<IssuedToken> {
        let email = parse_email(email)?;
        let candidate = PasswordCandidate::parse(password).ok_or(Error::AuthenticationFailed)?;
        let settings = self.parts.settings.current().await?;
        self.parts
            .guard
            .admit(Some(email.key()), &client, &settings, solution)
            .await?;
        let sign_in = &self.parts.sign_in;
        let verified = match sign_in
            .verify(
                PrincipalKind::Customer,
                email.key(),
                &candidate,
                &client,
                &settings,
            )
            .await
        {
            Err(Error::AuthenticationFailed) => {
                self.warn_of_attack(&email, &settings).await?;
                return Err(Error::AuthenticationFailed);
            }
            other => other?,
        };
        // Only a verified password is looked up: the answer to a wrong one says nothing new.
        let breached = candidate.is_breached();
        if breached {
            self.breached_password(verified.id, &email, &client, &settings)
                .await?;
        }
        let mut issued = sign_in
            .mint(
                PrincipalKind::Customer,
                email.key(),
                &candidate,
                verified,
                client,
                &settings,
            )
            .await?;
        issued.password_change_required = breached;
        Ok(issued)
    }

    /// A right password that is on the breached list, before any session: the customer is
    /// asked to change it (marked, mailed the first time), or, where the store refuses such
    /// sign-ins, mailed a reset link and answered as for a wrong password.
    async fn breached_password(
        &self,
        id: Uuid,
        email: &Email,
        client: &ClientInfo,
        settings: &crate::settings::Settings,
    ) -> Result<()> {
        match settings.breached_password {
            BreachedPasswordSignIn::Flag => {
                tracing::info!(event = "breached_password_sign_in", id = %id, action = "flag");
                let now = self.parts.clock.now();
                if let Some(customer) = self.store.customer_by_id(id).await? {
                    let notice = NewMail::breached_password(&customer, now);
                    if self.store.require_password_change(id, now, notice).await? {
                        self.mail.notify();
                    }
                }
                Ok(())
            }
            BreachedPasswordSignIn::Refuse => {
                tracing::info!(event = "breached_password_sign_in", id = %id, action = "refuse");
                if let Some(resets) = &self.resets {
                    match resets.mail_link(email.as_str(), client, settings).await {
                        // Mailed, or mailed a moment ago: the limits keep the mailbox quiet.
                        Ok(()) | Err(Error::RateLimited { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                // The answer of a wrong password: a right one would tell a list of stolen
                // credentials which pair works (here and elsewhere). The mail tells the customer.
                Err(Error::AuthenticationFailed)
            }
        }
    }

    /// After a wrong password: once the name's wrong passwords from every network reach the
    /// threshold that turns the challenge on (or, with the challenge off for names, the
    /// lockout's), its customer is mailed, at most once a day: what it means, an unlock
    /// link and "this wasn't me". A name without an account is counted the same, and mailed
    /// nothing.
    async fn warn_of_attack(
        &self,
        email: &Email,
        settings: &crate::settings::Settings,
    ) -> Result<()> {
        let threshold = match settings.attack.challenge_after_name_failures {
            0 => settings.lockout.failures.max(1),
            n => n,
        };
        if self.parts.guard.name_failures(email.key()).await? < threshold {
            return Ok(());
        }
        let now = self.parts.clock.now();
        // Counted by name before the account is looked up: known and unknown names cost the
        // same statements, but for the one message queued.
        let once = [Check::new(
            LimitKey::LockoutMailFor(email.key().to_owned()),
            Rule::per(1, LOCKOUT_MAIL_WINDOW),
        )];
        match self.parts.limiter.reserve(&once, now).await {
            Ok(counted) => counted.keep(),
            Err(crate::limits::LimitError::Refused(_)) => return Ok(()),
            Err(crate::limits::LimitError::Failed(e)) => return Err(e),
        }
        let Some(customer) = self.store.customer_by_email(email.key()).await? else {
            return Ok(());
        };
        self.store
            .queue_mail(NewMail::sign_in_locked(&customer, now))
            .await?;
        self.mail.notify();
        tracing::info!(event = "lockout_mail_queued", customer_id = %customer.id);
        Ok(())
    }

    /// Ends the presented token's session.
    #[tracing::instrument(name = "accounts.sign_out", skip_all)]
    pub async fn sign_out(&self, principal: &CustomerPrincipal) -> Result<()> {
        self.store
            .revoke_session(
                principal.customer.id,
                principal.session_id,
                self.parts.clock.now(),
            )
            .await?;
        Ok(())
    }

    /// Changes the password after checking the current one; every other session ends.
    /// The current password is checked like a sign-in (same limits; a wrong one counts).
    #[tracing::instrument(name = "accounts.change_password", skip_all)]
    pub async fn change_password(
        &self,
        principal: &CustomerPrincipal,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<Customer> {
        let settings = self.parts.settings.current().await?;
        let customer = &principal.customer;
        let password = self.parts.new_password(
            new,
            &settings.password,
            &[
                customer.email.local_part(),
                &customer.firstname,
                &customer.lastname,
            ],
        )?;
        let candidate = PasswordCandidate::parse(current).ok_or(Error::AuthenticationFailed)?;
        let login = customer.email.key();
        self.parts
            .sign_in
            .verify(
                PrincipalKind::Customer,
                login,
                &candidate,
                client,
                &settings,
            )
            .await?;
        let hash = self.parts.hasher.hash(&password).await?;
        let now = self.parts.clock.now();
        let notice = NewMail::password_changed(customer, now);
        self.store
            .set_password(customer.id, hash, Some(principal.session_id), now, notice)
            .await?;
        self.mail.notify();
        // The old password's failures, from every network, no longer mean anything.
        self.parts
            .sign_in
            .forget_failures(PrincipalKind::Customer, login)
            .await?;
        tracing::info!(event = "password_changed", customer_id = %customer.id);
        self.store
            .customer_by_id(customer.id)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// `updateCustomer`: names and language. The email address has its own confirmed flow
    /// ([`crate::email_change`]); the password too.
    #[tracing::instrument(name = "accounts.update_profile", skip_all)]
    pub async fn update_profile(
        &self,
        principal: &CustomerPrincipal,
        input: UpdateCustomerInput,
    ) -> Result<Customer> {
        let name = |field: &'static str, raw: Option<&str>| {
            raw.map(|raw| {
                parse_name(raw).ok_or_else(|| {
                    Error::bad_input(
                        field,
                        "must be 1 to 255 characters without control characters",
                    )
                })
            })
            .transpose()
        };
        let firstname = name("firstname", input.firstname.as_deref())?;
        let lastname = name("lastname", input.lastname.as_deref())?;
        let locale = input
            .locale
            .as_deref()
            .map(|tag| {
                Locale::parse(tag).ok_or_else(|| {
                    Error::bad_input("locale", "supported locales are en, ja and ko")
                })
            })
            .transpose()?;
        let customer = self
            .store
            .update_profile(
                principal.customer.id,
                ProfileChange {
                    firstname,
                    lastname,
                    locale,
                },
                self.parts.clock.now(),
            )
            .await?
            .ok_or(Error::Unauthenticated)?;
        tracing::info!(event = "profile_updated", customer_id = %customer.id);
        Ok(customer)
    }

    /// A customer by id (the admin's Edit page).
    /// The password rules in force now (public: a registration or new-password form tells
    /// them before the customer types).
    pub async fn password_policy(&self) -> Result<crate::password::PasswordPolicy> {
        Ok(self.parts.settings.current().await?.password)
    }

    pub async fn customer(&self, id: Uuid) -> Result<Option<Customer>> {
        self.store.customer_by_id(id).await
    }

    /// The customers among `ids` that exist, in one look-up.
    pub async fn customers(&self, ids: &[Uuid]) -> Result<Vec<Customer>> {
        self.store.customers_by_ids(ids).await
    }

    pub async fn sessions(&self, principal: &CustomerPrincipal) -> Result<Vec<Session>> {
        self.store
            .live_sessions(principal.customer.id, self.parts.clock.now())
            .await
    }

    /// Signs out one device. Someone else's session and an unknown id look the same: NotFound.
    #[tracing::instrument(name = "accounts.revoke_session", skip_all)]
    pub async fn revoke_session(&self, principal: &CustomerPrincipal, id: &str) -> Result<()> {
        let id = crate::SessionId::parse(id).ok_or(Error::NotFound)?;
        if self
            .store
            .revoke_session(principal.customer.id, id, self.parts.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }
}

pub(crate) fn parse_email(raw: &str) -> Result<Email> {
    parse_email_field("email", raw)
}

/// An email address from the argument `field`.
pub(crate) fn parse_email_field(field: &'static str, raw: &str) -> Result<Email> {
    Email::parse(raw).map_err(|e| Error::bad_input(field, e.to_string()))
}

impl Wiring {
    /// Counts one request against every check (kept: the request happened, whatever it
    /// comes to), or refuses it with RATE_LIMITED when a check is spent.
    pub(crate) async fn spend(&self, checks: &[Check], now: DateTime<Utc>) -> Result<()> {
        self.limiter.reserve(checks, now).await?.keep();
        Ok(())
    }

    /// Holds a new password to the policy, with the store's name as context for the strength
    /// estimate.
    pub(crate) fn new_password(
        &self,
        raw: &str,
        policy: &PasswordPolicy,
        personal: &[&str],
    ) -> Result<NewPassword> {
        NewPassword::parse(raw, policy, personal, &[&self.store_name])
            .map_err(Error::PasswordPolicy)
    }

    /// Looks an emailed link up (a reset, an email-change confirmation or cancellation, an
    /// admin invitation) under the client's one budget of invalid links. The attempt is counted
    /// before `lookup` runs, so concurrent guesses cannot all pass; a link that `lookup` finds
    /// valid gives its place back, an invalid or expired one keeps it.
    pub(crate) async fn redeem_link<T>(
        &self,
        client: &ClientInfo,
        lookup: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let budget = [Check::new(
            LimitKey::InvalidLinkByIp(ClientKey::of(client)),
            Rule::per(MAX_INVALID_LINKS, FAILURE_WINDOW),
        )];
        let reservation = self.limiter.reserve(&budget, self.clock.now()).await?;
        match lookup.await {
            Ok(valid) => {
                self.limiter.release(reservation).await?;
                Ok(valid)
            }
            Err(refused) => {
                reservation.keep();
                Err(refused)
            }
        }
    }
}
