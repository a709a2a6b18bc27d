//! The one error type of the use cases. Each variant says what the client is told; the GraphQL
//! layer maps each to exactly one error code in one place.

use crate::kernel::violation::PolicyViolation;

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
    /// A one-time code that is wrong, spent, superseded, or typed without the flow id of the
    /// client that asked for it (told apart from none of these, on purpose).
    #[error(
        "this code is invalid: it must be typed where it was requested, and a new request replaces it"
    )]
    ResetCodeInvalid,
    /// A sign-in code that is wrong, expired, spent or superseded, or typed without its flow.
    #[error("this sign-in code is invalid or has expired: it works once, where it was requested")]
    SignInCodeInvalid,
    /// A one-time code past its lifetime.
    #[error("this code has expired: request a new one")]
    ResetCodeExpired,
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
    /// The password was right, but this admin signs in with a second factor too (or must
    /// enrol one first), which a one-step sign-in cannot ask for: the two-step sign-in must be
    /// used.
    #[error("this admin signs in with a second factor: use the two-step sign-in")]
    SecondFactorRequired,
    /// A name or network is under attack: this operation first needs a solved proof-of-work
    /// challenge (this fresh one), because none was sent or the one sent was `reason`.
    #[error("this request needs a solved challenge first")]
    ChallengeRequired {
        challenge: Box<crate::guard::WorkChallenge>,
        reason: crate::guard::WorkRejection,
    },
    /// Anything the client cannot fix. The detail, with its source chain, is logged, never
    /// returned.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// An internal error described in words (no underlying error to keep).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(String);

impl Error {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
        }
    }

    /// An internal error described in words.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(Box::new(Described(detail.to_string())))
    }

    /// An internal error caused by `source`, whose chain the log keeps.
    pub fn internal_from(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(source))
    }

    /// The internal error's message and every source under it, `: `-separated (for logs).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let next = s.to_string();
            if !text.ends_with(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = s.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the pool timed out")]
    struct Pool(#[source] std::io::Error);

    #[test]
    fn an_internal_error_keeps_its_source_chain_for_the_log() {
        let e = Error::internal_from(Pool(std::io::Error::other("connection refused")));
        assert_eq!(e.to_string(), "internal error: the pool timed out");
        assert_eq!(
            e.chain(),
            "internal error: the pool timed out: connection refused"
        );
        // Described errors have nothing under them.
        assert_eq!(
            Error::internal("no such key").chain(),
            "internal error: no such key"
        );
    }
}
