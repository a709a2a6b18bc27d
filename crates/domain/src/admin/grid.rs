//! The customers grid's query (filters, orders, keyset cursors, page sizes) and the pages the
//! admin lists answer with.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// A message that has not been delivered: retrying, or dead-lettered after its last attempt.
/// Never carries the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeliveredMail {
    pub id: Uuid,
    pub lane: crate::mail::MailLane,
    pub kind: String,
    pub recipient: String,
    /// `pending`, `sending` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// A keyset cursor as clients see it: its JSON in URL-safe base64, opaque to them.
pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// Reads a cursor made by [`encode_cursor`]; anything else (or longer than `max_len`) is
/// BAD_USER_INPUT on `after`.
pub fn decode_cursor<T: serde::de::DeserializeOwned>(s: &str, max_len: usize) -> Result<T> {
    let bad = || Error::bad_input("after", "is not a cursor from this list");
    if s.len() > max_len {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Largest page any list returns.
pub const MAX_PAGE: u64 = 100;
pub const DEFAULT_PAGE: u64 = 20;

/// Clamps a requested page size: negative → error, above [`MAX_PAGE`] → error (clear, not
/// silently truncated), none → [`DEFAULT_PAGE`].
pub fn page_size(first: Option<i64>) -> Result<u64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as u64),
        Some(_) => Err(Error::bad_input(
            "first",
            format!("must be between 1 and {MAX_PAGE}"),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerSortField {
    CreatedAt,
    Email,
    Name,
}

/// Where a page of the customers grid starts: the sort key of the last row seen and its id.
/// Keyset paging, so inserts never shift pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerCursor {
    pub field: CustomerSortField,
    pub descending: bool,
    /// The sort values of the row: `[created_at]`, `[email_key]` or `[lastname, firstname]`.
    pub values: Vec<String>,
    pub id: Uuid,
}

impl CustomerCursor {
    pub fn encode(&self) -> String {
        encode_cursor(self)
    }

    pub fn decode(s: &str) -> Result<Self> {
        decode_cursor(s, 2048)
    }
}

/// Where a customer's password stands and where the account came from, for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFacts {
    pub state: crate::stored_hash::PasswordState,
    /// The id on the platform the customer was imported from.
    pub external_id: Option<String>,
}

/// Which customers the grid (or a bulk action) is about. Every field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    /// The address or a name contains it (`crate::search`).
    pub search: Option<crate::search::Search>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub password_state: Option<crate::stored_hash::PasswordState>,
    /// Exact match on the old platform's id.
    pub external_id: Option<String>,
    /// Locked out of sign-in now (`true`), or not (`false`).
    pub locked: Option<bool>,
    /// Has a live session now (`true`), or none (`false`).
    pub signed_in: Option<bool>,
    /// The newest reset email was requested in this range.
    pub last_reset_from: Option<DateTime<Utc>>,
    pub last_reset_to: Option<DateTime<Utc>>,
}

impl CustomerFilter {
    /// Nothing but the search (if any) narrows it.
    pub fn is_search_only(&self) -> bool {
        Self {
            search: None,
            ..self.clone()
        } == Self::default()
    }
}

/// Past this many matches, `totalCount` is estimated instead of counted.
pub const EXACT_COUNT_UP_TO: u64 = 1000;

#[derive(Debug, Clone)]
pub struct CustomerQuery {
    pub filter: CustomerFilter,
    pub field: CustomerSortField,
    pub descending: bool,
    pub first: u64,
    pub after: Option<CustomerCursor>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
    pub total_count: u64,
    /// `total_count` is an estimate (more than [`EXACT_COUNT_UP_TO`] matched).
    pub total_count_is_estimate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(-1)).is_err());
        assert!(page_size(Some(1_000_000)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = CustomerCursor {
            field: CustomerSortField::Name,
            descending: true,
            values: vec!["Lee".into(), "Ann".into()],
            id: Uuid::nil(),
        };
        assert_eq!(CustomerCursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "not base64!", "e30", &"A".repeat(5000)] {
            assert!(CustomerCursor::decode(bad).is_err(), "{bad}");
        }
    }
}
