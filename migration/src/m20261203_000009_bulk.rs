//! Bulk actions as durable jobs, and mail lanes.
//!
//! - `bulk_jobs`: one row per job, with its counters.
//! - `bulk_job_items`: the customers a job still has to do, listed when it starts (the
//!   frozen selection). A chunk deletes its rows in the transaction that applies the action,
//!   so "listed" means "not done yet", and a replica killed mid-chunk leaves them listed.
//! - `email_outbox.lane`: `interactive` (the storefront's and one admin's mail) or `bulk`
//!   (bulk jobs' mail), each claimed by its own worker, so a campaign never delays a
//!   customer's "Forgot Your Password?".

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BulkJobs::Table)
                    .col(uuid(BulkJobs::Id).primary_key())
                    .col(string_len(BulkJobs::Action, 32))
                    .col(string_len(BulkJobs::Status, 16))
                    .col(big_integer(BulkJobs::Total))
                    .col(big_integer(BulkJobs::Processed).default(0))
                    .col(big_integer(BulkJobs::Failed).default(0))
                    .col(uuid(BulkJobs::StartedById))
                    .col(string_len(BulkJobs::StartedBy, 64))
                    .col(timestamp_with_time_zone(BulkJobs::StartedAt))
                    .col(timestamp_with_time_zone_null(BulkJobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        // The workers' "oldest running job" and the jobs page (newest first).
        manager
            .create_index(
                Index::create()
                    .name("idx_bulk_jobs_status_started")
                    .table(BulkJobs::Table)
                    .col(BulkJobs::Status)
                    .col(BulkJobs::StartedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_bulk_jobs_started")
                    .table(BulkJobs::Table)
                    .col(BulkJobs::StartedAt)
                    .col(BulkJobs::Id)
                    .to_owned(),
            )
            .await?;
        // One row per customer per job: a customer is done at most once by a job.
        manager
            .create_table(
                Table::create()
                    .table(BulkJobItems::Table)
                    .col(uuid(BulkJobItems::JobId))
                    .col(uuid(BulkJobItems::CustomerId))
                    .primary_key(
                        Index::create()
                            .col(BulkJobItems::JobId)
                            .col(BulkJobItems::CustomerId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(EmailOutbox::Table)
                    .add_column(string_len(EmailOutbox::Lane, 16).default("interactive"))
                    .to_owned(),
            )
            .await?;
        // Each lane's worker reads only its own due rows, in the order they fall due: a
        // million bulk rows cost the interactive claim nothing.
        manager
            .create_index(
                Index::create()
                    .name("idx_email_outbox_lane_due")
                    .table(EmailOutbox::Table)
                    .col(EmailOutbox::Lane)
                    .col(EmailOutbox::Status)
                    .col(EmailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_email_outbox_lane_due")
                    .table(EmailOutbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(EmailOutbox::Table)
                    .drop_column(EmailOutbox::Lane)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(BulkJobItems::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BulkJobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum BulkJobs {
    Table,
    Id,
    Action,
    Status,
    Total,
    Processed,
    Failed,
    StartedById,
    StartedBy,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum BulkJobItems {
    Table,
    JobId,
    CustomerId,
}

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    Lane,
    Status,
    NextAttemptAt,
}
