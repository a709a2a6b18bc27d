//! Password reset, one folder: the token and the link it travels in, with the request limits
//! (`token`); the use cases, "Forgot Your Password?", the admin's "Reset Password" and the "New
//! Password" form (`service`); and the repository's port (`store`).

mod code;
mod service;
mod store;
mod token;

pub use code::{
    CODE_DIGITS, CodePurpose, FlowId, MAX_CODE_ATTEMPTS, MAX_WRONG_CODES_PER_ADDRESS, NewFlow,
    OneTimeCode, WRONG_CODE_WINDOW,
};
pub use service::{Resets, StartedFlow};
pub use store::{CodeAttempt, RequestedCode, ResetRequest, ResetStore, StoredResetToken};
pub use token::*;
