//! A bulk job: its action, its selection, its state, and what one chunk of it did.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Result,
    admin::{CustomerFilter, Permission},
    customer::Locale,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BulkAction {
    /// Revoke every live access token (Force Sign In).
    ForceSignIn,
    /// The admin's "Reset Password" email, sent through the bulk mail lane.
    SendResetEmail,
    /// The current password stops working (sign-in answers as for a wrong password);
    /// "Forgot Your Password?" sets a new one.
    RequireNewPassword,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForceSignIn => "FORCE_SIGN_IN",
            Self::SendResetEmail => "SEND_RESET_EMAIL",
            Self::RequireNewPassword => "REQUIRE_NEW_PASSWORD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FORCE_SIGN_IN" => Some(Self::ForceSignIn),
            "SEND_RESET_EMAIL" => Some(Self::SendResetEmail),
            "REQUIRE_NEW_PASSWORD" => Some(Self::RequireNewPassword),
            _ => None,
        }
    }

    /// The permission of the same action on one customer; a bulk action needs it and
    /// [`Permission::CustomersBulk`].
    pub fn permission(self) -> Permission {
        match self {
            Self::ForceSignIn => Permission::CustomersRevokeTokens,
            Self::SendResetEmail | Self::RequireNewPassword => Permission::CustomersResetPassword,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkJobStatus {
    Running,
    Finished,
    Cancelled,
}

impl BulkJobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "finished" => Some(Self::Finished),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJob {
    pub id: Uuid,
    pub action: BulkAction,
    pub status: BulkJobStatus,
    /// Customers selected when the job started.
    pub total: u64,
    /// Customers done (including `failed`).
    pub processed: u64,
    /// Selected customers who no longer existed when their turn came.
    pub failed: u64,
    pub started_at: DateTime<Utc>,
    /// When it finished or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// The admin who started it (username).
    pub started_by: String,
}

/// Which customers a job is for.
#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<Uuid>),
    /// Everything the grid's filter matches when the job starts.
    Filter(CustomerFilter),
}

/// A job about to start.
#[derive(Debug, Clone)]
pub struct NewBulkJob {
    pub id: Uuid,
    pub action: BulkAction,
    pub started_by_id: Uuid,
    pub started_by: String,
    pub now: DateTime<Utc>,
}

/// A customer whose turn has come in a reset-email job.
#[derive(Debug, Clone)]
pub struct BulkTarget {
    pub customer_id: Uuid,
    /// The address stored on the account: the mail goes there.
    pub email: String,
    pub locale: Locale,
}

/// A reset link made for one customer: the store keeps the hash, the mail carries the link.
#[derive(Debug, Clone)]
pub struct IssuedReset {
    pub token_hash: String,
    pub link: String,
    pub expires_at: DateTime<Utc>,
}

/// Makes a customer's reset link (the domain's rule, run by the store inside the chunk's
/// transaction).
pub type ResetIssuer = Arc<dyn Fn(&BulkTarget) -> Result<IssuedReset> + Send + Sync>;

/// What one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDone {
    pub job_id: Uuid,
    pub action: BulkAction,
    pub processed: u64,
    pub failed: u64,
}

/// Keyset paging of the jobs list: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobCursor {
    pub started_at: DateTime<Utc>,
    pub id: Uuid,
}

impl BulkJobCursor {
    pub fn encode(&self) -> String {
        crate::admin::encode_cursor(self)
    }

    pub fn decode(s: &str) -> Result<Self> {
        crate::admin::decode_cursor(s, 1024)
    }
}
