//! Latchkey's domain: the rules of customer accounts, passwords, sign-in and sessions.
//!
//! This crate knows nothing of HTTP, GraphQL or SQL. It parses untrusted input into types that
//! can only hold valid values, holds the rules (password policy, lockout arithmetic, token
//! lifetimes) and the use cases, and declares the ports (storage, hashing, clock) that the
//! server wires to real implementations.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod bulk;
pub mod events;
pub mod factors;
pub mod guard;
pub mod import;
pub mod kernel;
pub mod keys;
pub mod lifecycle;
pub mod outbox;
pub mod password;
pub mod ports;
pub mod reset;
pub mod services;
pub mod settings;
pub mod sign_in;

// The kernel's modules keep their paths (`domain::clock`, `domain::limits`, …).
pub use error::{Error, Result};
pub use kernel::ids::SessionId;
pub use kernel::{clock, email, error, ids, limits, mail};
// Features that moved into folders keep their paths too.
pub use accounts::{customer, search};
pub use keys::token;
pub use lifecycle::{email_change, erasure, report};
pub use password::stored_hash;
pub use settings::lockout;
