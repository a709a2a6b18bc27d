//! `latchkey import customers`: the real binary against the test's database, then the real
//! server signing the imported customers in with the passwords they had on the old platform.

use std::{collections::BTreeSet, path::Path, process::Output};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, code},
    tests,
};

tests![
    every_legacy_format_signs_in_with_the_old_password_and_is_upgraded_to_argon2id,
    a_dry_run_checks_everything_and_writes_nothing,
    an_update_never_replaces_a_password_set_in_latchkey,
    an_import_killed_half_way_and_run_again_ends_like_one_clean_run,
    an_export_imports_into_another_store_as_the_same_customers,
    duplicates_and_taken_addresses_are_found_across_batches_and_writers,
    two_sign_ins_at_once_on_a_legacy_hash_both_get_a_session,
    hashes_asking_for_too_much_work_are_refused_at_import_and_are_a_wrong_password_at_sign_in,
    imported_hashes_of_the_empty_or_a_too_short_password_never_sign_in,
    exports_are_private_files_and_never_spreadsheet_formulas,
];

/// Runs `latchkey import customers …` on the app's database.
pub(crate) fn import(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = app.command(&["import", "customers"]);
    cmd.args(args).env("USER", "migrator");
    cmd.output().unwrap()
}

/// Runs `latchkey export customers …` on the app's database.
fn export(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = app.command(&["export", "customers"]);
    cmd.args(args);
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn dir_of(app: &TestApp) -> &Path {
    app.config.mail_dir.parent().unwrap()
}

async fn stored_hash(app: &TestApp, email_key: &str) -> String {
    app.query_one(
        "SELECT password_hash FROM customers WHERE email_key = $1",
        vec![email_key.into()],
    )
    .await
    .try_get::<String>("", "password_hash")
    .unwrap()
}

/// Every customer as `email|firstname|lastname|locale|external_id|hash` (what an import writes).
async fn customers(app: &TestApp) -> BTreeSet<String> {
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT email, firstname, lastname, locale, COALESCE(external_id, '') AS external_id, \
             password_hash FROM customers",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            [
                "email",
                "firstname",
                "lastname",
                "locale",
                "external_id",
                "password_hash",
            ]
            .map(|c| r.try_get::<String>("", c).unwrap())
            .join("|")
        })
        .collect()
}

#[derive(serde::Deserialize, Clone)]
struct Vector {
    format: String,
    password: String,
    hash: String,
    valid: bool,
    production_default: bool,
}

