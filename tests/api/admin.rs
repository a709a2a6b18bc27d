//! The admin side: roles and guards (one table drives the whole authorization matrix), the
//! customers grid, "Reset Password", "Force Sign In", settings and the audit log.

use std::sync::atomic::Ordering;

use chrono::Duration;
use domain::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, code};

crate::tests![
    every_admin_operation_answers_each_role_as_the_matrix_says,
    a_denied_mutation_changes_nothing,
    customer_and_admin_tokens_cannot_stand_in_for_each_other,
    admin_sign_in_locks_out_and_fails_indistinguishably,
    a_role_change_takes_effect_on_the_next_request,
    the_grid_pages_searches_filters_and_sorts,
    grid_cursors_are_stable_under_inserts_and_pages_are_capped,
    the_grid_search_is_width_blind_indexed_and_counts_past_a_thousand_as_an_estimate,
    the_grid_filters_by_lock_session_and_last_reset_email,
    customers_stored_before_the_search_index_are_found_after_the_upgrade,
    a_page_of_customers_with_every_admin_field_costs_constant_statements,
    admin_reset_password_sends_the_storefront_mail_and_is_audited_and_limited,
    force_sign_in_revokes_every_token_and_reports_the_count,
    password_settings_are_validated_and_effective_at_once,
    the_audit_log_pages_and_filters,
    latchkey_admin_create_takes_the_password_from_the_environment_only,
    current_admin_lists_the_role_permissions_and_sign_out_ends_the_token,
];

/// Every admin operation and admin-only field, with the permission it needs. A new operation
/// must get a row: `every_admin_operation_answers_each_role_as_the_matrix_says` fails for any
/// root field of the schema that is neither here nor in `STOREFRONT`.
const MATRIX: &[(&str, &str, Permission)] = &[
    (
        "customers",
        "{ customers(first: 5) { totalCount } }",
        Permission::CustomersRead,
    ),
    (
        "customerById",
        "query($id: ID!) { customerById(id: $id) { email } }",
        Permission::CustomersRead,
    ),
    (
        "Customer.activeTokenCount",
        "query($id: ID!) { customerById(id: $id) { activeTokenCount } }",
        Permission::CustomersRead,
    ),
    (
        "Customer.lockedUntil",
        "query($id: ID!) { customerById(id: $id) { lockedUntil } }",
        Permission::CustomersRead,
    ),
    (
        "Customer.passwordChangedAt",
        "query($id: ID!) { customerById(id: $id) { passwordChangedAt } }",
        Permission::CustomersRead,
    ),
    (
        "Customer.lastResetRequestedAt",
        "query($id: ID!) { customerById(id: $id) { lastResetRequestedAt } }",
        Permission::CustomersRead,
    ),
    (
        "undeliveredMail",
        "{ undeliveredMail { id status } }",
        Permission::SettingsRead,
    ),
    (
        "passwordSettings",
        "{ passwordSettings { minPasswordLength } }",
        Permission::SettingsRead,
    ),
    (
        "auditLog",
        "{ auditLog { totalCount } }",
        Permission::AuditRead,
    ),
    (
        "adminResetPassword",
        "mutation($id: ID!) { adminResetPassword(customerId: $id) }",
        Permission::CustomersResetPassword,
    ),
    (
        "revokeCustomerTokens",
        "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
        Permission::CustomersRevokeTokens,
    ),
    (
        "unlockCustomer",
        "mutation($id: ID!) { unlockCustomer(customerId: $id) }",
        Permission::CustomersRevokeTokens,
    ),
    (
        "updatePasswordSettings",
        "mutation { updatePasswordSettings(input: {lockoutMinutes: 10}) { lockoutMinutes } }",
        Permission::SettingsManage,
    ),
    // Bulk actions also need the single action's permission; only administrators hold
    // CUSTOMERS_BULK, and they hold every other.
    (
        "startBulkAction",
        "mutation($id: ID!) { startBulkAction(action: REQUIRE_NEW_PASSWORD, selection: {customerIds: [$id]}) { id total } }",
        Permission::CustomersBulk,
    ),
    (
        "bulkJob",
        "query($job: ID!) { bulkJob(id: $job) { id status } }",
        Permission::CustomersBulk,
    ),
    (
        "bulkJobs",
        "{ bulkJobs { totalCount } }",
        Permission::CustomersBulk,
    ),
    (
        "cancelBulkJob",
        "mutation($job: ID!) { cancelBulkJob(id: $job) { id status } }",
        Permission::CustomersBulk,
    ),
    // Without `customerId` it is the signed-in customer's own export (STOREFRONT's rules).
    (
        "customerDataExport",
        "query($id: ID!) { customerDataExport(customerId: $id) }",
        Permission::CustomersExport,
    ),
    (
        "adminUsers",
        "{ adminUsers { id username role disabled } }",
        Permission::AdminUsersManage,
    ),
    (
        "createAdminUser",
        "mutation { createAdminUser(username: \"matrix-invitee\", email: \"invitee@example.com\", role: VIEWER) { id } }",
        Permission::AdminUsersManage,
    ),
    (
        "updateAdminUser",
        "mutation($admin: ID!) { updateAdminUser(id: $admin, role: VIEWER) { id role } }",
        Permission::AdminUsersManage,
    ),
    (
        "revokeAdminTokens",
        "mutation($admin: ID!) { revokeAdminTokens(adminId: $admin) { revokedCount } }",
        Permission::AdminUsersManage,
    ),
    (
        "adminRecoverCustomer",
        "mutation($id: ID!) { adminRecoverCustomer(customerId: $id) { id } }",
        Permission::CustomersRecover,
    ),
    // Last: the administrator's call deletes the customer the other rows act on.
    (
        "adminDeleteCustomer",
        "mutation($id: ID!) { adminDeleteCustomer(customerId: $id) }",
        Permission::CustomersDelete,
    ),
    (
        "eventSubscriptions",
        "{ eventSubscriptions { id name } }",
        Permission::IntegrationsManage,
    ),
    (
        "createEventSubscription",
        "mutation { createEventSubscription(input: {name: \"matrix\", url: \"http://127.0.0.1:9/hook\", format: SSF_SET, eventTypes: [SESSION_REVOKED]}) { subscription { id } } }",
        Permission::IntegrationsManage,
    ),
    // The rows below name a subscription nobody made: past the guard, NOT_FOUND.
    (
        "eventDeliveries",
        "{ eventDeliveries(subscriptionId: \"01000000-0000-7000-8000-000000000000\") { id } }",
        Permission::IntegrationsManage,
    ),
    (
        "updateEventSubscription",
        "mutation { updateEventSubscription(id: \"01000000-0000-7000-8000-000000000000\", input: {enabled: false}) { id } }",
        Permission::IntegrationsManage,
    ),
    (
        "deleteEventSubscription",
        "mutation { deleteEventSubscription(id: \"01000000-0000-7000-8000-000000000000\") }",
        Permission::IntegrationsManage,
    ),
    (
        "rotateEventSubscriptionSecret",
        "mutation { rotateEventSubscriptionSecret(id: \"01000000-0000-7000-8000-000000000000\") }",
        Permission::IntegrationsManage,
    ),
    (
        "sendTestEvent",
        "mutation { sendTestEvent(subscriptionId: \"01000000-0000-7000-8000-000000000000\") { id } }",
        Permission::IntegrationsManage,
    ),
    (
        "replayEventDeliveries",
        "mutation { replayEventDeliveries(subscriptionId: \"01000000-0000-7000-8000-000000000000\") }",
        Permission::IntegrationsManage,
    ),
    (
        "resetAdminFactors",
        "mutation($admin: ID!) { resetAdminFactors(adminId: $admin, password: \"admin-Password-2026\") { revokedCount } }",
        Permission::AdminUsersManage,
    ),
];

