//! The password reset use cases: "Forgot Your Password?" and the "New Password" form.

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    Error, Result,
    accounts::store::AccountStore,
    accounts::{Wiring, parse_email},
    admin::{AdminPrincipal, AuditAction, NewAudit},
    email::Email,
    kernel::client::ClientInfo,
    limits::{Check, LimitKey, PrincipalKind, Refused, Rule},
    ports::{MailSignal, NewMail},
    reset::{
        CodeAttempt, CodePurpose, FlowId, MAX_WRONG_CODES_PER_ADDRESS, NewFlow, OneTimeCode,
        RawResetToken, RequestedCode, ResetLinks, ResetRequest, ResetStore, StoredResetToken,
        WRONG_CODE_WINDOW, request_checks,
    },
    settings::Settings,
};

/// A flow just started: the flow id goes to the client that asked, and nowhere else.
#[derive(Debug)]
pub struct StartedFlow {
    pub flow: FlowId,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

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

    /// How the store resets passwords (by link, by code, or both) and whether customers may
    /// sign in by code (public).
    pub async fn methods(&self) -> Result<(crate::settings::ResetPolicy, bool)> {
        let settings = self.parts.settings.current().await?;
        Ok((settings.reset, settings.sign_in_by_code))
    }

    /// "Reset My Password" by link. For every well-formed address the answer, the statements
    /// run, the rows written and the time taken are the same whether or not an account exists:
    /// the request is recorded as it is, and the mail worker finds the account (if any) later.
    /// The mail is never sent here. A store that resets by code only refuses it.
    #[tracing::instrument(name = "resets.request", skip_all)]
    pub async fn request(
        &self,
        email: &str,
        redirect_url: Option<&str>,
        client: &ClientInfo,
        solution: Option<&str>,
    ) -> Result<()> {
        let settings = self.parts.settings.current().await?;
        if !settings.reset.by_link {
            return Err(Error::bad_input(
                "email",
                "this store resets passwords by code: use requestPasswordResetCode",
            ));
        }
        self.admit(email, client, &settings, solution).await?;
        self.record(
            email,
            redirect_url,
            None,
            CodePurpose::Reset,
            &settings,
            client,
        )
        .await
    }

    /// "Reset My Password" by code: the same request as [`request`](Self::request) (the same
    /// answer, statements and rows for every address), which also starts a flow. The client
    /// gets the flow id; the mail carries the code (and the link, if the store resets by
    /// link). The code works only with that flow id, [`crate::reset::MAX_CODE_ATTEMPTS`] guesses, for the
    /// settings' code lifetime, and dies with the link, with any newer request that is mailed
    /// (a link request within a minute of a live link mails nothing and changes nothing), and
    /// on use.
    #[tracing::instrument(name = "resets.request_code", skip_all)]
    pub async fn request_code(
        &self,
        email: &str,
        client: &ClientInfo,
        solution: Option<&str>,
    ) -> Result<StartedFlow> {
        let settings = self.parts.settings.current().await?;
        if !settings.reset.by_code {
            return Err(Error::bad_input(
                "email",
                "this store does not reset passwords by code: use requestPasswordReset",
            ));
        }
        self.admit(email, client, &settings, solution).await?;
        self.start_flow(email, CodePurpose::Reset, &settings, client)
            .await
    }

    /// Records a request that starts a code flow (for a reset or a sign-in), the code hashed
    /// beside it for the mail worker; the flow id for the client.
    async fn start_flow(
        &self,
        email: &str,
        purpose: CodePurpose,
        settings: &Settings,
        client: &ClientInfo,
    ) -> Result<StartedFlow> {
        let NewFlow { flow, code } = NewFlow::generate()?;
        let expires_at = self.parts.clock.now()
            + settings
                .reset
                .code_lifetime
                .min(settings.reset.link_lifetime);
        let requested = RequestedCode {
            flow_hash: flow.hash(),
            code_hash: code.hash_for(&flow),
            code,
            expires_at,
        };
        self.record(email, None, Some(requested), purpose, settings, client)
            .await?;
        Ok(StartedFlow { flow, expires_at })
    }

