//! GraphQL output and input types. Domain types are wrapped, never derived on storage models.

use async_graphql::{ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::customer;

/// A customer account.
pub struct Customer(pub customer::Customer);

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The address reset links and notices are sent to.
    async fn email(&self) -> &str {
        self.0.email.as_str()
    }
    async fn firstname(&self) -> &str {
        &self.0.firstname
    }
    async fn lastname(&self) -> &str {
        &self.0.lastname
    }
    /// Language of emails and pages: `en`, `ja` or `ko`.
    async fn locale(&self) -> &str {
        self.0.locale.as_str()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// An access token for the storefront API. Send it as `Authorization: Bearer <token>`.
#[derive(SimpleObject)]
pub struct CustomerToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// One signed-in device: a live access token of the customer.
#[derive(SimpleObject)]
pub struct CustomerSession {
    pub id: ID,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// True for the token this request was made with.
    pub current: bool,
}

impl CustomerSession {
    pub fn new(s: customer::Session, current: uuid::Uuid) -> Self {
        Self {
            id: ID(s.id.to_string()),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            client_ip: s.client_ip,
            user_agent: s.user_agent,
            current: s.id == current,
        }
    }
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    pub email: String,
    pub firstname: String,
    pub lastname: String,
    #[graphql(secret)]
    pub password: String,
    /// `en` (default), `ja` or `ko`; regional tags like `ja-JP` are accepted.
    pub locale: Option<String>,
}
