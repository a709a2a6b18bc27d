//! The use cases' rules, tested without the server: each use case of `crates/domain` on the
//! real repositories of this crate (`latchkey-testkit` wires them over a fresh SQLite file, at a
//! fixed time, with a hasher that costs nothing). A rule that fails here fails in seconds and
//! points at the use case.

// A test that cannot set up its database should stop right there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod admins;
mod bulk;
mod codes;
mod email_change;
mod erasure;
mod factors;
mod reports;
mod resets;
mod sign_in;

pub use testkit::{Harness, PASSWORD};