/// Root fields open to storefronts and to anyone signing in.
const STOREFRONT: &[&str] = &[
    "customer",
    "customerSessions",
    "passwordPolicy",
    "authMethods",
    "unlockSignIn",
    "createCustomer",
    "generateCustomerToken",
    "revokeCustomerToken",
    "changeCustomerPassword",
    "revokeCustomerSession",
    "updateCustomer",
    "requestCustomerEmailChange",
    "confirmCustomerEmailChange",
    "cancelCustomerEmailChange",
    "releaseCustomerAccount",
    "deleteCustomer",
    "setAdminPassword",
    "requestAdminPasswordReset",
    "requestPasswordReset",
    "resetPassword",
    "requestPasswordResetCode",
    "resetPasswordWithCode",
    "reportUnrecognizedActivity",
    "requestSignInCode",
    "signInWithCode",
    "generateAdminToken",
    "startAdminSignIn",
    "completeAdminSignIn",
    "startAdminEnrolment",
    "completeAdminEnrolment",
    "completeAdminSignInWithPasskey",
];

/// Root fields every signed-in admin has, whatever the role (tested in
/// `current_admin_lists_the_role_permissions_and_sign_out_ends_the_token`).
/// Each admin's own second factors are theirs to manage (tests/api/factors.rs).
const ANY_ADMIN: &[&str] = &[
    "currentAdmin",
    "revokeAdminToken",
    "startTotpEnrolment",
    "confirmTotpEnrolment",
    "removeAdminFactor",
    "generateRecoveryCodes",
    "revokeDeviceGrant",
    "startPasskeyEnrolment",
    "completePasskeyEnrolment",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    CustomersRead,
    CustomersResetPassword,
    CustomersRevokeTokens,
    SettingsRead,
    SettingsManage,
    AuditRead,
    CustomersBulk,
    CustomersDelete,
    AdminUsersManage,
    CustomersRecover,
    CustomersExport,
    IntegrationsManage,
}

/// The roles (docs/admin.md), written out independently of the server's table.
fn granted(role: &str, p: Permission) -> bool {
    use Permission::*;
    match role {
        "administrator" => true,
        "support" => matches!(
            p,
            CustomersRead | CustomersResetPassword | CustomersRevokeTokens
        ),
        "viewer" => p == CustomersRead,
        _ => false,
    }
}

fn root_fields(sdl: &str, type_name: &str) -> Vec<String> {
    let start = sdl.find(&format!("type {type_name} {{")).unwrap();
    let body = &sdl[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    // Descriptions ("""…""" blocks, of fields and of arguments) are prose, not fields.
    let mut text = String::new();
    let mut rest = body;
    while let Some(open) = rest.find("\"\"\"") {
        text.push_str(&rest[..open]);
        let after = &rest[open + 3..];
        rest = after.find("\"\"\"").map_or("", |close| &after[close + 3..]);
    }
    text.push_str(rest);
    // A field starts a line outside any argument list (which may span lines).
    let mut depth = 0usize;
    let mut fields = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if depth == 0
            && let Some(name) = line.split(['(', ':']).next().map(str::trim)
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            fields.push(name.to_owned());
        }
        depth = (depth + line.matches('(').count()).saturating_sub(line.matches(')').count());
    }
    fields
}

