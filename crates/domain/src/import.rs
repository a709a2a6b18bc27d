//! Bringing a store's customers: one row of an import file, checked the way registration checks
//! the same fields, with its password hash parsed (never computed) by [`crate::stored_hash`].

use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use crate::{
    customer::{Locale, parse_name},
    email::Email,
    stored_hash::{self, HashError, HashFormat, WorkLimits},
};

/// The longest value any text column takes (the database's bound).
pub const MAX_FIELD_BYTES: usize = 255;

/// One row as read from the file: every field optional, untrusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RawRow {
    pub email: Option<String>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub locale: Option<String>,
    pub created_at: Option<String>,
    pub password_hash: Option<String>,
    pub hash_format: Option<String>,
    pub external_id: Option<String>,
}

/// A row ready to store. `password_hash` is `""` when the row has none ("password reset
/// required").
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedCustomer {
    pub line: u64,
    pub id: Uuid,
    pub email: Email,
    pub firstname: String,
    pub lastname: String,
    pub locale: Locale,
    pub created_at: Option<DateTime<Utc>>,
    pub password_hash: String,
    pub external_id: Option<String>,
}

impl ImportedCustomer {
    /// What the grid's search reads for this customer.
    pub fn search_text(&self) -> String {
        crate::search::search_text(self.email.key(), &self.firstname, &self.lastname)
    }
}

impl std::fmt::Debug for ImportedCustomer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCustomer")
            .field("line", &self.line)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a row was not imported. `code()` is what the reject file and the summary name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// The line could not be read as a row (bad CSV/JSON, or not UTF-8).
    Unreadable(String),
    InvalidUtf8,
    MissingEmail,
    InvalidEmail,
    InvalidName(&'static str),
    InvalidLocale,
    InvalidCreatedAt,
    FieldTooLong(&'static str),
    UnknownHashFormat,
    UnusableHash(String),
    HashTooCostly(String),
    /// The same address (compared the way sign-in compares it) on an earlier line.
    DuplicateInFile {
        first_line: u64,
    },
    /// The address already has an account (with `--on-conflict reject`).
    Exists,
}

impl Reject {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "unreadable_row",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MissingEmail => "missing_email",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidLocale => "invalid_locale",
            Self::InvalidCreatedAt => "invalid_created_at",
            Self::FieldTooLong(_) => "field_too_long",
            Self::UnknownHashFormat => "unknown_hash_format",
            Self::UnusableHash(_) => "unusable_hash",
            Self::HashTooCostly(_) => "hash_too_costly",
            Self::DuplicateInFile { .. } => "duplicate_in_file",
            Self::Exists => "exists",
        }
    }

    /// A sentence for the reject file. Never repeats the hash or any other field's value.
    pub fn message(&self) -> String {
        match self {
            Self::Unreadable(why) => format!("the row cannot be read: {why}"),
            Self::InvalidUtf8 => "the row is not valid UTF-8".into(),
            Self::MissingEmail => "no email".into(),
            Self::InvalidEmail => "not a valid email address".into(),
            Self::InvalidName(field) => {
                format!("{field}: at most 255 characters, no control characters")
            }
            Self::InvalidLocale => "locale: supported locales are en, ja and ko".into(),
            Self::InvalidCreatedAt => {
                "created_at: expected RFC 3339 or YYYY-MM-DD HH:MM:SS (UTC), in the years \
                 1900 to 9999"
                    .into()
            }
            Self::FieldTooLong(field) => format!("{field}: longer than {MAX_FIELD_BYTES} bytes"),
            Self::UnknownHashFormat => format!(
                "password_hash: not a known format ({})",
                HashFormat::ALL.map(HashFormat::as_str).join(", ")
            ),
            Self::UnusableHash(why) | Self::HashTooCostly(why) => format!("password_hash: {why}"),
            Self::DuplicateInFile { first_line } => {
                format!("the same email is first on line {first_line}; only that line counts")
            }
            Self::Exists => "a customer with this email already exists".into(),
        }
    }
}

/// What to do with a row whose address already has an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Leave the customer as it is; the row counts as skipped.
    #[default]
    Skip,
    /// Update names, locale and external id; the password hash only while the customer has
    /// not set one in Latchkey (state LEGACY or RESET_REQUIRED), so an import never undoes a
    /// password a customer chose.
    Update,
    /// Write the row to the reject file.
    Reject,
}

