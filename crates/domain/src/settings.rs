//! The admin-editable settings of SPEC "Settings", with the source documents' defaults.

use chrono::Duration;

use crate::{lockout::LockoutPolicy, password::PasswordPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub password: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub customer_token_lifetime: Duration,
    pub admin_token_lifetime: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            customer_token_lifetime: Duration::hours(1),
            admin_token_lifetime: Duration::hours(4),
        }
    }
}
