//! Typed identifiers where two ids meet in one call: a session's id is a [`SessionId`], never a
//! bare `Uuid`, so `revoke_session(customer_id, session_id, ..)` cannot be called with the two
//! swapped, and a token's subject cannot be mistaken for its session.

use std::fmt;

use uuid::Uuid;

/// The id of one session (one access token's `jti`), of a customer or an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id as stored in a row or a token; the caller vouches that it names a session.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn uuid(self) -> Uuid {
        self.0
    }

    /// Parses the text form (a token's `jti`, an API argument).
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SessionId> for Uuid {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_reads_back_from_its_text() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("not-a-uuid"), None);
        assert_ne!(SessionId::new(), id);
    }
}
