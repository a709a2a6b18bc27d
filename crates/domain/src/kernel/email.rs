//! Email addresses, parsed once at the boundary.
//!
//! An [`Email`] keeps the address as the customer typed it (trimmed) for sending mail, and a
//! lower-cased key for uniqueness and look-ups, so `Ann@Example.com` and `ann@example.com` are
//! one account. Mail always goes to the stored address, never to a submitted variant.

use std::fmt;

/// The longest address SMTP can carry (RFC 5321 path limit minus the angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_BYTES: usize = 64;
const MAX_LABEL_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email address is empty")]
    Empty,
    #[error("email address is longer than {MAX_EMAIL_BYTES} bytes")]
    TooLong,
    #[error("email address must contain exactly one @ with text on both sides")]
    Shape,
    #[error("email address contains a character that is not allowed")]
    ForbiddenCharacter,
    #[error("email address has an invalid domain")]
    Domain,
}

/// A syntactically valid email address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email {
    address: String,
    key: String,
}

impl Email {
    /// Parses untrusted input. Surrounding whitespace is trimmed; anything that could break an
    /// SMTP header (control characters, CR/LF, quotes, angle brackets, commas) is refused.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // Cheap bound first so a megabyte of input costs nothing more than this comparison.
        if input.len() > MAX_EMAIL_BYTES * 4 {
            return Err(EmailError::TooLong);
        }
        let address = input.trim();
        if address.is_empty() {
            return Err(EmailError::Empty);
        }
        if address.len() > MAX_EMAIL_BYTES {
            return Err(EmailError::TooLong);
        }
        if address.chars().any(forbidden) {
            return Err(EmailError::ForbiddenCharacter);
        }
        let mut parts = address.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::Shape);
        };
        if local.is_empty() || domain.is_empty() {
            return Err(EmailError::Shape);
        }
        if local.len() > MAX_LOCAL_BYTES
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(EmailError::Shape);
        }
        let domain_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_BYTES
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !domain_ok {
            return Err(EmailError::Domain);
        }
        Ok(Self {
            key: address.to_lowercase(),
            address: address.to_owned(),
        })
    }

    /// The address as stored and used for sending mail.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The case-insensitive key: one account per key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The part before the `@`, used to refuse passwords built from the customer's own address.
    pub fn local_part(&self) -> &str {
        self.address.split('@').next().unwrap_or_default()
    }

    /// Rebuilds an address read back from storage (already validated when it was written).
    pub fn from_trusted(address: String) -> Self {
        Self {
            key: address.to_lowercase(),
            address,
        }
    }
}

fn forbidden(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '<' | '>' | '(' | ')' | '[' | ']' | '\\' | ',' | ';' | ':' | '"' | '\u{feff}'
        )
        || ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
}

impl fmt::Debug for Email {
    // Addresses are personal data: keep them out of debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_trims_whitespace() {
        let e = Email::parse("  Ann.Lee+shop@Example.COM \n").unwrap();
        assert_eq!(e.as_str(), "Ann.Lee+shop@Example.COM");
        assert_eq!(e.key(), "ann.lee+shop@example.com");
        assert_eq!(e.local_part(), "Ann.Lee+shop");
    }

    #[test]
    fn case_variants_share_one_key() {
        let a = Email::parse("VICTIM@EXAMPLE.COM").unwrap();
        let b = Email::parse(" victim@example.com ").unwrap();
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn unicode_addresses_are_accepted_but_dotless_i_is_a_different_key() {
        let a = Email::parse("vıctim@example.com").unwrap();
        let b = Email::parse("victim@example.com").unwrap();
        assert_ne!(a.key(), b.key());
        assert!(Email::parse("たなか@例え.jp").is_ok());
    }

    #[test]
    fn refuses_missing_or_extra_at_signs() {
        for bad in ["plainaddress", "@example.com", "ann@", "a@b@c.com", ""] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_header_injection_and_control_characters() {
        for bad in [
            "a@b.com\r\nBcc: evil@x.com",
            "a\u{0}b@example.com",
            "a b@example.com",
            "a\u{00a0}b@example.com",
            "a\u{2003}b@example.com",
            "\"quoted\"@example.com",
            "<a@example.com>",
            "a@example.com,b@example.com",
            "a\u{200b}b@example.com",
            "a\u{202e}b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_bad_domains_and_local_parts() {
        for bad in [
            "a@-example.com",
            "a@example-.com",
            "a@exa_mple.com",
            "a@example..com",
            "a@.example.com",
            ".a@example.com",
            "a.@example.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn length_limits_hold_and_a_megabyte_is_refused_cheaply() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        let local = "a".repeat(65);
        assert_eq!(
            Email::parse(&format!("{local}@example.com")),
            Err(EmailError::Shape)
        );
        let long = format!("a@{}.com", "b.".repeat(130));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
        let huge = "a".repeat(1 << 20);
        assert_eq!(Email::parse(&huge), Err(EmailError::TooLong));
    }

    #[test]
    fn debug_output_never_shows_the_address() {
        let e = Email::parse("secret@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }
}