async fn every_admin_operation_answers_each_role_as_the_matrix_says(backend: Backend) {
    // No operation escapes the matrix.
    let sdl = graphql::sdl();
    for field in root_fields(&sdl, "Query")
        .into_iter()
        .chain(root_fields(&sdl, "Mutation"))
    {
        assert!(
            STOREFRONT.contains(&field.as_str())
                || ANY_ADMIN.contains(&field.as_str())
                || MATRIX.iter().any(|(name, _, _)| *name == field),
            "{field} has no row in the authorization matrix"
        );
    }
    let app = TestApp::spawn(backend).await;
    // Admin resets are limited per customer; let every allowed role send one.
    app.set_settings("min_seconds_between_reset_requests = 0, max_reset_requests_per_hour = 100")
        .await;
    app.create_customer("matrix@example.com", PASSWORD).await;
    let customer_token = app.sign_in("matrix@example.com", PASSWORD).await;
    let id = app.customer_id("matrix@example.com").await;
    let mut callers: Vec<(&str, Option<String>)> =
        vec![("anonymous", None), ("customer", Some(customer_token))];
    for role in ["viewer", "support", "administrator"] {
        callers.push((role, Some(app.admin_token(role).await)));
    }
    // A job (with nobody to do: finished at once) for the rows that read or cancel one.
    let started = app
        .gql_as(
            callers.last().unwrap().1.as_deref(),
            "mutation { startBulkAction(action: FORCE_SIGN_IN, selection: {customerIds: []}) { id status } }",
            json!({}),
        )
        .await;
    assert_eq!(
        started["data"]["startBulkAction"]["status"], "FINISHED",
        "{started}"
    );
    let job = started["data"]["startBulkAction"]["id"].clone();
    // An admin the admin-user rows act on, who is none of the callers.
    let bystander = app.admin_token("viewer").await;
    let bystander_id = app
        .gql_as(Some(&bystander), "{ currentAdmin { id } }", json!({}))
        .await["data"]["currentAdmin"]["id"]
        .clone();
    for (name, document, permission) in MATRIX {
        for (caller, token) in &callers {
            let res = app
                .gql_as(
                    token.as_deref(),
                    document,
                    json!({"id": id, "job": job, "admin": bystander_id}),
                )
                .await;
            let expected = match *caller {
                "anonymous" => Some("UNAUTHENTICATED"),
                "customer" => Some("FORBIDDEN"),
                role if granted(role, *permission) => None,
                _ => Some("FORBIDDEN"),
            };
            match expected {
                // Allowed: no error, or (recovering an account that is not frozen) the
                // input refused for what it is, past the guard.
                None if *name == "adminRecoverCustomer" => {
                    assert_eq!(code(&res), "BAD_USER_INPUT", "{name} as {caller}: {res}")
                }
                None if [
                    "eventDeliveries",
                    "updateEventSubscription",
                    "deleteEventSubscription",
                    "rotateEventSubscriptionSecret",
                    "sendTestEvent",
                    "replayEventDeliveries",
                ]
                .contains(name) =>
                {
                    assert_eq!(code(&res), "NOT_FOUND", "{name} as {caller}: {res}")
                }
                None => assert!(res["errors"].is_null(), "{name} as {caller}: {res}"),
                Some(c) => assert_eq!(code(&res), c, "{name} as {caller}: {res}"),
            }
        }
    }
}

async fn a_denied_mutation_changes_nothing(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("denied@example.com", PASSWORD).await;
    let session = app.sign_in("denied@example.com", PASSWORD).await;
    let id = app.customer_id("denied@example.com").await;
    let viewer = app.admin_token("viewer").await;
    let audited = app.count("audit_log").await;
    for token in [Some(viewer.as_str()), Some(session.as_str()), None] {
        for (_, document, permission) in MATRIX {
            if document.starts_with("mutation") && *permission != Permission::CustomersRead {
                app.gql_as(token, document, json!({"id": id})).await;
            }
        }
    }
    assert_eq!(
        app.count("audit_log").await,
        audited,
        "no refusal is audited"
    );
    assert!(app.whoami(&session).await.is_ok(), "no token was revoked");
    assert_eq!(app.audited().await, 0);
    assert_eq!(app.count("password_reset_tokens").await, 0);
    assert!(smtp.settled(&app).await.is_empty(), "no mail was sent");
}

async fn customer_and_admin_tokens_cannot_stand_in_for_each_other(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("alice@example.com", PASSWORD).await;
    app.create_customer("bob@example.com", PASSWORD).await;
    let alice = app.sign_in("alice@example.com", PASSWORD).await;
    let bob = app.sign_in("bob@example.com", PASSWORD).await;
    let bob_id = app.customer_id("bob@example.com").await;
    // IDOR: a customer can never act on another customer through the admin API.
    for document in [
        "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
        "mutation($id: ID!) { adminResetPassword(customerId: $id) }",
        "query($id: ID!) { customerById(id: $id) { email } }",
    ] {
        let res = app
            .gql_as(Some(&alice), document, json!({"id": bob_id}))
            .await;
        assert_eq!(code(&res), "FORBIDDEN", "{res}");
    }
    assert!(app.whoami(&bob).await.is_ok());
    // An admin token is no customer token, and admin-only fields stay admin-only.
    let admin = app.admin_token("administrator").await;
    assert_eq!(app.whoami(&admin).await, Err("UNAUTHENTICATED".into()));
    let res = app
        .gql_as(
            Some(&alice),
            "{ customer { email activeTokenCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN");
    // Secrets are no fields of any type.
    let sdl = graphql::sdl().to_lowercase();
    for secret in ["passwordhash", "tokenhash", "password_hash"] {
        assert!(!sdl.contains(secret), "{secret}");
    }
}

async fn admin_sign_in_locks_out_and_fails_indistinguishably(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    latchkey::create_admin(&app.config, "lockme", "support", "admin-Password-2026")
        .await
        .unwrap();
    let attempt = |u: &'static str, p: &'static str| app.admin_sign_in(u, p);
    let wrong = attempt("lockme", "wrong-password").await;
    let unknown = attempt("nobody", "wrong-password").await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED");
    assert_eq!(wrong, unknown);
    for _ in 0..9 {
        attempt("lockme", "wrong-password").await;
    }
    assert_eq!(
        code(&attempt("lockme", "admin-Password-2026").await),
        "AUTHENTICATION_FAILED"
    );
    app.clock.advance(Duration::minutes(10));
    let ok = attempt("lockme", "admin-Password-2026").await;
    assert!(ok["token"].is_string(), "{ok}");
}