impl OnConflict {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Self::Skip),
            "update" => Some(Self::Update),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// Checks one row; `line` is its line in the file (the header is line 1 for CSV).
pub fn validate(raw: RawRow, line: u64, limits: &WorkLimits) -> Result<ImportedCustomer, Reject> {
    let text = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let email = text(raw.email).ok_or(Reject::MissingEmail)?;
    if email.len() > MAX_FIELD_BYTES {
        return Err(Reject::FieldTooLong("email"));
    }
    let email = Email::parse(&email).map_err(|_| Reject::InvalidEmail)?;
    let name = |v: Option<String>, field: &'static str| -> Result<String, Reject> {
        // Registration's rule, except that a name may be missing (Shopify exports often
        // have none).
        let Some(v) = text(v) else {
            return Ok(String::new());
        };
        if v.len() > MAX_FIELD_BYTES * 4 {
            return Err(Reject::FieldTooLong(field));
        }
        parse_name(&v).ok_or(Reject::InvalidName(field))
    };
    let firstname = name(raw.firstname, "firstname")?;
    let lastname = name(raw.lastname, "lastname")?;
    let locale = match text(raw.locale) {
        None => Locale::default(),
        Some(tag) => Locale::parse(&tag).ok_or(Reject::InvalidLocale)?,
    };
    let created_at = match text(raw.created_at) {
        None => None,
        Some(t) => Some(parse_time(&t).ok_or(Reject::InvalidCreatedAt)?),
    };
    let external_id = text(raw.external_id);
    if let Some(id) = &external_id {
        if id.len() > MAX_FIELD_BYTES {
            return Err(Reject::FieldTooLong("external_id"));
        }
        if id.chars().any(char::is_control) {
            return Err(Reject::Unreadable(
                "external_id has control characters".into(),
            ));
        }
    }
    let declared = match text(raw.hash_format) {
        None => None,
        Some(label) => Some(HashFormat::parse(&label).ok_or(Reject::UnknownHashFormat)?),
    };
    let password_hash = match text(raw.password_hash) {
        // Django marks an unusable password with a leading `!`: nothing to verify.
        Some(h) if h.starts_with('!') => String::new(),
        None => String::new(),
        Some(h) => {
            if h.len() > MAX_FIELD_BYTES {
                return Err(Reject::FieldTooLong("password_hash"));
            }
            match stored_hash::parse(&h, declared, limits) {
                // A hash of the empty password (a platform that stored one for accounts
                // made without a password) would let `""` in: the row comes in as "reset
                // required" instead. Only digest recipes can be checked for free; the
                // costly ones meet `""` at sign-in, which refuses it before any hashing.
                Ok(recipe) if recipe.is_of_empty_password() == Some(true) => String::new(),
                Ok(_) => h,
                Err(HashError::Unknown) => return Err(Reject::UnknownHashFormat),
                Err(e @ HashError::TooCostly(..)) => {
                    return Err(Reject::HashTooCostly(e.to_string()));
                }
                Err(e) => return Err(Reject::UnusableHash(e.to_string())),
            }
        }
    };
    Ok(ImportedCustomer {
        line,
        id: Uuid::now_v7(),
        email,
        firstname,
        lastname,
        locale,
        created_at,
        password_hash,
        external_id,
    })
}

/// Years a stored `created_at` may have: both databases store them, and nothing outside them
/// is a real account's creation (PostgreSQL has no year 0; zero dates of old MySQL exports
/// such as `0000-00-00` are not times at all).
const CREATED_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t.with_timezone(&Utc),
        // What `SELECT … INTO OUTFILE`, `mysql --batch` and `\copy` print for a timestamp.
        Err(_) => ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())?
            .and_utc(),
    };
    CREATED_YEARS
        .contains(&chrono::Datelike::year(&t))
        .then_some(t)
}

/// What an import did, for the summary and the audit entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub imported: u64,
    pub updated: u64,
    pub skipped: u64,
    pub rejected: u64,
}

