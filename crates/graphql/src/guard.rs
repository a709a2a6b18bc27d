//! Authorization, in one place. Every admin operation and admin-only field is annotated
//! `#[graphql(guard = "RequirePermission(Permission::…)")]`; this guard resolves the admin once
//! per request and checks the role. No token → UNAUTHENTICATED; a customer token, or a role
//! without the permission → FORBIDDEN. A guard that fails runs no resolver, so a denied
//! mutation changes nothing.

use async_graphql::{Context, Guard};
use domain::admin::Permission;

use crate::context::admin_with;

pub struct RequirePermission(pub Permission);

impl Guard for RequirePermission {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        admin_with(ctx, self.0).await?;
        Ok(())
    }
}
