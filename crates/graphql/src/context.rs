//! Per-request facts put there by the HTTP layer, and the helpers that turn them into a
//! principal.

use async_graphql::Context;
use domain::{accounts::CustomerPrincipal, customer::ClientInfo};

use crate::{ApiError, Services};

/// What the HTTP layer knows about the caller.
#[derive(Clone, Default)]
pub struct RequestContext {
    /// The `Authorization: Bearer` value, if any. Never logged.
    pub bearer: Option<String>,
    pub client: ClientInfo,
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

/// The signed-in customer, or UNAUTHENTICATED.
pub(crate) async fn customer(ctx: &Context<'_>) -> Result<CustomerPrincipal, ApiError> {
    let bearer = request(ctx).bearer.as_deref();
    Ok(services(ctx)?.accounts.authenticate(bearer).await?)
}
