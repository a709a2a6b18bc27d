//! The admin side, one folder: who an admin is and what each role may do (`role`), the
//! customers grid's query (`grid`), the audit log (`audit_log`), the admin use cases — sign-in,
//! the grid, Force Sign In, settings (`service`) — admin users and their links (`users`), and
//! the admin repository's port (`store`).

mod audit_log;
mod grid;
mod role;
mod service;
mod store;
mod users;

pub use audit_log::*;
pub use grid::*;
pub use role::*;
pub use service::*;
pub use store::*;
pub use users::*;