    /// "Email me a sign-in code" (a store that allows it): the same request as a reset's, the
    /// same answer, statements, rows and limits for every address, the same binding to the
    /// client that asked. The mail carries a code alone; the account's reset links stay.
    #[tracing::instrument(name = "resets.request_sign_in_code", skip_all)]
    pub async fn request_sign_in_code(
        &self,
        email: &str,
        client: &ClientInfo,
        solution: Option<&str>,
    ) -> Result<StartedFlow> {
        let settings = self.parts.settings.current().await?;
        if !settings.sign_in_by_code {
            return Err(Error::bad_input(
                "email",
                "this store does not sign customers in by code",
            ));
        }
        self.admit(email, client, &settings, solution).await?;
        self.start_flow(email, CodePurpose::SignIn, &settings, client)
            .await
    }

    /// "Sign in with a code": the mailed code, from the client that asked (its flow id), the
    /// same guesses and budgets as a reset code. A customer without a usable password (an
    /// import that needs a reset, a "this wasn't me") gets in too: the mailbox is the proof.
    /// The session is like any other (Force Sign In and a password change end it); the flow
    /// is spent. Every failure is AUTHENTICATION_FAILED, alike for every address.
    #[tracing::instrument(name = "resets.sign_in_with_code", skip_all)]
    pub async fn sign_in_with_code(
        &self,
        flow_id: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<crate::sign_in::IssuedToken> {
        let now = self.parts.clock.now();
        let settings = self.parts.settings.current().await?;
        if !settings.sign_in_by_code {
            return Err(Error::SignInCodeInvalid);
        }
        let lookup = async {
            match self.attempt(CodePurpose::SignIn, flow_id, code, now).await {
                Ok(a) if a.customer_id.is_some() => Ok(a),
                Err(e @ (Error::RateLimited { .. } | Error::Internal(_))) => Err(e),
                _ => Err(Error::SignInCodeInvalid),
            }
        };
        let attempt = match self.parts.redeem_link(client, lookup).await {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(event = "sign_in_code_refused", reason = %e);
                return Err(e);
            }
        };
        let Some(customer_id) = attempt.customer_id else {
            return Err(Error::SignInCodeInvalid);
        };
        // Checked before the code is spent, so a customer refused here keeps it for another
        // network (the lock is checked again where the session is minted).
        if self
            .parts
            .sign_in
            .locked_out(
                PrincipalKind::Customer,
                &attempt.email_key,
                client,
                &settings,
            )
            .await?
        {
            tracing::info!(event = "sign_in_code_locked_out", customer_id = %customer_id);
            return Err(Error::AuthenticationFailed);
        }
        if !self.store.end_code_flow(attempt.flow_id, now).await? {
            return Err(Error::SignInCodeInvalid);
        }
        let issued = self
            .parts
            .sign_in
            .sign_in_proven(
                PrincipalKind::Customer,
                customer_id,
                &attempt.email_key,
                client.clone(),
                &settings,
                Error::SignInCodeInvalid,
            )
            .await?;
        tracing::info!(event = "signed_in_with_code", customer_id = ?attempt.customer_id);
        Ok(issued)
    }