/// The reference vectors cheap enough to sign in with in a test (a production-cost one per
/// format is covered by the hasher's unit test).
fn cheap_vectors() -> Vec<Vector> {
    #[derive(serde::Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/legacy-hashes.json"
    ))
    .unwrap();
    let file: File = serde_json::from_str(&text).unwrap();
    file.vectors
        .into_iter()
        .filter(|v| v.valid && !v.production_default)
        .filter(|v| !v.password.is_empty() && !v.password.contains('\0'))
        .collect()
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn every_legacy_format_signs_in_with_the_old_password_and_is_upgraded_to_argon2id(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let vectors = cheap_vectors();
    let formats: BTreeSet<&str> = vectors.iter().map(|v| v.format.as_str()).collect();
    assert_eq!(formats.len(), 6, "{formats:?}");

    let (file, expected_rejects) = legacy_file(&vectors);
    let path = dir_of(&app).join("customers.csv");
    std::fs::write(&path, &file).unwrap();

    let out = import(&app, &[path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rows were rejected: {}",
        stdout(&out)
    );
    let imported = vectors.len() + 1;
    assert!(
        stdout(&out).contains(&format!(
            "imported {imported}, updated 0, skipped 0, rejected {}",
            expected_rejects.len()
        )),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let rejects = std::fs::read_to_string(dir_of(&app).join("customers.csv.rejects.csv")).unwrap();
    let listed: BTreeSet<String> = rejects
        .lines()
        .skip(1)
        .map(|l| l.splitn(3, ',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        listed, expected_rejects,
        "exactly the broken rows:\n{rejects}"
    );
    assert!(
        !rejects.contains("$1$abc"),
        "the reject file never repeats a hash"
    );
    assert_eq!(app.count("customers").await, imported as i64);

    // Admins see where each password stands, and find a customer by the old platform's id.
    let admin = app.admin_token("administrator").await;
    // An imported argon2id (version 19) is Latchkey's own format already: SET.
    let native = vectors
        .iter()
        .filter(|v| v.hash.starts_with("$argon2id$v=19$"))
        .count();
    assert!(native > 0);
    assert_eq!(
        grid(&app, &admin, json!({"passwordState": "LEGACY"})).await["totalCount"],
        vectors.len() - native
    );
    assert_eq!(
        grid(&app, &admin, json!({"passwordState": "SET"})).await["totalCount"],
        native
    );
    let reset_required = grid(&app, &admin, json!({"passwordState": "RESET_REQUIRED"})).await;
    assert_eq!(reset_required["totalCount"], 1);
    assert_eq!(
        reset_required["edges"][0]["node"],
        json!({"email": "shopify@example.com", "passwordState": "RESET_REQUIRED", "externalId": "gid://shopify/Customer/1"})
    );
    let by_id = grid(&app, &admin, json!({"externalId": "old-3"})).await;
    assert_eq!(by_id["totalCount"], 1);
    assert_eq!(by_id["edges"][0]["node"]["email"], "legacy3@example.com");

    each_signs_in_with_the_old_password_and_is_upgraded(&app, &vectors).await;

    assert_eq!(
        grid(&app, &admin, json!({"passwordState": "LEGACY"})).await["totalCount"],
        0
    );
    assert_eq!(
        grid(&app, &admin, json!({"passwordState": "SET"})).await["totalCount"],
        vectors.len()
    );

    // No hash: "password reset required". Sign-in fails like any wrong password; "Forgot
    // Your Password?" is the way in.
    let res = app.sign_in_response("shopify@example.com", "").await;
    assert!(res["data"]["generateCustomerToken"].is_null(), "{res}");
    let res = app
        .sign_in_response("shopify@example.com", "anything-at-all")
        .await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    assert_eq!(stored_hash(&app, "shopify@example.com").await, "");

    // Importing the same file again changes nothing.
    let before = customers(&app).await;
    let again = import(&app, &[path.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stdout(&again).contains(&format!(
            "imported 0, updated 0, skipped {imported}, rejected {}",
            expected_rejects.len()
        )),
        "{}",
        stdout(&again)
    );
    assert_eq!(customers(&app).await, before, "a re-import is a no-op");

    // Each import is one audit entry, with its counts and who ran it.
    let res = app
        .gql_as(
            Some(&admin),
            "{ auditLog(first: 10, filter: {action: IMPORT_CUSTOMERS}) { totalCount edges { node { actor detail customerId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(res["data"]["auditLog"]["totalCount"], 2, "{res}");
    let node = &res["data"]["auditLog"]["edges"][1]["node"];
    assert!(
        node["actor"].as_str().unwrap().starts_with("os:migrator@"),
        "{node}"
    );
    assert_eq!(
        node["detail"],
        Value::from(format!(
            "imported={imported} updated=0 skipped=0 rejected={}",
            expected_rejects.len()
        ))
    );
    assert!(node["customerId"].is_null());
}

/// The import file: every vector (every other row declaring its format), a row without a hash,
/// and one broken row per reject reason; and the `line,reason` pairs the reject file must list.
fn legacy_file(vectors: &[Vector]) -> (Vec<u8>, BTreeSet<String>) {
    let mut file: Vec<u8> =
        b"email,firstname,lastname,locale,created_at,password_hash,hash_format,external_id\n"
            .to_vec();
    let mut line = 1u64;
    let mut push = |file: &mut Vec<u8>, row: &[u8]| {
        file.extend_from_slice(row);
        file.push(b'\n');
        line += 1;
        line
    };
    for (i, v) in vectors.iter().enumerate() {
        // Every other row names its format; the rest are detected.
        let declared = if i % 2 == 0 { v.format.as_str() } else { "" };
        push(
            &mut file,
            format!(
                "legacy{i}@example.com,Legacy,{i},ja-JP,2019-05-06 07:08:09,{},{declared},old-{i}",
                csv_field(&v.hash)
            )
            .as_bytes(),
        );
    }
    push(
        &mut file,
        b"shopify@example.com,Sho,Pify,en,,,,gid://shopify/Customer/1",
    );
    let mut expected_rejects = BTreeSet::new();
    let mut reject = |line: u64, reason: &str| {
        expected_rejects.insert(format!("{line},{reason}"));
    };
    reject(
        push(&mut file, b"not-an-address,A,B,en,,,,"),
        "invalid_email",
    );
    reject(
        push(&mut file, b"LEGACY0@Example.com,Dup,Licate,en,,,,"),
        "duplicate_in_file",
    );
    reject(
        push(&mut file, b"md5crypt@example.com,A,B,en,,$1$abc$def,,"),
        "unknown_hash_format",
    );
    reject(
        push(
            &mut file,
            b"costly@example.com,A,B,en,,\"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\",,",
        ),
        "hash_too_costly",
    );
    reject(
        push(
            &mut file,
            format!("long@example.com,A,B,en,,,,{}", "x".repeat(300)).as_bytes(),
        ),
        "field_too_long",
    );
    reject(
        push(&mut file, b"latin1@example.com,Ren\xe9,B,en,,,,"),
        "invalid_utf8",
    );
    reject(
        push(&mut file, b"fr@example.com,A,B,fr,,,,"),
        "invalid_locale",
    );
    (file, expected_rejects)
}

/// The first customers of the grid that match `filter`, as `admin` sees them.
async fn grid(app: &TestApp, admin: &str, filter: Value) -> Value {
    app.gql_as(
        Some(admin),
        "query($f: CustomerFilter) { customers(first: 5, filter: $f) { totalCount edges { node { email passwordState externalId } } } }",
        json!({"f": filter}),
    )
    .await["data"]["customers"]
        .clone()
}

/// Each customer signs in with the old password (a wrong one first changes nothing); the legacy
/// hash is gone afterwards, and the same password signs in natively.
async fn each_signs_in_with_the_old_password_and_is_upgraded(app: &TestApp, vectors: &[Vector]) {
    for (i, v) in vectors.iter().enumerate() {
        let email = format!("legacy{i}@example.com");
        let wrong = app
            .sign_in_response(&email, &format!("-{}", v.password))
            .await;
        if i < 8 {
            assert_eq!(code(&wrong), "AUTHENTICATION_FAILED", "{}", v.hash);
            assert_eq!(
                stored_hash(app, &email).await,
                v.hash,
                "a failure changes nothing"
            );
        }
        let res = app.sign_in_response(&email, &v.password).await;
        let token = res["data"]["generateCustomerToken"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("{} {} {:?}: {res}", v.format, v.hash, v.password));
        assert_eq!(app.whoami(token).await.unwrap(), email);
        let now = stored_hash(app, &email).await;
        assert!(
            now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{} ({}) upgraded: {now}",
            v.hash,
            v.format
        );
        // Once upgraded, the same password still signs in, natively.
        app.sign_in(&email, &v.password).await;
    }
}

async fn a_dry_run_checks_everything_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("taken@example.com", crate::helpers::PASSWORD)
        .await;
    let path = dir_of(&app).join("customers.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"email": "new@example.com", "firstname": "New", "external_id": 42}"#,
            "\n",
            r#"{"email": "taken@example.com", "firstname": "Taken"}"#,
            "\n\n",
            r#"{"email": "nope"}"#,
            "\n",
            "not json\n",
        ),
    )
    .unwrap();
    let out = import(&app, &["--dry-run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out)
            .contains("dry run (nothing written): imported 1, updated 0, skipped 1, rejected 2"),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.count("customers").await, 1);
    assert_eq!(app.audited().await, 0);
    let rejects =
        std::fs::read_to_string(dir_of(&app).join("customers.jsonl.rejects.csv")).unwrap();
    assert!(rejects.contains("4,invalid_email"), "{rejects}");
    assert!(rejects.contains("5,unreadable_row"), "{rejects}");

    // With --on-conflict reject, the taken address is a rejected row too.
    let out = import(&app, &["--on-conflict", "reject", path.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("imported 1, updated 0, skipped 0, rejected 3"),
        "{}",
        stdout(&out)
    );
    let rejects =
        std::fs::read_to_string(dir_of(&app).join("customers.jsonl.rejects.csv")).unwrap();
    assert!(rejects.contains("2,exists"), "{rejects}");
    assert_eq!(app.count("customers").await, 2);
}

async fn an_update_never_replaces_a_password_set_in_latchkey(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("ann@example.com", crate::helpers::PASSWORD)
        .await;
    let path = dir_of(&app).join("update.csv");
    // md5("salt" . "password"), Magento 2 version 0.
    std::fs::write(
        &path,
        "email,firstname,lastname,locale,password_hash,external_id\n\
         ANN@example.com,Annie,Leigh,ko,67a1e09bb1f83f5007dc119c14d663aa:salt:0,m-1\n\
         cho@example.com,Cho,Park,ko,,m-2\n",
    )
    .unwrap();
    let out = import(&app, &["--on-conflict", "update", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("imported 1, updated 1, skipped 0, rejected 0"),
        "{}",
        stdout(&out)
    );
    let all = customers(&app).await;
    let ann = all.iter().find(|c| c.starts_with("ann@")).unwrap();
    assert!(
        ann.starts_with("ann@example.com|Annie|Leigh|ko|m-1|$argon2id$"),
        "{ann}"
    );
    app.sign_in("ann@example.com", crate::helpers::PASSWORD)
        .await;
    let res = app.sign_in_response("ann@example.com", "password").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED");

    // The same file again: nothing differs, nothing is updated.
    let out = import(&app, &["--on-conflict", "update", path.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("imported 0, updated 0, skipped 2, rejected 0"),
        "{}",
        stdout(&out)
    );
    // A customer still on a legacy hash gets the file's hash.
    std::fs::write(
        &path,
        "email,password_hash\ncho@example.com,67a1e09bb1f83f5007dc119c14d663aa:salt:0\n",
    )
    .unwrap();
    let out = import(&app, &["--on-conflict", "update", path.to_str().unwrap()]);
    assert!(stdout(&out).contains("updated 1"), "{}", stdout(&out));
    app.sign_in("cho@example.com", "password").await;

    // A password voided on purpose (here Require New Password) is never filled again: whoever
    // was shut out may know the old platform's password.
    let legacy = "email,password_hash\ndee@example.com,67a1e09bb1f83f5007dc119c14d663aa:salt:0\n";
    std::fs::write(&path, legacy).unwrap();
    import(&app, &[path.to_str().unwrap()]);
    let admin = app.admin_token("administrator").await;
    let dee = grid_row(&app, &admin, "dee@example.com").await;
    assert_eq!(dee["passwordState"], "LEGACY", "{dee}");
    crate::bulk::run_job(
        &app,
        &admin,
        "REQUIRE_NEW_PASSWORD",
        json!({"customerIds": [dee["id"]]}),
    )
    .await;
    assert_eq!(
        grid_row(&app, &admin, "dee@example.com").await["passwordState"],
        "VOIDED"
    );
    let voided = app
        .gql_as(
            Some(&admin),
            "{ customers(first: 5, filter: {passwordState: VOIDED}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(voided["data"]["customers"]["totalCount"], 1, "{voided}");
    let out = import(&app, &["--on-conflict", "update", path.to_str().unwrap()]);
    assert!(stdout(&out).contains("skipped 1"), "{}", stdout(&out));
    assert_eq!(
        grid_row(&app, &admin, "dee@example.com").await["passwordState"],
        "VOIDED"
    );
    let res = app.sign_in_response("dee@example.com", "password").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
}

/// The grid's row of one customer: id and password state.
async fn grid_row(app: &TestApp, admin: &str, email: &str) -> Value {
    let res = app
        .gql_as(
            Some(admin),
            "query($s: String!) { customers(first: 1, filter: {search: $s}) { edges { node { id passwordState } } } }",
            json!({"s": email}),
        )
        .await;
    res["data"]["customers"]["edges"][0]["node"].clone()
}

async fn an_import_killed_half_way_and_run_again_ends_like_one_clean_run(backend: Backend) {
    let rows = 60_000;
    let mut file = String::from("email,firstname,lastname,password_hash,external_id\n");
    for i in 0..rows {
        file.push_str(&format!(
            "bulk{i}@example.com,F{i},L{i},67a1e09bb1f83f5007dc119c14d663aa:salt:0,{i}\n"
        ));
    }
    let clean = TestApp::spawn(backend).await;
    let path = dir_of(&clean).join("bulk.csv");
    std::fs::write(&path, &file).unwrap();
    let out = import(&clean, &[path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = customers(&clean).await;
    assert_eq!(expected.len(), rows);

    let app = TestApp::spawn(backend).await;
    let mut child = app
        .command(&["import", "customers", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SQLite commits in chunks: kill it once some are in. PostgreSQL writes in one
    // transaction: kill it while it works.
    let started = std::time::Instant::now();
    loop {
        let busy = match backend {
            Backend::Sqlite => app.count("customers").await > 0,
            Backend::Postgres | Backend::PgBouncer => {
                let row = app
                    .db
                    .query_one_raw(sea_orm::Statement::from_string(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE query LIKE '%import_stage%' \
                         AND pid <> pg_backend_pid()",
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                row.try_get::<i64>("", "n").unwrap() > 0
            }
        };
        if busy || started.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let partial = customers(&app).await;
    assert!(
        partial.len() < rows,
        "killed before the end ({} rows)",
        partial.len()
    );
    assert!(
        partial.is_subset(&expected),
        "whatever was written is whole customers, exactly as the file has them"
    );
    let out = import(&app, &[path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        customers(&app).await,
        expected,
        "the re-run ends like one clean run"
    );
}

async fn an_export_imports_into_another_store_as_the_same_customers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_customer("native@example.com", crate::helpers::PASSWORD)
        .await;
    let path = dir_of(&app).join("in.csv");
    std::fs::write(
        &path,
        "email,firstname,lastname,locale,password_hash,external_id\n\
         ann@example.com,Ann,\"Lee, Jr.\",ja,67a1e09bb1f83f5007dc119c14d663aa:salt:0,m-1\n\
         cho@example.com,초,박,ko,,m-2\n",
    )
    .unwrap();
    assert_eq!(
        import(&app, &[path.to_str().unwrap()]).status.code(),
        Some(0)
    );

    // Without the flag, no hash leaves the store.
    let plain = export(&app, &[]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let text = stdout(&plain);
    assert!(
        text.starts_with(
            "email,firstname,lastname,locale,created_at,password_hash,hash_format,external_id\n"
        ),
        "{text}"
    );
    assert!(
        !text.contains("67a1e09b") && !text.contains("$argon2id$"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4);

    for format in ["csv", "jsonl"] {
        let file = dir_of(&app).join(format!("out.{format}"));
        let out = export(
            &app,
            &["--with-password-hashes", "--output", file.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let other = TestApp::spawn(backend).await;
        let out = import(&other, &[file.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(customers(&other).await, customers(&app).await, "{format}");
        // And they sign in there as they did here.
        other
            .sign_in("native@example.com", crate::helpers::PASSWORD)
            .await;
        other.sign_in("ann@example.com", "password").await;
    }
}

/// A file of several batches, with an address repeated within a batch and across batches and
/// an address that already has an account (and is repeated too): the same rejects and counts
/// whether PostgreSQL writes on one connection or on three.
async fn duplicates_and_taken_addresses_are_found_across_batches_and_writers(backend: Backend) {
    let rows = 12_000;
    let email = |r: usize| match r {
        7_000 | 11_000 => "user3@bulk.example".to_owned(),
        100 | 101 => "same@bulk.example".to_owned(),
        6_000 | 9_000 => "taken@bulk.example".to_owned(),
        r => format!("user{r}@bulk.example"),
    };
    let mut file = String::from("email,firstname,lastname\n");
    for r in 0..rows {
        file.push_str(&format!("{},F{r},L{r}\n", email(r)));
    }
    // Row r is on line r + 2 (the header is line 1).
    let line = |r: usize| r + 2;
    let mut expected = BTreeSet::from([format!("{},exists", line(6_000))]);
    for (r, first) in [(7_000, 3), (11_000, 3), (101, 100), (9_000, 6_000)] {
        expected.insert(format!("{},duplicate_in_file,{}", line(r), line(first)));
    }
    for writers in ["1", "3"] {
        let app = TestApp::spawn(backend).await;
        app.create_customer("taken@bulk.example", crate::helpers::PASSWORD)
            .await;
        let path = dir_of(&app).join("bulk.csv");
        std::fs::write(&path, &file).unwrap();
        let out = import(
            &app,
            &[
                "--on-conflict",
                "reject",
                "--writers",
                writers,
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert!(
            stdout(&out).contains(&format!(
                "imported {}, updated 0, skipped 0, rejected 5",
                rows - 5
            )),
            "writers {writers}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        let rejects = std::fs::read_to_string(dir_of(&app).join("bulk.csv.rejects.csv")).unwrap();
        // line,reason and, for a duplicate, the line it repeats (from the message).
        let listed: BTreeSet<String> = rejects
            .lines()
            .skip(1)
            .map(|l| {
                let mut f = l.splitn(3, ',');
                let (line, reason, message) = (f.next().unwrap(), f.next().unwrap(), f.next());
                match message.and_then(|m| m.split("line ").nth(1)) {
                    Some(rest) if reason == "duplicate_in_file" => {
                        let first: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        format!("{line},{reason},{first}")
                    }
                    _ => format!("{line},{reason}"),
                }
            })
            .collect();
        assert_eq!(listed, expected, "writers {writers}:\n{rejects}");
        assert_eq!(app.count("customers").await, (rows - 5 + 1) as i64);
        // Every address is taken now: the same file again skips them all.
        let out = import(&app, &["--writers", writers, path.to_str().unwrap()]);
        assert!(
            stdout(&out).contains(&format!(
                "imported 0, updated 0, skipped {}, rejected 4",
                rows - 4
            )),
            "writers {writers}: {}",
            stdout(&out)
        );
        assert_eq!(app.count("customers").await, (rows - 5 + 1) as i64);
    }
}

/// Right after a migration a customer signs in from the app and the web at once: both verify
/// the legacy hash and write their own upgrade; the one written second loses, and must still
/// get its session (the password was right, it is only the stored hash that moved).
async fn two_sign_ins_at_once_on_a_legacy_hash_both_get_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let v = cheap_vectors().into_iter().next().unwrap();
    let mut file =
        b"email,firstname,lastname,locale,created_at,password_hash,hash_format,external_id\n"
            .to_vec();
    file.extend_from_slice(
        format!(
            "twice@example.com,Two,Ce,en,,{},{},\n",
            csv_field(&v.hash),
            v.format
        )
        .as_bytes(),
    );
    let path = dir_of(&app).join("twice.csv");
    std::fs::write(&path, &file).unwrap();
    let out = import(&app, &[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    for round in 0..3 {
        let answers = futures::future::join_all(
            (0..4).map(|_| app.sign_in_response("twice@example.com", &v.password)),
        )
        .await;
        for answer in &answers {
            assert!(
                answer["data"]["generateCustomerToken"]["token"].is_string(),
                "round {round}: {answer}"
            );
        }
        // Back to the legacy hash for the next round.
        use sea_orm::{ConnectionTrait, Statement};
        let backend = app.db.get_database_backend();
        let sql = match backend {
            sea_orm::DatabaseBackend::Sqlite => {
                "UPDATE customers SET password_hash = ? WHERE email_key = 'twice@example.com'"
            }
            _ => "UPDATE customers SET password_hash = $1 WHERE email_key = 'twice@example.com'",
        };
        app.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [v.hash.clone().into()],
            ))
            .await
            .unwrap();
    }
}

/// A stored hash may ask for any amount of work: scrypt's `p` once made one anonymous sign-in
/// allocate 64 GiB and abort the server; a chain of steps each within the limits took seconds
/// per guess. The import refuses such rows; one that reached the table some other way (an
/// older version's import, a hand-written row) is a wrong password after the dummy work, and
/// the server goes on answering.
async fn hashes_asking_for_too_much_work_are_refused_at_import_and_are_a_wrong_password_at_sign_in(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let big = "3_32_2_268435456";
    let costly = [
        "$scrypt$ln=1,r=1,p=536870912$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        "$scrypt$ln=14,r=8,p=2000$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        format!(
            "{}:{}:{big}:{big}:{big}:{big}",
            "a".repeat(64),
            "s".repeat(32)
        ),
        "$argon2id$v=19$m=262144,t=16,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
    ];
    let mut csv = String::from("email,firstname,lastname,password_hash\n");
    for (i, hash) in costly.iter().enumerate() {
        csv.push_str(&format!("costly{i}@example.com,A,B,{}\n", csv_field(hash)));
    }
    csv.push_str("fine@example.com,A,B,\n");
    let path = dir_of(&app).join("costly.csv");
    std::fs::write(&path, csv).unwrap();
    let out = import(&app, &[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let rejects = std::fs::read_to_string(dir_of(&app).join("costly.csv.rejects.csv")).unwrap();
    assert_eq!(
        rejects.matches("hash_too_costly").count(),
        costly.len(),
        "{rejects}"
    );
    assert_eq!(app.count("customers").await, 1);

    // Rows that got in some other way, the native prefix included.
    let mut stored = costly.to_vec();
    stored
        .push("$argon2id$v=19$m=19456,t=100000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned());
    for (i, hash) in stored.iter().enumerate() {
        let email = format!("stored{i}@example.com");
        app.create_customer(&email, PASSWORD).await;
        app.execute(
            &format!("UPDATE customers SET password_hash = $1 WHERE email_key = '{email}'"),
            vec![hash.clone().into()],
        )
        .await;
        let res = app.sign_in_response(&email, PASSWORD).await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{hash}: {res}");
    }
    app.create_customer("alive@example.com", PASSWORD).await;
    app.sign_in("alive@example.com", PASSWORD).await;
}

/// Platforms store hashes of the empty password for accounts made without one, and of
/// passwords shorter than Latchkey's policy. Neither may sign in: `""` is refused before any
/// hashing, a digest of `""` comes in as "reset required", and a legacy match shorter than
/// the policy's minimum is a wrong password that leaves the account needing a reset.
async fn imported_hashes_of_the_empty_or_a_too_short_password_never_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // md5("pepper" ‖ ""), sha256("salty" ‖ ""), PBKDF2 of "" (hashlib), md5("pepper" ‖ "abc").
    let rows = [
        (
            "empty-m1@example.com",
            "b3f952d5d9adea6f63bee9d4c6fceeaa:pepper",
        ),
        (
            "empty-m2@example.com",
            "0237742265ea9ac1dba0afa9410bec9d562c9eeb60dc327d1f9ae13ddcf87c84:salty:1",
        ),
        (
            "empty-django@example.com",
            "pbkdf2_sha256$1000$salt$lPtWrz6iLl0+0bBUCFsTbKMBt12LQGyALEiUefJzh8Y=",
        ),
        (
            "short@example.com",
            "3a31636ed6e2c090c2ea4eff603b772e:pepper",
        ),
    ];
    let mut csv = String::from("email,firstname,lastname,password_hash\n");
    for (email, hash) in rows {
        csv.push_str(&format!("{email},A,B,{}\n", csv_field(hash)));
    }
    let path = dir_of(&app).join("empty.csv");
    std::fs::write(&path, csv).unwrap();
    let out = import(&app, &[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stored_hash(&app, "empty-m1@example.com").await, "");
    assert_eq!(stored_hash(&app, "empty-m2@example.com").await, "");
    for (email, _) in rows {
        let res = app.sign_in_response(email, "").await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{email}: {res}");
    }
    let res = app.sign_in_response("short@example.com", "abc").await;
    assert_eq!(code(&res), "AUTHENTICATION_FAILED", "{res}");
    let admin = app.admin_token("administrator").await;
    let short = grid_row(&app, &admin, "short@example.com").await;
    assert_eq!(short["passwordState"], "VOIDED", "{short}");
}

/// An export names every customer: it is created 0600, never over an existing file or
/// through a link someone left at the path (unless `--force`), and a name that a spreadsheet
/// would run as a formula is written with a leading `'` (unless `--raw`), which the import
/// takes off again.
async fn exports_are_private_files_and_never_spreadsheet_formulas(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(backend).await;
    let formula = "=HYPERLINK(\"http://evil.example/\",\"Ann\")";
    let res = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": "formula@example.com", "firstname": formula, "lastname": "-Lee", "password": PASSWORD}}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let file = dir_of(&app).join("customers-out.csv");
    let out = export(
        &app,
        &["--with-password-hashes", "--output", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"'=HYPERLINK(") && text.contains(",'-Lee,"),
        "{text}"
    );
    // Not over an existing file, nor through a link, without --force.
    let again = export(&app, &["--output", file.to_str().unwrap()]);
    assert!(!again.status.success());
    let target = dir_of(&app).join("victim.txt");
    std::fs::write(&target, "keep").unwrap();
    let link = dir_of(&app).join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let through = export(&app, &["--output", link.to_str().unwrap()]);
    assert!(!through.status.success());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    let forced = export(
        &app,
        &["--force", "--raw", "--output", link.to_str().unwrap()],
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    let raw = std::fs::read_to_string(&link).unwrap();
    assert!(
        raw.contains("\"=HYPERLINK(") && !raw.contains("'="),
        "{raw}"
    );
    // The neutralised export imports as the same customer.
    let other = TestApp::spawn(backend).await;
    let out = import(&other, &[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(customers(&other).await, customers(&app).await);
    let rejects = dir_of(&app).join("customers-out.csv.rejects.csv");
    assert!(std::fs::symlink_metadata(rejects).is_err(), "no rejects");
}
