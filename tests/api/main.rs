//! End-to-end tests: a real server on a random port, real HTTP, a fresh database per test.
//! Every backend test runs twice, on SQLite and on PostgreSQL (the replica, fault and key tests
//! a third time, through PgBouncer in transaction mode). PostgreSQL runs need
//! `LATCHKEY_TEST_POSTGRES_URL` (for example `postgres://postgres@127.0.0.1:5432/test`); without
//! it they are listed as ignored, and under `CI=true` its absence is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod admin;
mod admin_users;
mod attack;
mod browser;
mod bulk;
mod codes;
mod connections;
mod cves;
mod events;
mod factors;
mod faults;
mod federation;
mod graphql_http;
mod hangups;
mod hardening;
mod harness;
mod helpers;
mod import;
mod introspect;
mod keys;
mod lifecycle;
mod limits;
mod node;
mod ops;
mod process;
mod proxy;
mod replicas;
mod reports;
mod reset;
mod session_cache;
mod sessions;
mod smtp;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let groups = [
        accounts::TESTS,
        attack::TESTS,
        admin::TESTS,
        admin_users::TESTS,
        factors::TESTS,
        bulk::TESTS,
        sessions::TESTS,
        session_cache::TESTS,
        hardening::TESTS,
        ops::TESTS,
        reset::TESTS,
        codes::TESTS,
        reports::TESTS,
        replicas::TESTS,
        faults::TESTS,
        hangups::TESTS,
        keys::TESTS,
        lifecycle::TESTS,
        introspect::TESTS,
        graphql_http::TESTS,
        federation::TESTS,
        limits::TESTS,
        connections::TESTS,
        import::TESTS,
        browser::TESTS,
        cves::TESTS,
        events::TESTS,
    ];
    // Many replicas put PgBouncer in front of PostgreSQL: what they share goes through it.
    let through_pgbouncer = [
        replicas::TESTS,
        faults::TESTS,
        keys::TESTS,
        events::TESTS,
        session_cache::TESTS,
    ];
    let trials = harness::trials(&groups, &through_pgbouncer);
    libtest_mimic::run(&args, trials).exit();
}
