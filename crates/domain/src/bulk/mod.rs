//! Bulk actions: one admin action (Force Sign In, a reset email, "require a new password") over
//! a selection of customers, run as a durable job.
//!
//! - The selection is frozen when the job starts: its customers are listed then, and customers
//!   who match later are not touched.
//! - Any replica works any job, a chunk at a time. A chunk's effects, its customers leaving the
//!   job's list and the job's counters commit together: a replica killed mid-chunk leaves the
//!   chunk for the next, and nothing is done twice (at most one reset email per customer per
//!   job).
//! - A cancelled job touches nobody after the cancel commits.
//! - One audit entry per job (who started it, what, how many), one more if it is cancelled.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Error, Result,
    admin::{AdminPrincipal, AuditAction, CustomerFilter, NewAudit, Page, Permission},
    clock::Clock,
    customer::{ClientInfo, Locale},
    email::Email,
    ports::{MailSignal, SettingsSource},
    reset::{RawResetToken, ResetLinks},
};

/// At most this many customers are selected by id (a grid's checked rows); larger selections
/// are made by filter.
pub const MAX_SELECTED_IDS: usize = 1_000;

/// Customers per chunk: one transaction each.
pub const CHUNK: u64 = 500;

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

#[async_trait::async_trait]
pub trait BulkStore: Send + Sync {
    /// Lists the selection's customers as the job's and stores the job and `audit` (whose
    /// detail gets the count), in one transaction. A job with nobody to do is finished at once.
    async fn start_bulk_job(
        &self,
        job: NewBulkJob,
        selection: &Selection,
        audit: NewAudit,
    ) -> Result<BulkJob>;
    async fn bulk_job(&self, id: Uuid) -> Result<Option<BulkJob>>;
    async fn bulk_jobs(&self, first: u64, after: Option<&BulkJobCursor>) -> Result<Page<BulkJob>>;
    /// Cancels a running job (and writes `audit`); a job that is not running is answered as
    /// it is. `None` for an unknown id.
    async fn cancel_bulk_job(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Option<BulkJob>>;
    /// Takes up to `limit` customers of the oldest running job no other worker holds, applies
    /// the job's action to them and counts them, in one transaction; then finishes the job if
    /// nobody is left. `None` when no running job has customers left to take.
    async fn run_bulk_chunk(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        issue: ResetIssuer,
    ) -> Result<Option<ChunkDone>>;
}

/// The bulk-action use cases. Permission checks are the GraphQL guards' job; these take the
/// principal for the audit trail.
pub struct BulkJobs {
    store: Arc<dyn BulkStore>,
    settings: Arc<dyn SettingsSource>,
    clock: Arc<dyn Clock>,
    links: ResetLinks,
    /// Wakes the mail worker when a chunk queued mail.
    mail: Arc<dyn MailSignal>,
    /// Wakes this replica's bulk worker when a job starts (others find it by polling).
    worker: Arc<dyn MailSignal>,
}

impl BulkJobs {
    pub fn new(
        store: Arc<dyn BulkStore>,
        settings: Arc<dyn SettingsSource>,
        clock: Arc<dyn Clock>,
        links: ResetLinks,
        mail: Arc<dyn MailSignal>,
        worker: Arc<dyn MailSignal>,
    ) -> Self {
        Self {
            store,
            settings,
            clock,
            links,
            mail,
            worker,
        }
    }

    fn audit(
        &self,
        principal: &AdminPrincipal,
        action: AuditAction,
        client: &ClientInfo,
        detail: String,
    ) -> NewAudit {
        NewAudit::by(principal, action, self.clock.now(), client).detail(detail)
    }

