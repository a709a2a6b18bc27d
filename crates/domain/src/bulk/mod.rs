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

mod job;
mod store;

pub use job::*;
pub use store::BulkStore;

use std::sync::Arc;

use uuid::Uuid;

use crate::{
    Error, Result,
    admin::{AdminPrincipal, AuditAction, NewAudit, Page},
    clock::Clock,
    email::Email,
    kernel::client::ClientInfo,
    ports::{MailSignal, SettingsSource},
    reset::{RawResetToken, ResetLinks},
};

/// At most this many customers are selected by id (a grid's checked rows); larger selections
/// are made by filter.
pub const MAX_SELECTED_IDS: usize = 1_000;

/// Customers per chunk: one transaction each.
pub const CHUNK: u64 = 500;

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
    use chrono::Utc;

    use crate::admin::Permission;

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
