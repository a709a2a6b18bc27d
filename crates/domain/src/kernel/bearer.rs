//! The bearer token a request presents: a secret that is never logged or printed.

/// An `Authorization: Bearer` value. Its `Debug` is redacted, so a principal, a request
/// context or an error that carries it cannot leak it into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token of an `Authorization` header value (`Bearer <token>`, the scheme in any case);
    /// `None` for another scheme or an empty token.
    pub fn from_header(value: &str) -> Option<Self> {
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// A token given on its own (a form field, a test).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the one place that verifies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_one() {
        assert_eq!(
            BearerToken::from_header("bearer  abc ").map(|t| t.expose().to_owned()),
            Some("abc".to_owned())
        );
        assert_eq!(BearerToken::from_header("Basic abc"), None);
        assert_eq!(BearerToken::from_header("Bearer   "), None);
        assert_eq!(BearerToken::from_header("Bearer"), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", BearerToken::new("s3cret-token"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
