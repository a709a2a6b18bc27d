//! The one place domain errors become GraphQL errors with `extensions.code`.

use async_graphql::ErrorExtensions;
use domain::Error;

/// Latchkey's error codes (docs/api.md), as sent in `extensions.code`.
pub mod codes {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const RESET_TOKEN_INVALID: &str = "RESET_TOKEN_INVALID";
    pub const RESET_TOKEN_EXPIRED: &str = "RESET_TOKEN_EXPIRED";
    pub const LINK_INVALID: &str = "LINK_INVALID";
    pub const LINK_EXPIRED: &str = "LINK_EXPIRED";
    pub const PASSWORD_POLICY: &str = "PASSWORD_POLICY";
    pub const AUTHENTICATION_FAILED: &str = "AUTHENTICATION_FAILED";
    pub const SECOND_FACTOR_REQUIRED: &str = "SECOND_FACTOR_REQUIRED";
    pub const CHALLENGE_REQUIRED: &str = "CHALLENGE_REQUIRED";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
}

/// A resolver error. Deliberately not `Display`, so it can only reach the client through the
/// conversion below, which always sets a code and never shows internal detail.
#[derive(Debug)]
pub struct ApiError(Error);

impl ApiError {
    pub(crate) fn internal(detail: &str) -> Self {
        Self(Error::internal(detail))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(ApiError(e): ApiError) -> Self {
        let code = match &e {
            Error::Unauthenticated => codes::UNAUTHENTICATED,
            Error::Forbidden => codes::FORBIDDEN,
            Error::BadUserInput { .. } => codes::BAD_USER_INPUT,
            Error::NotFound => codes::NOT_FOUND,
            Error::RateLimited { .. } => codes::RATE_LIMITED,
            Error::ResetTokenInvalid | Error::ResetCodeInvalid => codes::RESET_TOKEN_INVALID,
            Error::SignInCodeInvalid => codes::AUTHENTICATION_FAILED,
            Error::ResetTokenExpired | Error::ResetCodeExpired => codes::RESET_TOKEN_EXPIRED,
            Error::LinkInvalid => codes::LINK_INVALID,
            Error::LinkExpired => codes::LINK_EXPIRED,
            Error::PasswordPolicy(_) => codes::PASSWORD_POLICY,
            Error::AuthenticationFailed => codes::AUTHENTICATION_FAILED,
            Error::SecondFactorRequired => codes::SECOND_FACTOR_REQUIRED,
            Error::ChallengeRequired { .. } => codes::CHALLENGE_REQUIRED,
            Error::Internal(_) => codes::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            Error::Internal(_) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = %e.chain(), "internal error");
                format!("internal server error (reference {reference})")
            }
            // Said in the API's own words: what an admin app built for one step must call.
            Error::SecondFactorRequired => "this admin signs in with a second factor (or must \
                enrol one first): call startAdminSignIn(username, password), then \
                completeAdminSignIn, or startAdminEnrolment and completeAdminEnrolment"
                .to_owned(),
            Error::ChallengeRequired { .. } => "this request needs a solved proof-of-work \
                challenge: find the number in extensions.challenge (ALTCHA format) and send \
                the solution as the challengeSolution argument"
                .to_owned(),
            other => other.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code);
            match &e {
                Error::BadUserInput { field, .. } => ext.set("field", *field),
                Error::RateLimited {
                    retry_after_seconds,
                } => ext.set("retryAfterSeconds", *retry_after_seconds),
                Error::ChallengeRequired { challenge, reason } => {
                    ext.set("reason", reason.as_str());
                    match async_graphql::to_value(challenge.as_ref()) {
                        Ok(value) => ext.set("challenge", value),
                        Err(e) => tracing::error!(error = %e, "challenge not serialisable"),
                    }
                }
                Error::PasswordPolicy(violations) => {
                    let list: Vec<async_graphql::Value> = violations
                        .iter()
                        .map(|v| {
                            let mut obj = async_graphql::indexmap::IndexMap::new();
                            obj.insert(
                                async_graphql::Name::new("rule"),
                                async_graphql::Value::from(v.code()),
                            );
                            obj.insert(
                                async_graphql::Name::new("message"),
                                async_graphql::Value::from(v.to_string()),
                            );
                            if let Some(limit) = v.limit() {
                                obj.insert(
                                    async_graphql::Name::new("limit"),
                                    async_graphql::Value::from(limit),
                                );
                            }
                            async_graphql::Value::Object(obj)
                        })
                        .collect();
                    ext.set("violations", list);
                }
                _ => {}
            }
        })
    }
}
