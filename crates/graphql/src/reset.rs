//! "Forgot Your Password?": request a reset link, then set a new password with it.

use async_graphql::{Context, Object};

use crate::{
    ApiError,
    context::{request, services},
};

#[derive(Default)]
pub struct ResetMutation;

#[Object]
impl ResetMutation {
    /// Emails a reset link if an account has this address. Answers `true` for every
    /// well-formed address, known or not, in the same time; the mail is queued, never sent
    /// during the request. `redirectUrl` (optional) must start with a prefix of the configured
    /// allow-list; the link is then that URL with a `token` parameter. Too many requests give
    /// RATE_LIMITED with `retryAfterSeconds`.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        email: String,
        redirect_url: Option<String>,
    ) -> Result<bool, ApiError> {
        let client = &request(ctx).client;
        services(ctx)?
            .resets
            .request(&email, redirect_url.as_deref(), client)
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
}
