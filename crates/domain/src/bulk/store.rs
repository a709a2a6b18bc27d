//! The port bulk jobs are stored and worked through.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::job::{BulkJob, BulkJobCursor, ChunkDone, NewBulkJob, ResetIssuer, Selection};
use crate::{
    Result,
    admin::{NewAudit, Page},
};

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