impl ImportCounts {
    /// The audit entry's detail: counts only, no personal data.
    pub fn detail(&self) -> String {
        format!(
            "imported={} updated={} skipped={} rejected={}",
            self.imported, self.updated, self.skipped, self.rejected
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str) -> RawRow {
        RawRow {
            email: Some(email.into()),
            ..RawRow::default()
        }
    }

    #[test]
    fn a_minimal_row_is_a_customer_who_must_reset_their_password() {
        let c = validate(row(" Ann@Example.COM "), 2, &WorkLimits::default()).unwrap();
        assert_eq!(c.email.key(), "ann@example.com");
        assert_eq!(c.password_hash, "");
        assert_eq!(c.locale, Locale::En);
        assert_eq!((c.firstname.as_str(), c.lastname.as_str()), ("", ""));
    }

    #[test]
    fn each_broken_field_has_its_own_reason() {
        let limits = WorkLimits::default();
        let cases: Vec<(RawRow, &str)> = vec![
            (RawRow::default(), "missing_email"),
            (row("not-an-email"), "invalid_email"),
            (
                RawRow {
                    firstname: Some("Bob\u{7}".into()),
                    ..row("b@example.com")
                },
                "invalid_name",
            ),
            (
                RawRow {
                    locale: Some("fr".into()),
                    ..row("b@example.com")
                },
                "invalid_locale",
            ),
            (
                RawRow {
                    created_at: Some("yesterday".into()),
                    ..row("b@example.com")
                },
                "invalid_created_at",
            ),
            (
                RawRow {
                    external_id: Some("x".repeat(300)),
                    ..row("b@example.com")
                },
                "field_too_long",
            ),
            (
                RawRow {
                    password_hash: Some("$1$md5crypt$abc".into()),
                    ..row("b@example.com")
                },
                "unknown_hash_format",
            ),
            (
                RawRow {
                    password_hash: Some(
                        "$2b$20$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQ".into(),
                    ),
                    ..row("b@example.com")
                },
                "hash_too_costly",
            ),
            (
                RawRow {
                    password_hash: Some("5f4dcc3b5aa765d61d8327deb882cf99:salt".into()),
                    hash_format: Some("bcrypt".into()),
                    ..row("b@example.com")
                },
                "unusable_hash",
            ),
            (
                RawRow {
                    hash_format: Some("sha1".into()),
                    ..row("b@example.com")
                },
                "unknown_hash_format",
            ),
        ];
        for (raw, code) in cases {
            let got = validate(raw.clone(), 3, &limits).unwrap_err();
            assert_eq!(got.code(), code, "{raw:?}");
            assert!(
                !got.message().contains("md5crypt"),
                "never repeats the hash"
            );
        }
    }

    #[test]
    fn creation_times_outside_real_years_are_rejected() {
        for t in [
            "0000-01-01 00:00:00",
            "0001-01-01T00:00:00Z",
            "1899-12-31 23:59:59",
            "+10000-01-01 00:00:00",
        ] {
            let r = validate(
                RawRow {
                    created_at: Some(t.into()),
                    ..row("t@example.com")
                },
                2,
                &WorkLimits::default(),
            );
            assert!(matches!(r, Err(Reject::InvalidCreatedAt)), "{t}: {r:?}");
        }
    }

    #[test]
    fn timestamps_from_common_exports_are_read_as_utc() {
        for t in [
            "2020-03-04T05:06:07Z",
            "2020-03-04 05:06:07",
            "2020-03-04 05:06:07.123",
            "2020-03-04T06:06:07+01:00",
        ] {
            let c = validate(
                RawRow {
                    created_at: Some(t.into()),
                    ..row("t@example.com")
                },
                2,
                &WorkLimits::default(),
            )
            .unwrap();
            assert_eq!(
                c.created_at.unwrap().format("%F %T").to_string(),
                "2020-03-04 05:06:07",
                "{t}"
            );
        }
    }

    #[test]
    fn a_django_unusable_password_is_no_password() {
        let c = validate(
            RawRow {
                password_hash: Some("!Xk3jq9".into()),
                ..row("d@example.com")
            },
            2,
            &WorkLimits::default(),
        )
        .unwrap();
        assert_eq!(c.password_hash, "");
    }
}
