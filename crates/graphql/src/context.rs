//! Per-request facts put there by the HTTP layer, and the helpers that turn them into a
//! principal.

use std::sync::Arc;

use async_graphql::Context;
use domain::{
    accounts::CustomerPrincipal,
    admin::AdminAuthError,
    admin::{AdminPrincipal, Permission},
    customer::ClientInfo,
};
use tokio::sync::OnceCell;

use crate::{ApiError, Services, loaders::Loaders};

/// What the HTTP layer knows about the caller.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// The `Authorization: Bearer` value, if any. Never logged.
    pub bearer: Option<String>,
    pub client: ClientInfo,
    /// The admin behind the bearer token, resolved once per request however many guarded
    /// fields ask (a page of 100 customers with four admin-only fields is one look-up).
    admin: Arc<OnceCell<Result<AdminPrincipal, AdminAuthError>>>,
    /// The customer behind the bearer token, resolved once per request the same way (a
    /// document asking for `customer` and `customerSessions` verifies and looks up once).
    customer: Arc<OnceCell<Result<CustomerPrincipal, CustomerAuthError>>>,
    /// Set when a field of this request ended its own session: later fields of the same
    /// document see it signed out.
    signed_out: Arc<std::sync::atomic::AtomicBool>,
    loaders: Arc<std::sync::OnceLock<Loaders>>,
}

/// Why a bearer token is not a signed-in customer's, cheap to cache.
#[derive(Debug, Clone, Copy)]
enum CustomerAuthError {
    Unauthenticated,
    Internal,
}

impl RequestContext {
    pub fn new(bearer: Option<String>, client: ClientInfo) -> Self {
        Self {
            bearer,
            client,
            admin: Arc::default(),
            customer: Arc::default(),
            signed_out: Arc::default(),
            loaders: Arc::default(),
        }
    }
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .finish()
    }
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> Result<&'a Services, ApiError> {
    ctx.data::<Services>()
        .map_err(|_| ApiError::internal("services missing from schema data"))
}

pub(crate) fn request<'a>(ctx: &Context<'a>) -> &'a RequestContext {
    static EMPTY: std::sync::OnceLock<RequestContext> = std::sync::OnceLock::new();
    ctx.data_opt::<RequestContext>()
        .unwrap_or_else(|| EMPTY.get_or_init(RequestContext::default))
}

/// This request's DataLoaders.
pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> Result<&'a Loaders, ApiError> {
    let services = services(ctx)?;
    Ok(request(ctx)
        .loaders
        .get_or_init(|| Loaders::new(&services.admins, &services.accounts)))
}

/// The signed-in admin: UNAUTHENTICATED without a live admin token, FORBIDDEN for a customer
/// token.
pub(crate) async fn admin(ctx: &Context<'_>) -> Result<AdminPrincipal, ApiError> {
    let request = request(ctx);
    let services = services(ctx)?;
    let resolved = request
        .admin
        .get_or_init(|| services.admins.authenticate(request.bearer.as_deref()))
        .await;
    resolved
        .clone()
        .map_err(|e| ApiError::from(domain::Error::from(e)))
}

/// The signed-in admin, if their role grants `permission`; FORBIDDEN otherwise.
pub(crate) async fn admin_with(
    ctx: &Context<'_>,
    permission: Permission,
) -> Result<AdminPrincipal, ApiError> {
    let principal = admin(ctx).await?;
    if principal.admin.role.allows(permission) {
        Ok(principal)
    } else {
        Err(ApiError::from(domain::Error::Forbidden))
    }
}

/// The signed-in customer, or UNAUTHENTICATED; looked up once per request.
pub(crate) async fn customer(ctx: &Context<'_>) -> Result<CustomerPrincipal, ApiError> {
    let request = request(ctx);
    if request
        .signed_out
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(ApiError::from(domain::Error::Unauthenticated));
    }
    let services = services(ctx)?;
    let resolved = request
        .customer
        .get_or_init(|| async {
            match services
                .accounts
                .authenticate(request.bearer.as_deref())
                .await
            {
                Ok(principal) => Ok(principal),
                Err(domain::Error::Unauthenticated) => Err(CustomerAuthError::Unauthenticated),
                Err(e) => {
                    tracing::error!(error = %e, "customer session look-up failed");
                    Err(CustomerAuthError::Internal)
                }
            }
        })
        .await;
    resolved.clone().map_err(|e| {
        ApiError::from(match e {
            CustomerAuthError::Unauthenticated => domain::Error::Unauthenticated,
            CustomerAuthError::Internal => {
                domain::Error::internal("customer authentication failed")
            }
        })
    })
}

/// Records that this request ended its own customer session.
pub(crate) fn customer_signed_out(ctx: &Context<'_>) {
    request(ctx)
        .signed_out
        .store(true, std::sync::atomic::Ordering::Release);
}
