//! Password reset, one folder: the token and the link it travels in, with the request limits
//! (`token`); the use cases, "Forgot Your Password?", the admin's "Reset Password" and the "New
//! Password" form (`service`); and the repository's port (`store`).

mod service;
mod store;
mod token;

pub use service::Resets;
pub use store::{ResetRequest, ResetStore, StoredResetToken};
pub use token::*;