async fn a_role_change_takes_effect_on_the_next_request(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn(backend).await;
    let token = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&token),
            "{ passwordSettings { minPasswordLength } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null());
    // Straight on the database, as an operator's script would: it reaches the session cache
    // through the log (a change made through Latchkey waits for that before it answers).
    app.db
        .execute_unprepared("UPDATE admin_users SET role = 'viewer'")
        .await
        .unwrap();
    app.caches_applied().await;
    let res = app
        .gql_as(
            Some(&token),
            "{ passwordSettings { minPasswordLength } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN");
}

async fn create_named(app: &TestApp, email: &str, first: &str, last: &str) {
    let res = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": email, "firstname": first, "lastname": last, "password": PASSWORD}}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
}

const GRID: &str = "query($f: CustomerFilter, $s: CustomerSort, $n: Int, $a: String) {
    customers(filter: $f, sort: $s, first: $n, after: $a) {
        totalCount pageInfo { hasNextPage endCursor } edges { cursor node { email firstname lastname } }
    } }";

fn emails(res: &Value) -> Vec<String> {
    res["data"]["customers"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{res}"))
        .iter()
        .map(|e| e["node"]["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_grid_pages_searches_filters_and_sorts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("viewer").await;
    let start = app.clock.now();
    for i in 0..12 {
        create_named(
            &app,
            &format!("c{i:02}@example.com"),
            &format!("First{i:02}"),
            &format!("Last{:02}", 11 - i),
        )
        .await;
        app.clock.advance(Duration::minutes(1));
    }
    create_named(&app, "Tanaka.Taro@Example.jp", "太郎", "田中").await;
    // Newest first by default, 5 a page, 13 in all.
    let p1 = app.gql_as(Some(&admin), GRID, json!({"n": 5})).await;
    assert_eq!(p1["data"]["customers"]["totalCount"], 13);
    assert_eq!(emails(&p1)[0], "Tanaka.Taro@Example.jp");
    let mut seen = emails(&p1);
    let mut after = p1["data"]["customers"]["pageInfo"]["endCursor"].clone();
    while !after.is_null() {
        let page = app
            .gql_as(Some(&admin), GRID, json!({"n": 5, "a": after}))
            .await;
        seen.extend(emails(&page));
        after = if page["data"]["customers"]["pageInfo"]["hasNextPage"] == true {
            page["data"]["customers"]["pageInfo"]["endCursor"].clone()
        } else {
            Value::Null
        };
    }
    assert_eq!(seen.len(), 13);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 13, "no row twice");
    // Search: email, names, case-insensitive, and LIKE wildcards are literal.
    let res = app
        .gql_as(Some(&admin), GRID, json!({"f": {"search": "TANAKA"}}))
        .await;
    assert_eq!(emails(&res), ["Tanaka.Taro@Example.jp"]);
    let res = app
        .gql_as(Some(&admin), GRID, json!({"f": {"search": "田中"}}))
        .await;
    assert_eq!(emails(&res).len(), 1);
    let res = app
        .gql_as(Some(&admin), GRID, json!({"f": {"search": "first0"}}))
        .await;
    assert_eq!(res["data"]["customers"]["totalCount"], 10);
    let res = app
        .gql_as(Some(&admin), GRID, json!({"f": {"search": "%"}}))
        .await;
    assert_eq!(res["data"]["customers"]["totalCount"], 0);
    // Created-date range.
    let res = app
        .gql_as(
            Some(&admin),
            GRID,
            json!({"f": {"createdFrom": (start + Duration::minutes(3)).to_rfc3339(), "createdTo": (start + Duration::minutes(5)).to_rfc3339()}}),
        )
        .await;
    assert_eq!(
        emails(&res),
        ["c05@example.com", "c04@example.com", "c03@example.com"]
    );
    // Sort by email ascending, by name.
    let res = app
        .gql_as(
            Some(&admin),
            GRID,
            json!({"s": {"field": "EMAIL", "direction": "ASC"}, "n": 3}),
        )
        .await;
    assert_eq!(
        emails(&res),
        ["c00@example.com", "c01@example.com", "c02@example.com"]
    );
    let res = app
        .gql_as(
            Some(&admin),
            GRID,
            json!({"s": {"field": "NAME", "direction": "ASC"}, "n": 2}),
        )
        .await;
    assert_eq!(emails(&res), ["c11@example.com", "c10@example.com"]);
}

const COUNTED: &str = "query($f: CustomerFilter, $n: Int) {
    customers(filter: $f, first: $n) { totalCount totalCountIsEstimate edges { node { email } } } }";

/// (totalCount, totalCountIsEstimate, emails of the first page).
async fn counted(
    app: &TestApp,
    admin: &str,
    filter: Value,
    first: i64,
) -> (i64, bool, Vec<String>) {
    let res = app
        .gql_as(Some(admin), COUNTED, json!({"f": filter, "n": first}))
        .await;
    let c = &res["data"]["customers"];
    (
        c["totalCount"].as_i64().unwrap_or_else(|| panic!("{res}")),
        c["totalCountIsEstimate"].as_bool().unwrap(),
        emails(&res),
    )
}

async fn the_grid_search_is_width_blind_indexed_and_counts_past_a_thousand_as_an_estimate(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("viewer").await;
    // 2,500 customers brought in by the import, one second apart, oldest first; the oldest is
    // the one whose name is written in full-width and half-width letters.
    let start = chrono::Utc::now() - Duration::days(1);
    let mut csv = String::from("email,firstname,lastname,created_at\n");
    csv.push_str(&format!(
        "taro@example.jp,ﾀﾛｳ,ＴＡＮＡＫＡ,{}\n",
        start.to_rfc3339()
    ));
    for i in 1..2500 {
        csv.push_str(&format!(
            "shopper{i}@example.com,Shopper,Number{i},{}\n",
            (start + Duration::seconds(i)).to_rfc3339()
        ));
    }
    let path = app.config.mail_dir.parent().unwrap().join("grid.csv");
    std::fs::write(&path, csv).unwrap();
    let out = app
        .command(&["import", "customers", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Width and case blind, both name orders; the oldest row is beyond the first 2,000 rows
    // in the grid's order, so the index finds it.
    for query in [
        "tanaka",
        "ＴＡＮＡＫＡ",
        "タロウ",
        "ﾀﾛｳ ｔａｎａｋａ",
        "tanaka タロウ",
        "TARO@EXAMPLE",
    ] {
        let (n, estimate, page) = counted(&app, &admin, json!({"search": query}), 20).await;
        assert_eq!(
            (n, estimate, page),
            (1, false, vec!["taro@example.jp".to_owned()]),
            "{query}"
        );
    }
    // Sorted and counted exactly below 1,000: number14, number140-149, number1400-1499.
    let (n, estimate, page) = counted(&app, &admin, json!({"search": "number14"}), 3).await;
    assert_eq!((n, estimate), (111, false));
    assert_eq!(
        page,
        [
            "shopper1499@example.com",
            "shopper1498@example.com",
            "shopper1497@example.com"
        ]
    );
    // Past 1,000: an estimate, said to be one, never below what was counted.
    let (n, estimate, page) = counted(&app, &admin, json!({"search": "shopper"}), 2).await;
    assert!(estimate && n > 1000, "{n} {estimate}");
    assert_eq!(page, ["shopper2499@example.com", "shopper2498@example.com"]);
    let (n, estimate, _) = counted(&app, &admin, json!({}), 1).await;
    assert!(estimate && n > 1000, "{n} {estimate}");
    // The other filters narrow the estimate's selection too: exact again.
    let from = (start + Duration::seconds(2400)).to_rfc3339();
    let (n, estimate, _) = counted(
        &app,
        &admin,
        json!({"search": "shopper", "createdFrom": from}),
        1,
    )
    .await;
    assert_eq!((n, estimate), (100, false));
    // A query is at most 100 characters.
    let res = app
        .gql_as(
            Some(&admin),
            COUNTED,
            json!({"f": {"search": "x".repeat(101)}}),
        )
        .await;
    assert_eq!(code(&res), "BAD_USER_INPUT");
}

async fn the_grid_filters_by_lock_session_and_last_reset_email(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let admin = app.admin_token("viewer").await;
    for email in [
        "locked@example.com",
        "online@example.com",
        "reset@example.com",
        "quiet@example.com",
    ] {
        app.create_customer(email, PASSWORD).await;
    }
    for _ in 0..10 {
        app.sign_in_response("locked@example.com", "wrong-guess")
            .await;
    }
    let token = app.sign_in("online@example.com", PASSWORD).await;
    let before = app.clock.now();
    app.clock.advance(Duration::minutes(5));
    app.request_reset("reset@example.com").await;
    smtp.wait_for(1).await;
    // The grid reads when the mail was sent: its row is marked a moment after SMTP took it.
    app.mail_settled().await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let grid = |f: Value| {
        let app = &app;
        let admin = &admin;
        async move { sorted(counted(app, admin, f, 100).await.2) }
    };
    assert_eq!(grid(json!({"locked": true})).await, ["locked@example.com"]);
    assert_eq!(grid(json!({"locked": false})).await.len(), 3);
    assert_eq!(
        grid(json!({"signedIn": true})).await,
        ["online@example.com"]
    );
    assert_eq!(grid(json!({"signedIn": false})).await.len(), 3);
    let after = app.clock.now() + Duration::minutes(1);
    assert_eq!(
        grid(json!({"lastResetFrom": before.to_rfc3339()})).await,
        ["reset@example.com"]
    );
    assert_eq!(
        grid(json!({"lastResetFrom": before.to_rfc3339(), "lastResetTo": after.to_rfc3339()}))
            .await,
        ["reset@example.com"]
    );
    // Its newest reset email is after this range's end: not "last reset email in range".
    assert!(
        grid(json!({"lastResetTo": before.to_rfc3339()}))
            .await
            .is_empty()
    );
    // The lock ends and the session is signed out: the filters follow at once.
    app.clock.advance(Duration::minutes(11));
    assert!(grid(json!({"locked": true})).await.is_empty());
    app.gql_as(Some(&token), "mutation { revokeCustomerToken }", json!({}))
        .await;
    assert!(grid(json!({"signedIn": true})).await.is_empty());
}

async fn customers_stored_before_the_search_index_are_found_after_the_upgrade(backend: Backend) {
    use migration::MigratorTrait;
    let mut app = TestApp::spawn(backend).await;
    create_named(&app, "kim@example.kr", "민준", "김").await;
    create_named(&app, "ann@example.com", "Ann", "Lee").await;
    // An upgrade from the release before the search index, as an operator runs it: the
    // server stopped, the schema taken back to that release (every later migration undone,
    // then the index's own: column and index dropped) on a connection of its own, then the
    // server started again (SQLite migrates on start; PostgreSQL with `latchkey migrate`).
    // Existing rows are filled in.
    app.stop().await;
    let migrations = migration::Migrator::migrations();
    let search = migrations
        .iter()
        .position(|m| m.name().ends_with("_search"))
        .unwrap();
    let steps = u32::try_from(migrations.len() - search).unwrap();
    let mut single = app.config.clone();
    single.database_max_connections = 1;
    let (db, _) = latchkey::connect(&single).await.unwrap();
    migration::Migrator::down(&db, Some(steps)).await.unwrap();
    let applied = migration::Migrator::get_applied_migrations(&db)
        .await
        .unwrap();
    assert_eq!(
        applied.len(),
        search,
        "back to the release before the index"
    );
    db.close().await.unwrap();
    if backend != Backend::Sqlite {
        latchkey::migrate(&app.config).await.unwrap();
    }
    app.start().await;
    let admin = app.admin_token("viewer").await;
    for (query, email) in [("김 민준", "kim@example.kr"), ("LEE", "ann@example.com")] {
        let (n, _, page) = counted(&app, &admin, json!({"search": query}), 5).await;
        assert_eq!((n, page), (1, vec![email.to_owned()]), "{query}");
    }
    // And the index keeps up with customers made after the upgrade.
    create_named(&app, "new@example.com", "Newcomer", "Park").await;
    let (n, _, _) = counted(&app, &admin, json!({"search": "newcomer"}), 5).await;
    assert_eq!(n, 1);
}

async fn grid_cursors_are_stable_under_inserts_and_pages_are_capped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("viewer").await;
    for i in 0..6 {
        create_named(&app, &format!("s{i}@example.com"), "A", "B").await;
    }
    let sort = json!({"field": "EMAIL", "direction": "ASC"});
    let p1 = app
        .gql_as(Some(&admin), GRID, json!({"n": 3, "s": sort}))
        .await;
    assert_eq!(
        emails(&p1),
        ["s0@example.com", "s1@example.com", "s2@example.com"]
    );
    // Rows inserted before and after the cursor do not shift the next page.
    create_named(&app, "a-first@example.com", "A", "B").await;
    create_named(&app, "s1a@example.com", "A", "B").await;
    let after = p1["data"]["customers"]["pageInfo"]["endCursor"].clone();
    let p2 = app
        .gql_as(Some(&admin), GRID, json!({"n": 3, "s": sort, "a": after}))
        .await;
    assert_eq!(
        emails(&p2),
        ["s3@example.com", "s4@example.com", "s5@example.com"]
    );
    for bad in [
        json!({"n": 101}),
        json!({"n": 0}),
        json!({"n": -5}),
        json!({"a": "garbage"}),
        json!({"a": after, "s": {"field": "NAME"}}),
    ] {
        let res = app.gql_as(Some(&admin), GRID, bad.clone()).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{bad}: {res}");
    }
}

async fn a_page_of_customers_with_every_admin_field_costs_constant_statements(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.without_reset_limits().await;
    // A hundred registrations from one address is over the default per-client limit.
    app.set_settings("max_registrations_per_ip_per_hour = 1000")
        .await;
    let admin = app.admin_token("viewer").await;
    for i in 0..100 {
        create_named(&app, &format!("p{i:03}@example.com"), "A", "B").await;
    }
    for i in 0..5 {
        app.sign_in(&format!("p{i:03}@example.com"), PASSWORD).await;
        app.request_reset(&format!("p{i:03}@example.com")).await;
    }
    let query = "query($n: Int) { customers(first: $n) { totalCount edges { node {
        id email activeTokenCount lockedUntil passwordChangedAt lastResetRequestedAt } } } }";
    // Let the mail worker deliver the five reset mails first: its statements share the
    // counter. It still polls once a second, so each size is measured three times and the
    // least is kept.
    app.mail_settled().await;
    let mut costs = Vec::new();
    for n in [1, 10, 100] {
        let mut least = u64::MAX;
        for _ in 0..3 {
            let before = app.statements.load(Ordering::SeqCst);
            let res = app.gql_as(Some(&admin), query, json!({"n": n})).await;
            let after = app.statements.load(Ordering::SeqCst);
            assert!(res["errors"].is_null(), "{res}");
            assert_eq!(
                res["data"]["customers"]["edges"].as_array().unwrap().len(),
                n
            );
            least = least.min(after - before);
        }
        costs.push(least);
    }
    println!("statements per page of 1, 10, 100 customers: {costs:?}");
    // Never more for a bigger page (a page holding every match skips the count: one fewer).
    assert!(
        costs.iter().all(|c| *c <= costs[0]),
        "statements grew with the page: {costs:?}"
    );
    assert!(costs[0] <= 6, "{costs:?}");
    let res = app.gql_as(Some(&admin), query, json!({"n": 100})).await;
    let with_tokens = res["data"]["customers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["node"]["activeTokenCount"] == 1 && e["node"]["lastResetRequestedAt"].is_string()
        })
        .count();
    assert_eq!(with_tokens, 5);
}

