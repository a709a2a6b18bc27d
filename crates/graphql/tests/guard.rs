//! The guards, without HTTP: the schema executes documents with a principal in the request's
//! context, as the HTTP layer puts it there, and each operation answers each kind of caller
//! as the roles say. (The whole matrix, through the real router, is in `tests/api/admin.rs`;
//! this is where a guard is checked in milliseconds.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_graphql::Request;
use domain::customer::ClientInfo;
use latchkey_graphql::{LatchkeySchema, RequestContext, SchemaOptions, Services, build_schema};
use serde_json::{Value, json};
use testkit::Harness;

fn schema(h: &Harness) -> LatchkeySchema {
    build_schema(
        Services {
            auth: Arc::new(h.auth()),
            accounts: Arc::new(h.accounts()),
            resets: Arc::new(h.resets()),
            admins: Arc::new(h.admins()),
            bulk: Arc::new(h.bulk()),
            email_changes: Arc::new(h.email_changes()),
            erasure: Arc::new(h.erasure()),
            admin_users: Arc::new(h.admin_users()),
            reports: Arc::new(h.reports()),
            factors: Arc::new(h.factors()),
            integrations: Arc::new(h.integrations()),
        },
        &SchemaOptions::default(),
    )
}

/// Runs `query` as the holder of `bearer` (none: anonymous); the response as JSON.
async fn run(
    schema: &LatchkeySchema,
    bearer: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let request = Request::new(query)
        .variables(async_graphql::Variables::from_json(variables))
        .data(RequestContext::new(
            bearer.map(domain::kernel::bearer::BearerToken::new),
            ClientInfo::new("192.0.2.99".parse().ok(), None),
        ));
    serde_json::to_value(schema.execute(request).await).unwrap()
}

fn code(res: &Value) -> &str {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

const GRID: &str = "{ customers(first: 5) { edges { node { email } } } }";
const FORCE_SIGN_IN: &str =
    "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }";
const DELETE: &str = "mutation($id: ID!) { adminDeleteCustomer(customerId: $id) }";

#[tokio::test]
async fn an_admin_field_answers_anonymous_customer_and_each_role_as_the_roles_say() {
    let h = Harness::new().await;
    let schema = schema(&h);
    let customer = h.customer("guarded@example.com").await;
    let id = json!({"id": customer.id.to_string()});
    let customer_token = h.customer_token("guarded@example.com").await;
    let viewer = h.admin_token("viewer1", "viewer").await;
    let support = h.admin_token("support1", "support").await;
    let administrator = h.admin_token("root1", "administrator").await;

    // Nobody, and a customer, get nothing of the admin API.
    assert_eq!(
        code(&run(&schema, None, GRID, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(&run(&schema, Some(&customer_token), GRID, json!({})).await),
        "FORBIDDEN"
    );
    // Every role reads the grid.
    for token in [&viewer, &support, &administrator] {
        let res = run(&schema, Some(token), GRID, json!({})).await;
        assert_eq!(
            res["data"]["customers"]["edges"][0]["node"]["email"], "guarded@example.com",
            "{res}"
        );
    }
    // Force Sign In: support and administrators, not viewers.
    assert_eq!(
        code(&run(&schema, Some(&viewer), FORCE_SIGN_IN, id.clone()).await),
        "FORBIDDEN"
    );
    let res = run(&schema, Some(&support), FORCE_SIGN_IN, id.clone()).await;
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 1,
        "{res}"
    );
    // Deleting a customer: administrators only; a refusal deletes nothing.
    assert_eq!(
        code(&run(&schema, Some(&support), DELETE, id.clone()).await),
        "FORBIDDEN"
    );
    assert_eq!(
        h.count("SELECT COUNT(*) AS n FROM customers").await,
        1,
        "a refused delete changes nothing"
    );
    let res = run(&schema, Some(&administrator), DELETE, id).await;
    assert_eq!(res["data"]["adminDeleteCustomer"], true, "{res}");
}

#[tokio::test]
async fn a_token_of_one_kind_is_no_token_of_the_other() {
    let h = Harness::new().await;
    let schema = schema(&h);
    h.customer("kind@example.com").await;
    let administrator = h.admin_token("root2", "administrator").await;
    let customer_token = h.customer_token("kind@example.com").await;
    // An admin token is not a customer's session.
    let res = run(
        &schema,
        Some(&administrator),
        "{ customer { email } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    let res = run(
        &schema,
        Some(&customer_token),
        "{ customer { email } }",
        json!({}),
    )
    .await;
    assert_eq!(
        res["data"]["customer"]["email"], "kind@example.com",
        "{res}"
    );
    // A customer token is no admin.
    let res = run(
        &schema,
        Some(&customer_token),
        "{ currentAdmin { username } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
}
