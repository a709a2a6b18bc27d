//! Per-request facts put there by the HTTP layer, and the helpers that turn them into a
//! principal.

use std::sync::Arc;

use async_graphql::Context;
use domain::{
    accounts::CustomerPrincipal,
    admin::{AdminPrincipal, Permission},
    auth::Principal,
    customer::ClientInfo,
    kernel::bearer::BearerToken,
    token::TokenKind,
};
use tokio::sync::OnceCell;

use crate::{ApiError, Services, loaders::Loaders};

/// What the HTTP layer knows about the caller.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// The `Authorization: Bearer` value, if any (its `Debug` is redacted).
    pub bearer: Option<BearerToken>,
    pub client: ClientInfo,
    /// The principal behind the bearer token, resolved once per request however many fields
    /// ask, customer or admin alike (a page of 100 customers with four admin-only fields, or a
    /// document asking for `customer` and `customerSessions`, is one look-up).
    principal: Arc<OnceCell<Result<Option<Principal>, AuthFailed>>>,
    /// Set when a field of this request ended its own session: later fields of the same
    /// document see it signed out.
    signed_out: Arc<std::sync::atomic::AtomicBool>,
    loaders: Arc<std::sync::OnceLock<Loaders>>,
}

/// The session look-up itself failed (logged where it happened); cheap to cache.
#[derive(Debug, Clone, Copy)]
struct AuthFailed;

impl RequestContext {
    pub fn new(bearer: Option<BearerToken>, client: ClientInfo) -> Self {
        Self {
            bearer,
            client,
            principal: Arc::default(),
            signed_out: Arc::default(),
            loaders: Arc::default(),
        }
    }
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("bearer", &self.bearer)
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

/// The principal behind this request's bearer token (`None`: no token, or not a live one),
/// looked up once per request.
async fn principal<'a>(ctx: &Context<'a>) -> Result<Option<&'a Principal>, ApiError> {
    let request = request(ctx);
    let services = services(ctx)?;
    let resolved = request
        .principal
        .get_or_init(|| async {
            let Some(bearer) = &request.bearer else {
                return Ok(None);
            };
            match services.auth.authenticate(bearer).await {
                Ok(found) => Ok(found.map(|a| a.principal)),
                Err(e) => {
                    tracing::error!(error = %e, "session look-up failed");
                    Err(AuthFailed)
                }
            }
        })
        .await;
    match resolved {
        Ok(principal) => Ok(principal.as_ref()),
        Err(AuthFailed) => Err(ApiError::from(domain::Error::internal(
            "authentication failed",
        ))),
    }
}

/// The signed-in admin: UNAUTHENTICATED without a live admin token, FORBIDDEN for a customer
/// token (live or signed out: it was never an admin's).
pub(crate) async fn admin(ctx: &Context<'_>) -> Result<AdminPrincipal, ApiError> {
    match principal(ctx).await? {
        Some(Principal::Admin(admin)) => Ok(admin.clone()),
        Some(Principal::Customer(_)) => Err(ApiError::from(domain::Error::Forbidden)),
        None => {
            let customer_token = request(ctx)
                .bearer
                .as_ref()
                .and_then(|b| services(ctx).ok()?.auth.kind_of(b))
                == Some(TokenKind::Customer);
            Err(ApiError::from(if customer_token {
                domain::Error::Forbidden
            } else {
                domain::Error::Unauthenticated
            }))
        }
    }
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

/// The signed-in customer, or UNAUTHENTICATED (an admin token is not a customer's).
pub(crate) async fn customer(ctx: &Context<'_>) -> Result<CustomerPrincipal, ApiError> {
    if request(ctx)
        .signed_out
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Err(ApiError::from(domain::Error::Unauthenticated));
    }
    match principal(ctx).await? {
        Some(Principal::Customer(customer)) => Ok(customer.clone()),
        _ => Err(ApiError::from(domain::Error::Unauthenticated)),
    }
}

/// Records that this request ended its own customer session.
pub(crate) fn customer_signed_out(ctx: &Context<'_>) {
    request(ctx)
        .signed_out
        .store(true, std::sync::atomic::Ordering::Release);
}