    #[tracing::instrument(name = "bulk.start", skip_all)]
    pub async fn start(
        &self,
        principal: &AdminPrincipal,
        action: BulkAction,
        selection: Selection,
        client: &ClientInfo,
    ) -> Result<BulkJob> {
        if let Selection::Ids(ids) = &selection
            && ids.len() > MAX_SELECTED_IDS
        {
            return Err(Error::bad_input(
                "selection",
                format!(
                    "selects at most {MAX_SELECTED_IDS} customers by id; select more by filter"
                ),
            ));
        }
        let id = Uuid::now_v7();
        let job = NewBulkJob {
            id,
            action,
            started_by_id: principal.admin.id,
            started_by: principal.admin.username.clone(),
            now: self.clock.now(),
        };
        let audit = self.audit(
            principal,
            AuditAction::StartBulkAction,
            client,
            format!("job={id} action={}", action.as_str()),
        );
        let job = self.store.start_bulk_job(job, &selection, audit).await?;
        tracing::info!(event = "bulk_job_started", job_id = %job.id, action = action.as_str(), total = job.total, admin_id = %principal.admin.id);
        self.worker.notify();
        Ok(job)
    }

    pub async fn job(&self, id: Uuid) -> Result<Option<BulkJob>> {
        self.store.bulk_job(id).await
    }

    pub async fn jobs(&self, first: u64, after: Option<&BulkJobCursor>) -> Result<Page<BulkJob>> {
        self.store.bulk_jobs(first, after).await
    }

    #[tracing::instrument(name = "bulk.cancel", skip_all)]
    pub async fn cancel(
        &self,
        principal: &AdminPrincipal,
        id: Uuid,
        client: &ClientInfo,
    ) -> Result<BulkJob> {
        let audit = self.audit(
            principal,
            AuditAction::CancelBulkJob,
            client,
            format!("job={id}"),
        );
        let job = self
            .store
            .cancel_bulk_job(id, self.clock.now(), audit)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(event = "bulk_job_cancelled", job_id = %id, processed = job.processed, admin_id = %principal.admin.id);
        Ok(job)
    }

    /// Works one chunk (at most `limit` customers, at most [`CHUNK`]) of whichever job is
    /// running; `None` when there is nothing to do.
    pub async fn work(&self, limit: u64) -> Result<Option<ChunkDone>> {
        let now = self.clock.now();
        let lifetime = self.settings.current().await?.reset.link_lifetime;
        let links = self.links.clone();
        let issue: ResetIssuer = Arc::new(move |target: &BulkTarget| {
            let email = Email::parse(&target.email)
                .map_err(|_| Error::internal("a stored address does not parse"))?;
            let token = RawResetToken::generate()?;
            Ok(IssuedReset {
                link: links.build(None, &token, &email),
                token_hash: token.hash(),
                expires_at: now + lifetime,
            })
        });
        let done = self
            .store
            .run_bulk_chunk(now, limit.clamp(1, CHUNK), issue)
            .await?;
        if let Some(d) = &done
            && d.action == BulkAction::SendResetEmail
            && d.processed > d.failed
        {
            self.mail.notify();
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_need_their_single_permission_and_round_trip() {
        for a in [
            BulkAction::ForceSignIn,
            BulkAction::SendResetEmail,
            BulkAction::RequireNewPassword,
        ] {
            assert_eq!(BulkAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(
            BulkAction::ForceSignIn.permission(),
            Permission::CustomersRevokeTokens
        );
        assert_eq!(
            BulkAction::RequireNewPassword.permission(),
            Permission::CustomersResetPassword
        );
        assert_eq!(BulkAction::parse("DELETE"), None);
        for s in [
            BulkJobStatus::Running,
            BulkJobStatus::Finished,
            BulkJobStatus::Cancelled,
        ] {
            assert_eq!(BulkJobStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn job_cursors_round_trip_and_garbage_is_refused() {
        let c = BulkJobCursor {
            started_at: Utc::now(),
            id: Uuid::now_v7(),
        };
        assert_eq!(BulkJobCursor::decode(&c.encode()).unwrap(), c);
        assert!(BulkJobCursor::decode("nope!").is_err());
    }
}
