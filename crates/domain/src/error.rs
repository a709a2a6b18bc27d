//! The one error type of the use cases. Each variant says what the client is told; the GraphQL
//! layer maps each to exactly one error code in one place.

use crate::password::PolicyViolation;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token, or a token that is malformed, expired or revoked. The client must sign in.
    #[error("sign in required")]
    Unauthenticated,
    /// Signed in, but not allowed to do this.
    #[error("not allowed")]
    Forbidden,
    /// An argument failed its rules; `field` names it, `message` says why (never echoes input).
    #[error("{field}: {message}")]
    BadUserInput {
        field: &'static str,
        message: String,
    },
    /// The object does not exist or is not the caller's to see.
    #[error("not found")]
    NotFound,
    /// Too many attempts or the server is saturated; try again after the given delay.
    #[error("too many requests")]
    RateLimited { retry_after_seconds: u64 },
    /// The reset link is unknown, used or superseded.
    #[error("this password reset link is invalid")]
    ResetTokenInvalid,
    /// The reset link is past its lifetime.
    #[error("this password reset link has expired")]
    ResetTokenExpired,
    /// An email-change (or invitation) link that is unknown, used, cancelled or superseded.
    #[error("this link is invalid")]
    LinkInvalid,
    /// An email-change (or invitation) link past its lifetime.
    #[error("this link has expired")]
    LinkExpired,
    /// The new password breaks these rules.
    #[error("the password does not meet the password policy")]
    PasswordPolicy(Vec<PolicyViolation>),
    /// Wrong email or password (deliberately indistinguishable), or a locked account.
    #[error("the email or password is incorrect")]
    AuthenticationFailed,
    /// Anything the client cannot fix. The detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}