async fn admin_reset_password_sends_the_storefront_mail_and_is_audited_and_limited(
    backend: Backend,
) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    app.create_customer("helpme@example.com", PASSWORD).await;
    let session = app.sign_in("helpme@example.com", PASSWORD).await;
    let id = app.customer_id("helpme@example.com").await;
    let support = app.admin_token("support").await;
    let send = "mutation($id: ID!) { adminResetPassword(customerId: $id) }";
    let res = app.gql_as(Some(&support), send, json!({"id": id})).await;
    assert_eq!(
        res,
        json!({"data": {"adminResetPassword": true}}),
        "no token in the answer"
    );
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, vec!["helpme@example.com"]);
    assert!(mail.subject().contains("Reset your"));
    // Nothing changes until the customer uses the link.
    assert!(app.whoami(&session).await.is_ok());
    // Per-customer limit.
    let again = app.gql_as(Some(&support), send, json!({"id": id})).await;
    assert_eq!(code(&again), "RATE_LIMITED");
    // Unknown ids, and ids of another kind.
    for bad in ["00000000-0000-0000-0000-000000000000", "order-42"] {
        let res = app.gql_as(Some(&support), send, json!({"id": bad})).await;
        assert_eq!(code(&res), "NOT_FOUND");
    }
    let res = app.reset_password(&mail.token(), "fresh-Pw-11").await;
    assert_eq!(res["data"]["resetPassword"], true);
    assert_eq!(app.whoami(&session).await, Err("UNAUTHENTICATED".into()));
    let admin = app.admin_token("administrator").await;
    let log = app
        .gql_as(
            Some(&admin),
            "{ auditLog(filter: {action: ADMIN_RESET_PASSWORD}) { edges { node { actor action customerId clientIp } } } }",
            json!({}),
        )
        .await;
    let node = &log["data"]["auditLog"]["edges"][0]["node"];
    assert_eq!(node["action"], "ADMIN_RESET_PASSWORD");
    assert!(node["actor"].as_str().unwrap().starts_with("support-"));
    assert_eq!(node["customerId"], id.as_str());
    assert_eq!(node["clientIp"], "127.0.0.1");
    assert_eq!(
        log["data"]["auditLog"]["edges"].as_array().unwrap().len(),
        1,
        "the limited attempt left no row"
    );
}

