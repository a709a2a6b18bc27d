//! "Remember this browser": after a second factor, an admin's browser may get a grant that
//! skips the factor (never the password) at that admin's later sign-ins, for as long as the
//! store's `remember_browser` setting says (a month at most; none by default). The browser
//! keeps a random 256-bit secret; only its SHA-256 is stored. A grant is revoked by the admin
//! (one by one), and with every session of theirs: Force Sign In, a password set, disabling,
//! a reset of their factors.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A live grant, as the admin sees it in their list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The browser that asked, as it named itself (for the admin to recognise it).
    pub user_agent: Option<String>,
}

/// A grant to store: its secret's hash only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub id: Uuid,
    pub admin_id: Uuid,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
}

/// A grant just made: the secret for the browser to keep (shown once) and when it ends. Its
/// `Debug` shows no secret.
pub struct RememberedBrowser {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for RememberedBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RememberedBrowser")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
