//! Latchkey as an Apollo Federation 2 subgraph behind a real `@apollo/gateway`, composed with a
//! tiny `orders` subgraph (tests/node/federation.mjs); the caller's bearer token is forwarded,
//! and `Customer` entities resolve only within the caller's rights.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::helpers::{Backend, PASSWORD, TestApp, code};

crate::tests![
    node_a_gateway_composes_latchkey_with_an_orders_subgraph,
    entities_resolve_only_within_the_callers_rights,
    a_gateways_batch_of_entities_costs_constant_statements,
];

async fn through(gateway: &str, token: Option<&str>, query: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(gateway)
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn node_a_gateway_composes_latchkey_with_an_orders_subgraph(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for email in ["ann@example.com", "bob@example.com"] {
        app.create_customer(email, PASSWORD).await;
    }
    let (ann, bob) = (
        app.customer_id("ann@example.com").await,
        app.customer_id("bob@example.com").await,
    );
    let ann_token = app.sign_in("ann@example.com", PASSWORD).await;
    let bob_token = app.sign_in("bob@example.com", PASSWORD).await;
    let orders = json!({ ann.clone(): ["a1", "a2"], bob.clone(): ["b1"] });
    let mut child = crate::node::spawn(
        "federation.mjs",
        &[
            ("LATCHKEY_URL", app.url("/graphql")),
            ("ORDERS", orders.to_string()),
        ],
    );
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // Apollo Server prints notices first; the address is the line that says `gateway`.
    let gateway: Value = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the gateway printed its address");
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v.get("gateway").is_some()
            {
                return v;
            }
        }
    })
    .await
    .expect("the gateway started");
    let gateway = gateway["gateway"].as_str().unwrap().to_owned();

    // Latchkey's root field, with the orders subgraph's field on the same customer.
    let res = through(
        &gateway,
        Some(&ann_token),
        "{ customer { email orders { id } } }",
    )
    .await;
    assert_eq!(
        res["data"],
        json!({"customer": {"email": "ann@example.com", "orders": [{"id": "a1"}, {"id": "a2"}]}}),
        "{res}"
    );
    // The other way: the orders subgraph's root field, the customer from Latchkey's
    // `_entities`, with the forwarded token deciding what resolves.
    let query = |id: &str| format!("{{ order(id: \"{id}\") {{ id customer {{ email }} }} }}");
    let own = through(&gateway, Some(&ann_token), &query("a1")).await;
    assert_eq!(
        own["data"]["order"]["customer"]["email"], "ann@example.com",
        "{own}"
    );
    let other = through(&gateway, Some(&ann_token), &query("b1")).await;
    assert_eq!(other["data"]["order"]["customer"], Value::Null, "{other}");
    let anonymous = through(&gateway, None, &query("b1")).await;
    assert_eq!(
        anonymous["data"]["order"]["customer"],
        Value::Null,
        "{anonymous}"
    );
    let bobs = through(&gateway, Some(&bob_token), &query("b1")).await;
    assert_eq!(
        bobs["data"]["order"]["customer"]["email"], "bob@example.com",
        "{bobs}"
    );
    let support = app.admin_token("support").await;
    let admin = through(&gateway, Some(&support), &query("b1")).await;
    assert_eq!(
        admin["data"]["order"]["customer"]["email"], "bob@example.com",
        "{admin}"
    );
    // Without a token, Latchkey's own root field is refused as it is without a gateway.
    let res = through(&gateway, None, "{ customer { email } }").await;
    assert_eq!(code(&res), "UNAUTHENTICATED", "{res}");
    drop(child);
}

const ENTITIES: &str =
    "query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { id email } } }";

async fn entities_resolve_only_within_the_callers_rights(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("own@example.com", PASSWORD).await;
    app.create_customer("else@example.com", PASSWORD).await;
    let own = app.customer_id("own@example.com").await;
    let other = app.customer_id("else@example.com").await;
    let token = app.sign_in("own@example.com", PASSWORD).await;
    let reps = json!({"r": [
        {"__typename": "Customer", "id": own},
        {"__typename": "Customer", "id": other},
        {"__typename": "Customer", "id": "not-a-uuid"},
    ]});
    let as_customer = app.gql_as(Some(&token), ENTITIES, reps.clone()).await;
    assert_eq!(
        as_customer["data"]["_entities"],
        json!([{"id": own, "email": "own@example.com"}, null, null]),
        "{as_customer}"
    );
    let anonymous = app.gql_as(None, ENTITIES, reps.clone()).await;
    assert_eq!(
        anonymous["data"]["_entities"],
        json!([null, null, null]),
        "{anonymous}"
    );
    let viewer = app.admin_token("viewer").await;
    let as_viewer = app.gql_as(Some(&viewer), ENTITIES, reps.clone()).await;
    assert_eq!(
        as_viewer["data"]["_entities"][1]["email"], "else@example.com",
        "{as_viewer}"
    );
    // The subgraph SDL is what a gateway composes: Customer is an entity keyed by id.
    let sdl = app.gql("{ _service { sdl } }", json!({})).await;
    let sdl = sdl["data"]["_service"]["sdl"].as_str().unwrap().to_owned();
    assert!(sdl.contains("type Customer @key(fields: \"id\")"), "{sdl}");
    assert!(sdl.contains("specs.apollo.dev/federation/v2"), "{sdl}");
}

/// A gateway resolving a page of orders sends every customer reference in one `_entities`
/// call: fifty references must cost what one does, not fifty look-ups.
async fn a_gateways_batch_of_entities_costs_constant_statements(backend: Backend) {
    use std::sync::atomic::Ordering;
    let app = TestApp::spawn(backend).await;
    app.set_settings("max_registrations_per_ip_per_hour = 1000")
        .await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let email = format!("batch{i:02}@example.com");
        app.create_customer(&email, PASSWORD).await;
        ids.push(app.customer_id(&email).await);
    }
    let viewer = app.admin_token("viewer").await;
    // The admin's token is verified (and cached for the request) by a first call.
    app.gql_as(Some(&viewer), "{ __typename }", json!({})).await;
    let mut costs = Vec::new();
    for n in [1usize, 10, 50] {
        let reps: Vec<Value> = ids[..n]
            .iter()
            .map(|id| json!({"__typename": "Customer", "id": id}))
            .collect();
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = app.statements.load(Ordering::SeqCst);
            let res = app
                .gql_as(Some(&viewer), ENTITIES, json!({"r": reps}))
                .await;
            let after = app.statements.load(Ordering::SeqCst);
            let found = res["data"]["_entities"].as_array().unwrap();
            assert_eq!(found.len(), n, "{res}");
            for (i, entity) in found.iter().enumerate() {
                assert_eq!(entity["email"], format!("batch{i:02}@example.com"), "{res}");
            }
            least = least.min(after - before);
        }
        costs.push(least);
    }
    println!("statements for 1, 10, 50 representations: {costs:?}");
    assert!(
        costs.iter().all(|c| *c <= costs[0]),
        "statements grew with the batch: {costs:?}"
    );
}
