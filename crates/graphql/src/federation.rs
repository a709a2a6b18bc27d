//! Apollo Federation 2: Latchkey is a subgraph whose `Customer` is an entity
//! (`@key(fields: "id")`, resolved by `CustomerQuery::find_customer_by_id` within the caller's
//! rights). `_service { sdl }` tells a gateway the schema; async-graphql answers it whatever
//! the introspection setting, so where introspection is off (production) this extension
//! refuses documents that ask for it, and the supergraph is composed from `latchkey schema
//! --federation` instead.

use std::sync::Arc;

use async_graphql::{
    ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

pub(crate) struct NoSdlWithoutIntrospection;

impl ExtensionFactory for NoSdlWithoutIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Gate)
    }
}

struct Gate;

/// Whether `set` (the root of an operation, through its fragments) selects `_service`.
fn selects_service(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
    if depth > 32 {
        return true;
    }
    set.items.iter().any(|item| match &item.node {
        Selection::Field(f) => f.node.name.node == "_service",
        Selection::InlineFragment(f) => selects_service(doc, &f.node.selection_set.node, depth + 1),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(&s.node.fragment_name.node)
            .is_some_and(|f| selects_service(doc, &f.node.selection_set.node, depth + 1)),
    })
}

#[async_trait::async_trait]
impl Extension for Gate {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if doc
            .operations
            .iter()
            .any(|(_, op)| selects_service(&doc, &op.node.selection_set.node, 0))
        {
            let mut error = ServerError::new(
                "the schema is not served here: introspection is off (compose the supergraph from `latchkey schema --federation`)",
                None,
            );
            error.extensions = Some({
                let mut e = async_graphql::ErrorExtensionValues::default();
                e.set("code", crate::codes::BAD_USER_INPUT);
                e
            });
            return Err(error);
        }
        Ok(doc)
    }
}
