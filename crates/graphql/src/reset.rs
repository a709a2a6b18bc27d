//! "Forgot Your Password?": request a reset link, then set a new password with it.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::{
    ApiError,
    context::{request, services},
};

#[derive(Default)]
pub struct ResetMutation;

impl From<domain::reset::StartedFlow> for CodeFlow {
    fn from(started: domain::reset::StartedFlow) -> Self {
        Self {
            flow_id: started.flow.expose().to_owned(),
            expires_at: started.expires_at,
            code_length: domain::reset::CODE_DIGITS as i32,
        }
    }
}

/// How customers of this store get in besides their password.
#[derive(SimpleObject)]
pub struct AuthMethods {
    pub reset_by_link: bool,
    pub reset_by_code: bool,
    pub sign_in_by_code: bool,
    /// Digits in a mailed code.
    pub code_length: i32,
    pub code_lifetime_minutes: i32,
}

/// A code flow just started. Keep `flowId` where the customer will type the code (the page
/// that asked, e.g. in `sessionStorage`) and nowhere else: the code works only with it.
#[derive(SimpleObject)]
pub struct CodeFlow {
    /// Opaque; send it back with the code.
    pub flow_id: String,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
    /// How many digits the mailed code has.
    pub code_length: i32,
}

#[Object]
impl ResetMutation {
    /// Emails a reset link if an account has this address. Answers `true` for every
    /// well-formed address, known or not, in the same time; the mail is queued, never sent
    /// during the request. `redirectUrl` (optional) must start with a prefix of the configured
    /// allow-list; the link is then that URL with a `token` parameter. Too many requests give
    /// RATE_LIMITED with `retryAfterSeconds`. While the address or the client's network is
    /// under attack, CHALLENGE_REQUIRED until `challengeSolution` carries a solved challenge
    /// (see `generateCustomerToken`), for every address alike.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        email: String,
        redirect_url: Option<String>,
        challenge_solution: Option<String>,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?
            .resets
            .request(
                &email,
                redirect_url.as_deref(),
                client,
                challenge_solution.as_deref(),
            )
            .await?;
        Ok(true)
    }

    /// Sets a new password with the token from a reset link. The token alone names the
    /// account; `email`, if given, must match it. Every device is signed out; the customer
    /// signs in afresh (no token is returned). RESET_TOKEN_INVALID or RESET_TOKEN_EXPIRED when
    /// the link cannot be used; PASSWORD_POLICY leaves the link usable.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        #[graphql(secret)] reset_password_token: String,
        #[graphql(secret)] new_password: String,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?
            .resets
            .reset(
                email.as_deref(),
                &reset_password_token,
                &new_password,
                client,
            )
            .await?;
        Ok(true)
    }

    /// "This wasn't me", from the link in a security mail (the reset mail, the "password
    /// changed" notice): every device is signed out, the password is voided, outstanding reset
    /// links and codes die and pending email changes are superseded; the customer is mailed
    /// the next step (a new "Forgot Your Password?" from the same address). Answers `true`
    /// again for the same link later. LINK_INVALID for anything else (counted against the
    /// client's budget of invalid links).
    async fn report_unrecognized_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?.reports.report(&token, client).await?;
        Ok(true)
    }

    /// "Unlock" from the mail sent when many wrong passwords were typed for the customer's
    /// address: their wrong passwords stop counting, from every network (no network is locked
    /// out, and their address no longer asks for a challenge). Works for 24 hours; answers
    /// `true` again for the same link. LINK_INVALID / LINK_EXPIRED otherwise (counted against
    /// the client's budget of invalid links).
    async fn unlock_sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?.reports.unlock(&token, client).await?;
        Ok(true)
    }

    /// "Forgot Your Password?" by code: emails a short code (and the link, if the store
    /// resets by link) if an account has this address, and answers this client a flow id.
    /// The answer, its timing and what is stored are the same for every well-formed address,
    /// known or not. The code works only with this flow id, for a few minutes, a few guesses,
    /// and dies with the link, with any newer request that is mailed, and on use. RATE_LIMITED as
    /// `requestPasswordReset`; BAD_USER_INPUT when the store does not reset by code;
    /// CHALLENGE_REQUIRED as `requestPasswordReset`.
    async fn request_password_reset_code(
        &self,
        ctx: &Context<'_>,
        email: String,
        challenge_solution: Option<String>,
    ) -> Result<CodeFlow, ApiError> {
        let client = &request(ctx).client;
        let started = services(ctx)?
            .resets
            .request_code(&email, client, challenge_solution.as_deref())
            .await?;
        Ok(started.into())
    }

    /// Sets a new password with the mailed code, from the client that asked for it (its
    /// `flowId`). Every device is signed out and the link in the same mail dies; the customer
    /// signs in afresh. A wrong code, another client's flow, a spent or replaced code all give
    /// RESET_TOKEN_INVALID (and count: five guesses per flow, and the client's budget of
    /// invalid links); RESET_TOKEN_EXPIRED past its lifetime; PASSWORD_POLICY leaves the code
    /// usable.
    async fn reset_password_with_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] flow_id: String,
        #[graphql(secret)] code: String,
        #[graphql(secret)] new_password: String,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?
            .resets
            .reset_with_code(&flow_id, &code, &new_password, client)
            .await?;
        Ok(true)
    }

    /// "Email me a sign-in code", for a store that allows it (`signInByCode`; otherwise
    /// BAD_USER_INPUT): mails a short code if an account has this address and answers this
    /// client a flow id, the same for every well-formed address. The code works only with
    /// this flow id, a few minutes, a few guesses, once, and dies with any newer request.
    /// CHALLENGE_REQUIRED as `requestPasswordReset`.
    async fn request_sign_in_code(
        &self,
        ctx: &Context<'_>,
        email: String,
        challenge_solution: Option<String>,
    ) -> Result<CodeFlow, ApiError> {
        let client = &request(ctx).client;
        let started = services(ctx)?
            .resets
            .request_sign_in_code(&email, client, challenge_solution.as_deref())
            .await?;
        Ok(started.into())
    }

    /// Signs in with the mailed code, from the client that asked (its `flowId`): a session
    /// like a password sign-in's (Force Sign In and a password change end it). A wrong,
    /// expired, spent or replaced code, or another client's flow, all answer
    /// AUTHENTICATION_FAILED and count (five guesses per flow, 20 wrong codes a day per
    /// address, the client's budget of invalid links).
    async fn sign_in_with_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] flow_id: String,
        #[graphql(secret)] code: String,
    ) -> Result<crate::types::CustomerToken, ApiError> {
        let client = &request(ctx).client;
        let issued = services(ctx)?
            .resets
            .sign_in_with_code(&flow_id, &code, client)
            .await?;
        Ok(crate::types::CustomerToken {
            password_change_required: issued.password_change_required,
            token: issued.token,
            expires_at: issued.expires_at,
        })
    }
}
