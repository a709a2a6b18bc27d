//! The port authentication reads sessions through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{Result, admin::AdminUser, customer::Customer, token::TokenKind};

/// Who holds a live session, read afresh.
#[derive(Debug, Clone)]
pub enum Holder {
    Customer(Customer),
    Admin(AdminUser),
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The holder of the live (not revoked, not expired) session `id` of `kind`, in one
    /// look-up: a customer (the use is noted at most once a minute, for `customerSessions`), or
    /// an admin who is not disabled (the role as it is now). `None` for any other session.
    /// `subject` is who the token says holds it (a cache finds the session by it; the caller
    /// still checks the answer against it).
    async fn live_session(
        &self,
        kind: TokenKind,
        id: crate::SessionId,
        subject: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Holder>>;
}
