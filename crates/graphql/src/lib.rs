//! Latchkey's GraphQL schema. It knows nothing of HTTP: the server moves the facts it needs
//! (bearer token, client IP, user agent) into [`RequestContext`]; resolvers authorize, convert
//! input to domain types, call a use case and convert back.

mod admin;
mod admin_types;
mod bulk;
mod context;
mod error;
mod factors;
mod federation;
mod guard;
mod integrations;
mod loaders;
mod reset;
mod storefront;
mod types;

use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Schema};
use domain::{accounts::Accounts, admin::Admins, reset::Resets};

pub use context::RequestContext;
pub use error::{ApiError, codes};

/// Everything resolvers may call.
pub struct Services {
    /// Bearer token to principal, for every resolver.
    pub auth: Arc<domain::auth::Authenticator>,
    pub accounts: Arc<Accounts>,
    pub resets: Arc<Resets>,
    pub admins: Arc<Admins>,
    pub bulk: Arc<domain::bulk::BulkJobs>,
    pub email_changes: Arc<domain::email_change::EmailChanges>,
    pub erasure: Arc<domain::erasure::Erasure>,
    pub admin_users: Arc<domain::admin::AdminUsers>,
    pub reports: Arc<domain::report::Reports>,
    /// Admins' second factors and their two-step sign-in.
    pub factors: Arc<domain::factors::AdminFactors>,
    /// Security-event subscriptions and their deliveries.
    pub integrations: Arc<domain::events::Integrations>,
}

#[derive(MergedObject, Default)]
pub struct Query(
    storefront::CustomerQuery,
    admin::AdminQuery,
    bulk::BulkQuery,
    integrations::IntegrationsQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    storefront::CustomerMutation,
    reset::ResetMutation,
    admin::AdminMutation,
    factors::FactorMutation,
    bulk::BulkMutation,
    integrations::IntegrationsMutation,
);

pub type LatchkeySchema = Schema<Query, Mutation, EmptySubscription>;

/// Validation limits (depth, complexity, aliases; docs/security.md). Defaults allow GraphiQL's introspection query.
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_directives: usize,
    pub max_recursive_depth: usize,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            introspection: false,
            max_depth: 15,
            max_complexity: 500,
            max_directives: 8,
            max_recursive_depth: 32,
        }
    }
}

pub fn build_schema(services: Services, options: &SchemaOptions) -> LatchkeySchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .enable_federation()
        .data(services)
        .limit_depth(options.max_depth)
        .limit_complexity(options.max_complexity)
        .limit_directives(options.max_directives)
        .limit_recursive_depth(options.max_recursive_depth);
    if !options.introspection {
        // Suggestions ("Did you mean …") reveal the schema just as introspection does, and
        // so does federation's `_service { sdl }`.
        builder = builder
            .disable_introspection()
            .disable_suggestions()
            .extension(federation::NoSdlWithoutIntrospection);
    }
    builder.finish()
}

/// The SDL a federation gateway composes (what `_service { sdl }` answers): `latchkey schema
/// --federation`.
pub fn federation_sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .enable_federation()
        .finish()
        .sdl_with_options(
            async_graphql::SDLExportOptions::new()
                .federation()
                .compose_directive(),
        )
}

/// The SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .finish()
        .sdl()
}
