//! Turns `async fn(TestApp)` bodies into one trial per backend.

use std::{future::Future, pin::Pin};

use libtest_mimic::{Failed, Trial};

use crate::helpers::{Backend, postgres_url};

pub type TestFn = fn(Backend) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// `(name, body)`; bodies that take a `Backend` start their own `TestApp`s.
pub type Tests = &'static [(&'static str, TestFn)];

/// Declares a module's test list: `tests![a, b]` for bodies `async fn a(backend: Backend)`.
/// Bodies named `postgres_…` run on PostgreSQL only (directly, and through PgBouncer where
/// their group is listed for it): faults SQLite cannot have, such as its server going away.
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        pub const TESTS: $crate::harness::Tests = &[
            $((stringify!($name), |b| Box::pin($name(b))),)*
        ];
    };
}

/// Bodies whose name starts with this run on PostgreSQL only.
pub const POSTGRES_ONLY: &str = "postgres_";

/// Bodies whose name starts with this drive headless Chromium through the pages; they run once,
/// on SQLite (the pages only talk GraphQL, which every other test covers on both databases).
pub const BROWSER: &str = "browser_";

/// Bodies whose name starts with this drive Latchkey with third-party Node clients (jose,
/// graphql-http, Apollo Gateway); like the browser tests they run once, on SQLite.
pub const NODE: &str = "node_";

/// Every test of `groups` runs on SQLite and PostgreSQL; those of `through_pgbouncer` (a
/// subset) also once through PgBouncer in transaction mode.
pub fn trials(groups: &[Tests], through_pgbouncer: &[Tests]) -> Vec<Trial> {
    let postgres = postgres_url();
    if postgres.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but LATCHKEY_TEST_POSTGRES_URL is not: the PostgreSQL runs must not be skipped in CI"
            );
        }
        eprintln!(
            "\n*** PostgreSQL runs are SKIPPED (shown as ignored): set LATCHKEY_TEST_POSTGRES_URL, \
             e.g. postgres://postgres@127.0.0.1:5432/test, or run .ci/run ***\n"
        );
    }
    let browser = crate::browser::available();
    if let Err(missing) = &browser {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but the browser tests cannot run: {missing}");
        }
        eprintln!(
            "\n*** Browser tests are SKIPPED (shown as ignored): {missing}. Install Debian's \
             chromium and chromium-driver, or run .ci/run ***\n"
        );
    }
    let node = crate::node::available();
    if let Err(missing) = &node {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but the Node client tests cannot run: {missing}");
        }
        eprintln!(
            "\n*** Node client tests are SKIPPED (shown as ignored): {missing}. Install Node.js \
             and npm, or run .ci/run ***\n"
        );
    }
    let pgbouncer = testkit::pgbouncer::available();
    if let Err(missing) = &pgbouncer {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but the PgBouncer runs cannot happen: {missing}");
        }
        eprintln!(
            "\n*** PgBouncer runs are SKIPPED (shown as ignored): {missing}. Run .ci/pgbouncer.sh \
             and set LATCHKEY_TEST_PGBOUNCER, or run .ci/run ***\n"
        );
    }
    let mut trials = Vec::new();
    for group in groups {
        let bounced = through_pgbouncer
            .iter()
            .any(|g| std::ptr::eq(g.as_ptr(), group.as_ptr()));
        for (name, body) in group.iter() {
            for backend in [Backend::Sqlite, Backend::Postgres, Backend::PgBouncer] {
                if backend == Backend::Sqlite && name.starts_with(POSTGRES_ONLY) {
                    continue;
                }
                if backend != Backend::Sqlite
                    && (name.starts_with(BROWSER) || name.starts_with(NODE))
                {
                    continue;
                }
                if backend == Backend::PgBouncer && !bounced {
                    continue;
                }
                let body = *body;
                let trial = Trial::test(format!("{}::{name}", backend.label()), move || {
                    run(backend, body)
                })
                .with_ignored_flag(
                    (backend != Backend::Sqlite && postgres.is_none())
                        || (backend == Backend::PgBouncer && pgbouncer.is_err())
                        || (name.starts_with(BROWSER) && browser.is_err())
                        || (name.starts_with(NODE) && node.is_err()),
                );
                trials.push(trial);
            }
        }
    }
    trials
}

fn run(backend: Backend, body: TestFn) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(body(backend));
    }));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    outcome.map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "test panicked".to_owned());
        Failed::from(message)
    })
}
