//! Bulk actions on a selection of customers, as durable jobs. Starting one needs
//! `CUSTOMERS_BULK` and the permission of the same action on one customer; reading and
//! cancelling jobs needs `CUSTOMERS_BULK`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{
    admin::{Permission, page_size},
    bulk::{self, BulkJobCursor, Selection},
};
use uuid::Uuid;

use crate::{
    ApiError,
    admin_types::{CustomerFilter, PageInfo},
    context::{admin, admin_with, request, services},
    guard::RequirePermission,
};

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum BulkAction {
    /// Revoke every live access token of each selected customer (Force Sign In).
    ForceSignIn,
    /// Email each selected customer a reset link (the admin's "Reset Password" mail), through
    /// the bulk mail lane: storefront mail is never queued behind it.
    SendResetEmail,
    /// Each selected customer's current password stops working (sign-in answers as for a
    /// wrong password); "Forgot Your Password?" sets a new one. Sessions are kept: add Force
    /// Sign In to end them.
    RequireNewPassword,
}

impl From<BulkAction> for bulk::BulkAction {
    fn from(a: BulkAction) -> Self {
        match a {
            BulkAction::ForceSignIn => Self::ForceSignIn,
            BulkAction::SendResetEmail => Self::SendResetEmail,
            BulkAction::RequireNewPassword => Self::RequireNewPassword,
        }
    }
}

impl From<bulk::BulkAction> for BulkAction {
    fn from(a: bulk::BulkAction) -> Self {
        match a {
            bulk::BulkAction::ForceSignIn => Self::ForceSignIn,
            bulk::BulkAction::SendResetEmail => Self::SendResetEmail,
            bulk::BulkAction::RequireNewPassword => Self::RequireNewPassword,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum BulkJobStatus {
    Running,
    Finished,
    Cancelled,
}

impl From<bulk::BulkJobStatus> for BulkJobStatus {
    fn from(s: bulk::BulkJobStatus) -> Self {
        match s {
            bulk::BulkJobStatus::Running => Self::Running,
            bulk::BulkJobStatus::Finished => Self::Finished,
            bulk::BulkJobStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Which customers a bulk action is for: `customerIds` (at most 1,000: a few pages of checked rows) or `filter` (what the
/// grid shows for it when the job starts), exactly one of them. The selection is frozen when
/// the job starts: customers who match later are not touched.
#[derive(InputObject)]
pub struct BulkSelection {
    pub customer_ids: Option<Vec<ID>>,
    pub filter: Option<CustomerFilter>,
}

/// A bulk action's durable job: any server works it, a chunk at a time; one killed mid-way
/// leaves its chunk to another, and no customer is done twice.
#[derive(SimpleObject)]
pub struct BulkJob {
    pub id: ID,
    pub action: BulkAction,
    pub status: BulkJobStatus,
    /// Customers selected when it started.
    pub total: i32,
    /// Customers done so far (including `failed`).
    pub processed: i32,
    /// Selected customers who no longer existed when their turn came.
    pub failed: i32,
    pub started_at: DateTime<Utc>,
    /// When it finished or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// The admin who started it.
    pub started_by: String,
}

impl From<bulk::BulkJob> for BulkJob {
    fn from(j: bulk::BulkJob) -> Self {
        Self {
            id: ID(j.id.to_string()),
            action: j.action.into(),
            status: j.status.into(),
            total: count(j.total),
            processed: count(j.processed),
            failed: count(j.failed),
            started_at: j.started_at,
            finished_at: j.finished_at,
            started_by: j.started_by,
        }
    }
}

#[derive(SimpleObject)]
pub struct BulkJobEdge {
    pub cursor: String,
    pub node: BulkJob,
}

#[derive(SimpleObject)]
pub struct BulkJobConnection {
    pub edges: Vec<BulkJobEdge>,
    pub page_info: PageInfo,
    pub total_count: i32,
}

fn job_id(id: &ID) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str()).map_err(|_| ApiError::from(domain::Error::NotFound))
}

#[derive(Default)]
pub struct BulkQuery;

#[Object]
impl BulkQuery {
    /// One bulk job (poll it for progress); null for an unknown id.
    #[graphql(guard = "RequirePermission(Permission::CustomersBulk)")]
    async fn bulk_job(&self, ctx: &Context<'_>, id: ID) -> Result<Option<BulkJob>, ApiError> {
        let Ok(id) = Uuid::parse_str(id.as_str()) else {
            return Ok(None);
        };
        Ok(services(ctx)?.bulk.job(id).await?.map(Into::into))
    }

    /// Bulk jobs, newest first (`first` up to 100).
    #[graphql(guard = "RequirePermission(Permission::CustomersBulk)")]
    async fn bulk_jobs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<BulkJobConnection, ApiError> {
        let first = page_size(first.map(i64::from))?;
        let after = after.as_deref().map(BulkJobCursor::decode).transpose()?;
        let page = services(ctx)?.bulk.jobs(first, after.as_ref()).await?;
        let end_cursor = page.items.last().map(|(c, _)| c.clone());
        Ok(BulkJobConnection {
            edges: page
                .items
                .into_iter()
                .map(|(cursor, j)| BulkJobEdge {
                    cursor,
                    node: j.into(),
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
            total_count: count(page.total_count),
        })
    }
}

#[derive(Default)]
pub struct BulkMutation;

#[Object]
impl BulkMutation {
    /// Starts a bulk action over a selection and answers its job (poll `bulkJob` for
    /// progress). Needs CUSTOMERS_BULK and the single action's permission (Force Sign In:
    /// CUSTOMERS_REVOKE_TOKENS; the others: CUSTOMERS_RESET_PASSWORD). One audit entry.
    #[graphql(guard = "RequirePermission(Permission::CustomersBulk)")]
    async fn start_bulk_action(
        &self,
        ctx: &Context<'_>,
        action: BulkAction,
        selection: BulkSelection,
    ) -> Result<BulkJob, ApiError> {
        let action = bulk::BulkAction::from(action);
        let principal = admin_with(ctx, action.permission()).await?;
        let selection = match (selection.customer_ids, selection.filter) {
            (Some(ids), None) => Selection::Ids(
                ids.iter()
                    .map(|id| {
                        Uuid::parse_str(id.as_str()).map_err(|_| {
                            ApiError::from(domain::Error::bad_input(
                                "selection",
                                "customerIds holds an id that names no customer",
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (None, Some(filter)) => Selection::Filter(filter.into_domain()?),
            _ => {
                return Err(ApiError::from(domain::Error::bad_input(
                    "selection",
                    "give either customerIds or filter",
                )));
            }
        };
        let job = services(ctx)?
            .bulk
            .start(&principal, action, selection, &request(ctx).client)
            .await?;
        Ok(job.into())
    }

    /// Cancels a running bulk job: no customer is touched after it answers (what was done
    /// stays done). A job that is not running is answered as it is. NOT_FOUND for an unknown
    /// id.
    #[graphql(guard = "RequirePermission(Permission::CustomersBulk)")]
    async fn cancel_bulk_job(&self, ctx: &Context<'_>, id: ID) -> Result<BulkJob, ApiError> {
        let principal = admin(ctx).await?;
        let job = services(ctx)?
            .bulk
            .cancel(&principal, job_id(&id)?, &request(ctx).client)
            .await?;
        Ok(job.into())
    }
}
