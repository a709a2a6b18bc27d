//! What the error vocabulary says about a refused password: each broken rule, with a stable
//! code and a number a client can word in its own language. (The rules themselves are in
//! `crate::password`.)

use std::fmt;

/// One rule a password broke. The API lists every broken rule so a form can show them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyViolation {
    TooShort {
        min: u32,
    },
    TooLong {
        max: usize,
    },
    ContainsWhitespace,
    ContainsControlCharacter,
    MissingCharacterClasses {
        required: u8,
    },
    Common,
    ContainsPersonalInformation,
    /// Too easy to guess (zxcvbn score under the minimum).
    TooWeak {
        min_score: u8,
    },
}

impl PolicyViolation {
    /// The number in the rule (minimum or maximum length, classes required), so a client can
    /// word the rule in its own language.
    pub fn limit(&self) -> Option<u64> {
        match *self {
            Self::TooShort { min } => Some(u64::from(min)),
            Self::TooLong { max } => u64::try_from(max).ok(),
            Self::MissingCharacterClasses { required } => Some(u64::from(required)),
            Self::TooWeak { min_score } => Some(u64::from(min_score)),
            _ => None,
        }
    }

    /// A stable machine-readable name for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "TOO_SHORT",
            Self::TooLong { .. } => "TOO_LONG",
            Self::ContainsWhitespace => "CONTAINS_WHITESPACE",
            Self::ContainsControlCharacter => "CONTAINS_CONTROL_CHARACTER",
            Self::MissingCharacterClasses { .. } => "MISSING_CHARACTER_CLASSES",
            Self::Common => "COMMON_PASSWORD",
            Self::ContainsPersonalInformation => "CONTAINS_PERSONAL_INFORMATION",
            Self::TooWeak { .. } => "TOO_WEAK",
        }
    }
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min } => write!(f, "must be at least {min} characters long"),
            Self::TooLong { max } => write!(f, "must be at most {max} characters long"),
            Self::ContainsWhitespace => f.write_str("must not contain spaces"),
            Self::ContainsControlCharacter => f.write_str("must not contain control characters"),
            Self::MissingCharacterClasses { required } => write!(
                f,
                "must mix at least {required} of: lower case, upper case, digits, other characters"
            ),
            Self::Common => f.write_str("is too common: it appears in lists of breached passwords"),
            Self::ContainsPersonalInformation => {
                f.write_str("must not contain your email address or name")
            }
            Self::TooWeak { .. } => f.write_str(
                "is too easy to guess: add another word or two, or avoid common patterns",
            ),
        }
    }
}
