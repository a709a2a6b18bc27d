//! One path from a bearer token to a live principal, for customers and admins alike: the
//! token's signature and expiry (the token codec), then its session, read afresh through one
//! port method keyed by the principal's kind (a revoked session, a disabled admin or a role
//! change counts on the very next request). GraphQL, `/introspect` and every other caller go
//! through [`Authenticator::authenticate`]; a request caches its one answer.

mod store;

use std::sync::Arc;

pub use store::{Holder, SessionStore};

use crate::{
    Result,
    accounts::CustomerPrincipal,
    admin::AdminPrincipal,
    clock::Clock,
    kernel::bearer::BearerToken,
    token::{TokenCodec, TokenKind, VerifiedToken},
};

/// Who a live token speaks for.
#[derive(Debug, Clone)]
pub enum Principal {
    Customer(CustomerPrincipal),
    Admin(AdminPrincipal),
}

impl Principal {
    pub fn kind(&self) -> TokenKind {
        match self {
            Self::Customer(_) => TokenKind::Customer,
            Self::Admin(_) => TokenKind::Admin,
        }
    }
}

/// A live token: its verified claims and its principal.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: VerifiedToken,
    pub principal: Principal,
}

/// Verifies bearer tokens and finds their live sessions.
pub struct Authenticator {
    sessions: Arc<dyn SessionStore>,
    tokens: TokenCodec,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(sessions: Arc<dyn SessionStore>, tokens: TokenCodec, clock: Arc<dyn Clock>) -> Self {
        Self {
            sessions,
            tokens,
            clock,
        }
    }

    /// The kind of a token whose signature is valid and that has not expired, live session or
    /// not: an admin operation answers a customer's token FORBIDDEN (not "sign in"), whether
    /// or not its session still stands.
    pub fn kind_of(&self, bearer: &BearerToken) -> Option<TokenKind> {
        let now = self.clock.now();
        [TokenKind::Customer, TokenKind::Admin]
            .into_iter()
            .find(|kind| self.tokens.verify(*kind, bearer.expose(), now).is_ok())
    }

    /// The token's principal if it is honoured right now: a valid signature, not expired, and
    /// its session neither signed out, revoked (Force Sign In, a password change), expired, nor
    /// held by someone else; `None` otherwise. A customer token is tried first (the hot path).
    pub async fn authenticate(&self, bearer: &BearerToken) -> Result<Option<Authenticated>> {
        let now = self.clock.now();
        let token = bearer.expose();
        let verified = [TokenKind::Customer, TokenKind::Admin]
            .into_iter()
            .find_map(|kind| Some((kind, self.tokens.verify(kind, token, now).ok()?)));
        let Some((kind, verified)) = verified else {
            return Ok(None);
        };
        let holder = self
            .sessions
            .live_session(kind, verified.session_id, verified.subject, now)
            .await?;
        let session_id = verified.session_id;
        let principal = match holder {
            Some(Holder::Customer(customer)) if customer.id == verified.subject => {
                Principal::Customer(CustomerPrincipal {
                    customer,
                    session_id,
                })
            }
            Some(Holder::Admin(admin)) if admin.id == verified.subject => {
                Principal::Admin(AdminPrincipal { admin, session_id })
            }
            _ => return Ok(None),
        };
        Ok(Some(Authenticated {
            token: verified,
            principal,
        }))
    }
}
