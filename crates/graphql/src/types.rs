//! GraphQL output and input types. Domain types are wrapped, never derived on storage models.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{admin::Permission, customer};

use crate::{
    ApiError,
    context::{loaders, services},
    guard::RequirePermission,
};

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

    /// The customer signed in with a password that is on the list of breached passwords: they
    /// should change it (`changeCustomerPassword`). False again once a new password is set.
    async fn password_change_required(&self) -> bool {
        self.0.password_change_required_at.is_some()
    }

    /// Admin only: live access tokens (signed-in devices).
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn active_token_count(&self, ctx: &Context<'_>) -> Result<i32, ApiError> {
        let n = loaders(ctx)?
            .token_counts
            .load_one(self.0.id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .unwrap_or(0);
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// Admin only: when a sign-in lockout ends; null when not locked.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn locked_until(&self, ctx: &Context<'_>) -> Result<Option<DateTime<Utc>>, ApiError> {
        let now = services(ctx)?.admins.now();
        Ok(self.0.locked_until.filter(|until| *until > now))
    }

    /// Admin only: when "this wasn't me" reverted a confirmed email change and froze the
    /// account (locked pending recovery: no reset link is issued until an admin recovers it
    /// with `adminRecoverCustomer`); null when not frozen.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn frozen_at(&self) -> Option<DateTime<Utc>> {
        self.0.frozen_at
    }

    /// Admin only: when the customer said "this wasn't me" to a security mail (every device
    /// signed out, the password voided); null when not reported, or once a new password was
    /// set. The customer gets back in with "Forgot Your Password?" from the same address.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn reported_at(&self) -> Option<DateTime<Utc>> {
        self.0.reported_at
    }

    /// Admin only.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn password_changed_at(&self) -> DateTime<Utc> {
        self.0.password_changed_at
    }

    /// Admin only: SET (a Latchkey password), LEGACY (an imported hash, upgraded at the next
    /// sign-in), RESET_REQUIRED (imported without one) or VOIDED (voided on purpose).
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn password_state(&self, ctx: &Context<'_>) -> Result<PasswordState, ApiError> {
        let facts = loaders(ctx)?
            .password_facts
            .load_one(self.0.id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| ApiError::internal("customer vanished"))?;
        Ok(facts.state.into())
    }

    /// Admin only: the customer's id on the platform they were imported from.
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn external_id(&self, ctx: &Context<'_>) -> Result<Option<String>, ApiError> {
        Ok(loaders(ctx)?
            .password_facts
            .load_one(self.0.id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .and_then(|f| f.external_id))
    }

    /// Admin only: when the last reset link was issued (storefront or admin).
    #[graphql(guard = "RequirePermission(Permission::CustomersRead)")]
    async fn last_reset_requested_at(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        Ok(loaders(ctx)?
            .last_resets
            .load_one(self.0.id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .flatten())
    }
}

/// An access token for the storefront API. Send it as `Authorization: Bearer <token>`.
#[derive(SimpleObject)]
pub struct CustomerToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// The password just used is on the list of breached passwords: ask the customer to change
    /// it now (`changeCustomerPassword`). Also on `customer` until they do.
    pub password_change_required: bool,
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
    pub fn new(s: customer::Session, current: domain::SessionId) -> Self {
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

/// The profile fields `updateCustomer` sets; absent fields stay as they are.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    /// `en`, `ja` or `ko`; regional tags like `ja-JP` are accepted.
    pub locale: Option<String>,
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

/// Where a customer's password stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum PasswordState {
    /// A Latchkey argon2id hash.
    Set,
    /// A hash imported from another platform; replaced by argon2id at the next sign-in.
    Legacy,
    /// Imported without a usable hash: only "Forgot Your Password?" (or an admin's reset
    /// email) gets the customer in.
    ResetRequired,
    /// Voided on purpose ("this wasn't me", Require New Password, a legacy password shorter
    /// than the policy): only a reset gets in, and an import never restores a hash over it.
    Voided,
}

impl From<domain::stored_hash::PasswordState> for PasswordState {
    fn from(s: domain::stored_hash::PasswordState) -> Self {
        use domain::stored_hash::PasswordState as D;
        match s {
            D::Set => Self::Set,
            D::Legacy => Self::Legacy,
            D::ResetRequired => Self::ResetRequired,
            D::Voided => Self::Voided,
        }
    }
}

impl From<PasswordState> for domain::stored_hash::PasswordState {
    fn from(s: PasswordState) -> Self {
        match s {
            PasswordState::Set => Self::Set,
            PasswordState::Legacy => Self::Legacy,
            PasswordState::ResetRequired => Self::ResetRequired,
            PasswordState::Voided => Self::Voided,
        }
    }
}
