//! Customer accounts and their sessions (one session per access token).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::email::Email;

/// A customer as the API shows it. The password hash is not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub email: Email,
    pub firstname: String,
    pub lastname: String,
    pub locale: Locale,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    /// Frozen pending recovery: "this wasn't me" reverted a confirmed email change, so neither
    /// mailbox alone gets the account back; no reset link is issued until an admin recovers it.
    pub frozen_at: Option<DateTime<Utc>>,
    /// "This wasn't me" from a security mail secured the account (signed out, password
    /// voided) at this time; cleared when a new password is set.
    pub reported_at: Option<DateTime<Utc>>,
    /// Since when the customer has been asked to change a password found on the breached list
    /// (they signed in with it); `None` once a new one is set.
    pub password_change_required_at: Option<DateTime<Utc>>,
}

/// The languages mail and pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    En,
    Ja,
    Ko,
}

impl Locale {
    /// Accepts a BCP 47 tag (`ja`, `ja-JP`, `ko_KR`, `en-GB`) and keeps its language.
    pub fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim();
        if tag.len() > 35 {
            return None;
        }
        let language = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match language.as_str() {
            "en" => Some(Self::En),
            "ja" => Some(Self::Ja),
            "ko" => Some(Self::Ko),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ja => "ja",
            Self::Ko => "ko",
        }
    }
}

/// A person's name as entered: trimmed, 1–255 characters, no control characters.
pub fn parse_name(raw: &str) -> Option<String> {
    if raw.len() > 255 * 4 {
        return None;
    }
    let name = raw.trim();
    let len = name.chars().count();
    ((1..=255).contains(&len) && !name.chars().any(char::is_control)).then(|| name.to_owned())
}

/// One access token's server-side record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: crate::SessionId,
    pub customer_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

pub use crate::kernel::client::ClientInfo;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_tags_keep_their_language() {
        assert_eq!(Locale::parse("ja-JP"), Some(Locale::Ja));
        assert_eq!(Locale::parse("ko_KR"), Some(Locale::Ko));
        assert_eq!(Locale::parse("EN"), Some(Locale::En));
        assert_eq!(Locale::parse("fr"), None);
        assert_eq!(Locale::parse(""), None);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ann "), Some("Ann".into()));
        assert_eq!(parse_name("田中"), Some("田中".into()));
        assert_eq!(parse_name("   "), None);
        assert_eq!(parse_name("Bob\r\nBcc: x@y"), None);
        assert_eq!(parse_name("a\u{0}b"), None);
        assert!(parse_name(&"x".repeat(255)).is_some());
        assert!(parse_name(&"x".repeat(256)).is_none());
        assert!(parse_name(&"x".repeat(1 << 20)).is_none());
    }

    #[test]
    fn user_agents_are_bounded_and_stripped_of_control_characters() {
        let info = ClientInfo::new(None, Some(&format!("agent\r\n{}", "x".repeat(1000))));
        let ua = info.user_agent.unwrap();
        assert_eq!(ua.chars().count(), 256);
        assert!(!ua.contains('\n'));
    }
}