    /// One guess at a flow of `purpose`: counted against the flow, then (a live flow) against
    /// its address; the flow when the code is right.
    async fn attempt(
        &self,
        purpose: CodePurpose,
        flow_id: &str,
        code: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<CodeAttempt> {
        let (Some(flow), Some(code)) = (FlowId::parse(flow_id), OneTimeCode::parse(code)) else {
            return Err(Error::ResetCodeInvalid);
        };
        let attempt = self
            .store
            .count_code_attempt(purpose, &flow.hash())
            .await?
            .ok_or(Error::ResetCodeInvalid)?;
        if attempt.expires_at <= now {
            return Err(Error::ResetCodeExpired);
        }
        // Every guess at a live flow counts against its address (over all flows and
        // clients) before the comparison; the right code gives its place back.
        let address = [Check::new(
            LimitKey::WrongCodesByEmail(attempt.email_key.clone()),
            Rule::per(MAX_WRONG_CODES_PER_ADDRESS, WRONG_CODE_WINDOW),
        )];
        let reservation = self.parts.limiter.reserve(&address, now).await?;
        if attempt.ended || !code.matches(&flow, &attempt.code_hash) {
            reservation.keep();
            return Err(Error::ResetCodeInvalid);
        }
        self.parts.limiter.release(reservation).await?;
        Ok(attempt)
    }

    /// A reset link for `email`, as "Forgot Your Password?" would mail it (the same limits;
    /// nothing when the store resets by code only), for a sign-in refused because its right
    /// password is on the breached list. No challenge: the sign-in passed the guard.
    pub async fn mail_link(
        &self,
        email: &str,
        client: &ClientInfo,
        settings: &Settings,
    ) -> Result<()> {
        if !settings.reset.by_link {
            return Ok(());
        }
        self.record(email, None, None, CodePurpose::Reset, settings, client)
            .await
    }

    /// While the address or the client's network is under attack, a request needs a solved
    /// challenge first (the same answer for every well-formed address, known or not).
    async fn admit(
        &self,
        email: &str,
        client: &ClientInfo,
        settings: &Settings,
        solution: Option<&str>,
    ) -> Result<()> {
        let email = parse_email(email)?;
        self.parts
            .guard
            .admit(Some(email.key()), client, settings, solution)
            .await
    }

    async fn record(
        &self,
        email: &str,
        redirect_url: Option<&str>,
        code: Option<RequestedCode>,
        purpose: CodePurpose,
        settings: &Settings,
        client: &ClientInfo,
    ) -> Result<()> {
        let email = parse_email(email)?;
        let redirect = match redirect_url.filter(|u| !u.is_empty()) {
            Some(url) => Some(self.links.check_redirect(url)?),
            None => None,
        };
        let now = self.parts.clock.now();
        let token = RawResetToken::generate()?;
        let request = ResetRequest {
            link: (purpose == CodePurpose::Reset && settings.reset.by_link)
                .then(|| self.links.build(redirect.as_deref(), &token, &email)),
            code,
            purpose,
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
            link: Some(self.links.build(None, &token, &customer.email)),
            code: None,
            purpose: CodePurpose::Reset,
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
        self.complete(token, new, now, Error::ResetTokenInvalid)
            .await
    }

    /// "Reset Password" with a mailed code, in the browser that asked for it: the flow id is
    /// the one `requestPasswordResetCode` answered that client. Each guess counts against the
    /// flow ([`crate::reset::MAX_CODE_ATTEMPTS`]) and against the client's budget of invalid links; a wrong
    /// code, a spent or superseded flow, another client's flow id and no flow id at all answer
    /// alike. Success is a reset like the link's: signed out everywhere, link and code void.
    #[tracing::instrument(name = "resets.reset_with_code", skip_all)]
    pub async fn reset_with_code(
        &self,
        flow_id: &str,
        code: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.parts.clock.now();
        // The policy's rules that need no account are checked first: a password the form
        // would refuse anyway does not spend one of the flow's guesses.
        let settings = self.parts.settings.current().await?;
        if !settings.reset.by_code {
            // A store that stopped resetting by code: outstanding codes stop too (their links,
            // where the store mails links, still work).
            return Err(Error::ResetCodeInvalid);
        }
        self.parts.new_password(new, &settings.password, &[])?;
        let lookup = async {
            let attempt = self.attempt(CodePurpose::Reset, flow_id, code, now).await?;
            let token = match attempt.reset_token_id {
                Some(id) => self.store.reset_token_by_id(id).await?,
                None => None,
            };
            match token {
                Some(t)
                    if t.used_at.is_none() && t.superseded_at.is_none() && t.expires_at > now =>
                {
                    Ok(t)
                }
                _ => Err(Error::ResetCodeInvalid),
            }
        };
        let token = match self.parts.redeem_link(client, lookup).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(event = "password_reset_code_refused", reason = %e);
                return Err(e);
            }
        };
        self.complete(token, new, now, Error::ResetCodeInvalid)
            .await
    }

    /// The reset itself, once a link or a code has named the token: the account's own rules
    /// for the password, then the token consumed and the password changed in one transaction.
    /// `spent` is the answer when a concurrent reset consumed the token first.
    async fn complete(
        &self,
        token: StoredResetToken,
        new: &str,
        now: chrono::DateTime<chrono::Utc>,
        spent: Error,
    ) -> Result<()> {
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
            return Err(spent);
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