async fn force_sign_in_revokes_every_token_and_reports_the_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("many@example.com", PASSWORD).await;
    app.create_customer("other@example.com", PASSWORD).await;
    app.create_customer("never@example.com", PASSWORD).await;
    let tokens: Vec<String> =
        futures::future::join_all((0..3).map(|_| app.sign_in("many@example.com", PASSWORD))).await;
    let other = app.sign_in("other@example.com", PASSWORD).await;
    let id = app.customer_id("many@example.com").await; // a fourth session
    let never = {
        let admin = app.admin_token("viewer").await;
        let res = app
            .gql_as(Some(&admin), GRID, json!({"f": {"search": "never@"}}))
            .await;
        assert_eq!(res["data"]["customers"]["totalCount"], 1);
        app.gql_as(
            Some(&admin),
            "{ customers(filter: {search: \"never@\"}) { edges { node { id } } } }",
            json!({}),
        )
        .await["data"]["customers"]["edges"][0]["node"]["id"]
            .clone()
    };
    let support = app.admin_token("support").await;
    let force = "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }";
    let res = app.gql_as(Some(&support), force, json!({"id": id})).await;
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 4,
        "{res}"
    );
    for t in &tokens {
        assert_eq!(app.whoami(t).await, Err("UNAUTHENTICATED".into()));
    }
    assert!(
        app.whoami(&other).await.is_ok(),
        "other customers are untouched"
    );
    let res = app.gql_as(Some(&support), force, json!({"id": id})).await;
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 0,
        "idempotent"
    );
    let res = app
        .gql_as(Some(&support), force, json!({"id": never}))
        .await;
    assert_eq!(
        res["data"]["revokeCustomerTokens"]["revokedCount"], 0,
        "never signed in"
    );
    let res = app
        .gql_as(
            Some(&support),
            force,
            json!({"id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(code(&res), "NOT_FOUND");
    // A fresh sign-in works.
    app.sign_in("many@example.com", PASSWORD).await;
    assert_eq!(app.audited().await, 3);
}

async fn password_settings_are_validated_and_effective_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin_token("administrator").await;
    let read = "{ passwordSettings { resetLinkLifetimeHours resetRequestLimitMethod maxResetRequestsPerHour minSecondsBetweenResetRequests minPasswordLength requiredCharacterClasses allowWhitespace lockoutFailures lockoutMinutes customerTokenLifetimeMinutes adminTokenLifetimeMinutes } }";
    let defaults = app.gql_as(Some(&admin), read, json!({})).await;
    assert_eq!(
        defaults["data"]["passwordSettings"],
        json!({"resetLinkLifetimeHours": 24, "resetRequestLimitMethod": "BY_IP_AND_EMAIL", "maxResetRequestsPerHour": 5,
               "minSecondsBetweenResetRequests": 600, "minPasswordLength": 6, "requiredCharacterClasses": 0, "allowWhitespace": false,
               "lockoutFailures": 10, "lockoutMinutes": 10, "customerTokenLifetimeMinutes": 60, "adminTokenLifetimeMinutes": 240})
    );
    let update = "mutation($i: PasswordSettingsInput!) { updatePasswordSettings(input: $i) { minPasswordLength allowWhitespace } }";
    for bad in [
        json!({"minPasswordLength": 5}),
        json!({"minPasswordLength": 100000}),
        json!({"maxResetRequestsPerHour": -1}),
        json!({"resetLinkLifetimeHours": 0}),
        json!({"requiredCharacterClasses": 9}),
        json!({"lockoutFailures": 1000, "minPasswordLength": 15}),
        json!({"resetRequestLimitMethod": "SOMETIMES"}),
    ] {
        let res = app.gql_as(Some(&admin), update, json!({"i": bad})).await;
        assert_eq!(code(&res), "BAD_USER_INPUT", "{bad}: {res}");
    }
    assert_eq!(
        app.gql_as(Some(&admin), read, json!({})).await,
        defaults,
        "nothing changed"
    );
    // The hardened profile, effective for the very next request.
    let res = app
        .gql_as(
            Some(&admin),
            update,
            json!({"i": {"minPasswordLength": 15, "allowWhitespace": true}}),
        )
        .await;
    assert_eq!(
        res["data"]["updatePasswordSettings"],
        json!({"minPasswordLength": 15, "allowWhitespace": true})
    );
    let short = app
        .gql("mutation { createCustomer(input: {email: \"s@example.com\", firstname: \"A\", lastname: \"B\", password: \"kx7!qzmw\"}) { id } }", json!({}))
        .await;
    assert_eq!(code(&short), "PASSWORD_POLICY");
    app.create_customer("phrase@example.com", "correct horse battery staple")
        .await;
    app.sign_in("phrase@example.com", "correct horse battery staple")
        .await;
    assert_eq!(app.audited().await, 1);
}

async fn the_audit_log_pages_and_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("audited@example.com", PASSWORD).await;
    let id = app.customer_id("audited@example.com").await;
    let admin = app.admin_token("administrator").await;
    for _ in 0..3 {
        app.gql_as(
            Some(&admin),
            "mutation($id: ID!) { revokeCustomerTokens(customerId: $id) { revokedCount } }",
            json!({"id": id}),
        )
        .await;
        app.clock.advance(Duration::seconds(1));
    }
    app.gql_as(
        Some(&admin),
        "mutation { updatePasswordSettings(input: {lockoutMinutes: 15}) { lockoutMinutes } }",
        json!({}),
    )
    .await;
    let query = "query($n: Int, $a: String, $f: AuditLogFilter) { auditLog(first: $n, after: $a, filter: $f) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { action customerId at } } } }";
    let p1 = app.gql_as(Some(&admin), query, json!({"n": 2})).await;
    // The admin's enrolment of an authenticator app at their first sign-in, then the four.
    assert_eq!(p1["data"]["auditLog"]["totalCount"], 5);
    assert_eq!(
        p1["data"]["auditLog"]["edges"][0]["node"]["action"],
        "UPDATE_PASSWORD_SETTINGS"
    );
    assert_eq!(p1["data"]["auditLog"]["pageInfo"]["hasNextPage"], true);
    let p2 = app
        .gql_as(
            Some(&admin),
            query,
            json!({"n": 2, "a": p1["data"]["auditLog"]["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(p2["data"]["auditLog"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(p2["data"]["auditLog"]["pageInfo"]["hasNextPage"], true);
    let p3 = app
        .gql_as(
            Some(&admin),
            query,
            json!({"n": 2, "a": p2["data"]["auditLog"]["pageInfo"]["endCursor"]}),
        )
        .await;
    assert_eq!(
        p3["data"]["auditLog"]["edges"][0]["node"]["action"],
        "ENROL_ADMIN_FACTOR"
    );
    assert_eq!(p3["data"]["auditLog"]["pageInfo"]["hasNextPage"], false);
    let filtered = app
        .gql_as(
            Some(&admin),
            query,
            json!({"f": {"action": "REVOKE_CUSTOMER_TOKENS", "customerId": id}}),
        )
        .await;
    assert_eq!(filtered["data"]["auditLog"]["totalCount"], 3);
}

async fn latchkey_admin_create_takes_the_password_from_the_environment_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let run = |args: &[&str], password: Option<&str>| {
        let mut cmd = app.command(args);
        cmd.env_remove("LATCHKEY_ADMIN_PASSWORD");
        if let Some(p) = password {
            cmd.env("LATCHKEY_ADMIN_PASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let out = run(
        &[
            "admin",
            "create",
            "--username",
            "cli-admin",
            "--role",
            "support",
        ],
        Some("cli-Password-2026"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created admin cli-admin with role support")
    );
    let res = app.admin_sign_in("CLI-ADMIN", "cli-Password-2026").await;
    assert!(res["token"].is_string(), "{res}");
    for (args, password) in [
        (
            vec![
                "admin",
                "create",
                "--username",
                "x1-admin",
                "--role",
                "support",
                "--password",
                "cli-Password-2026",
            ],
            None,
        ),
        (
            vec![
                "admin",
                "create",
                "--username",
                "x2-admin",
                "--role",
                "root",
            ],
            Some("cli-Password-2026"),
        ),
        (
            vec![
                "admin",
                "create",
                "--username",
                "x3-admin",
                "--role",
                "viewer",
            ],
            Some("short"),
        ),
        (
            vec![
                "admin",
                "create",
                "--username",
                "cli-admin",
                "--role",
                "viewer",
            ],
            Some("cli-Password-2026"),
        ),
    ] {
        let out = run(&args, password);
        assert!(!out.status.success(), "{args:?} should fail");
    }
}

/// What an admin console needs to show only the controls a role allows, and a sign-out that
/// really ends the token on the server.
async fn current_admin_lists_the_role_permissions_and_sign_out_ends_the_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let me = "{ currentAdmin { username role permissions } }";
    for (role, permissions) in [
        (
            "administrator",
            json!([
                "CUSTOMERS_READ",
                "CUSTOMERS_RESET_PASSWORD",
                "CUSTOMERS_REVOKE_TOKENS",
                "SETTINGS_READ",
                "SETTINGS_MANAGE",
                "AUDIT_READ",
                "CUSTOMERS_BULK",
                "CUSTOMERS_DELETE",
                "ADMIN_USERS_MANAGE",
                "CUSTOMERS_RECOVER",
                "CUSTOMERS_EXPORT",
                "INTEGRATIONS_MANAGE"
            ]),
        ),
        (
            "support",
            json!([
                "CUSTOMERS_READ",
                "CUSTOMERS_RESET_PASSWORD",
                "CUSTOMERS_REVOKE_TOKENS"
            ]),
        ),
        ("viewer", json!(["CUSTOMERS_READ"])),
    ] {
        let token = app.admin_token(role).await;
        let res = app.gql_as(Some(&token), me, json!({})).await;
        assert_eq!(
            res["data"]["currentAdmin"]["role"],
            role.to_uppercase(),
            "{res}"
        );
        assert_eq!(res["data"]["currentAdmin"]["permissions"], permissions);
        assert!(
            res["data"]["currentAdmin"]["username"]
                .as_str()
                .unwrap()
                .starts_with(role)
        );
    }
    assert_eq!(code(&app.gql(me, json!({})).await), "UNAUTHENTICATED");
    app.create_customer("ann@example.com", PASSWORD).await;
    let customer = app.sign_in("ann@example.com", PASSWORD).await;
    assert_eq!(
        code(&app.gql_as(Some(&customer), me, json!({})).await),
        "FORBIDDEN",
        "a customer token is not an admin"
    );
    assert_eq!(
        code(
            &app.gql_as(Some(&customer), "mutation { revokeAdminToken }", json!({}))
                .await
        ),
        "FORBIDDEN"
    );

    // Sign-out ends this token only: other admins' and customers' tokens stay valid.
    let token = app.admin_token("viewer").await;
    let res = app
        .gql_as(Some(&token), "mutation { revokeAdminToken }", json!({}))
        .await;
    assert_eq!(res["data"]["revokeAdminToken"], true, "{res}");
    assert_eq!(
        code(&app.gql_as(Some(&token), me, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(
            &app.gql_as(Some(&token), "mutation { revokeAdminToken }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    let other = app.admin_token("administrator").await;
    let res = app.gql_as(Some(&other), me, json!({})).await;
    assert_eq!(res["data"]["currentAdmin"]["role"], "ADMINISTRATOR");
    assert_eq!(
        app.whoami(&customer).await.as_deref(),
        Ok("ann@example.com")
    );
}
