//! Security events for the rest of the store. `event_subscriptions` holds each receiver an
//! administrator set up: its URL, format (Standard Webhooks or Shared Signals SETs), the event
//! types it wants, whether it may see email addresses, the SET audience, its cap of requests in
//! flight, and its webhook secret sealed under the server's secret. `event_deliveries` holds one
//! row per event per subscription, written in the transaction of the change that caused it, and
//! worked by the event worker: numbered in the order written (`seq`), so each subscription gets
//! a subject's events in that order; `priority` 1 marks a bulk job's, which wait behind the
//! events of single changes (never behind their own subject's earlier ones).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventSubscriptions::Table)
                    .col(uuid(EventSubscriptions::Id).primary_key())
                    .col(string_len(EventSubscriptions::Name, 64))
                    .col(string_len(EventSubscriptions::Url, 2048))
                    .col(string_len(EventSubscriptions::Format, 32))
                    .col(string_len(EventSubscriptions::EventTypes, 256))
                    .col(boolean(EventSubscriptions::Enabled))
                    .col(boolean(EventSubscriptions::IncludeEmail))
                    .col(string_len_null(EventSubscriptions::Audience, 256))
                    .col(integer(EventSubscriptions::MaxInFlight))
                    .col(blob_null(EventSubscriptions::SecretSealed))
                    .col(timestamp_with_time_zone(EventSubscriptions::CreatedAt))
                    .col(timestamp_with_time_zone(EventSubscriptions::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventDeliveries::Table)
                    .col(big_pk_auto(EventDeliveries::Seq))
                    .col(uuid(EventDeliveries::SubscriptionId))
                    .col(uuid(EventDeliveries::EventId))
                    .col(string_len(EventDeliveries::EventType, 32))
                    .col(string_len(EventDeliveries::SubjectKind, 16))
                    .col(uuid(EventDeliveries::SubjectId))
                    .col(uuid_null(EventDeliveries::SessionId))
                    .col(string_len(EventDeliveries::Reason, 32))
                    .col(string_len(EventDeliveries::Actor, 16))
                    .col(small_integer(EventDeliveries::Priority))
                    .col(timestamp_with_time_zone(EventDeliveries::OccurredAt))
                    .col(string_len_null(EventDeliveries::Email, 320))
                    .col(string_len_null(EventDeliveries::NewEmail, 320))
                    .col(string_len(EventDeliveries::Status, 16))
                    .col(integer(EventDeliveries::Attempts))
                    .col(timestamp_with_time_zone(EventDeliveries::NextAttemptAt))
                    .col(uuid_null(EventDeliveries::ClaimId))
                    .col(timestamp_with_time_zone_null(EventDeliveries::ClaimedUntil))
                    .col(integer_null(EventDeliveries::LastStatus))
                    .col(string_len_null(EventDeliveries::LastError, 500))
                    .col(timestamp_with_time_zone(EventDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone_null(EventDeliveries::DeliveredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_event_deliveries_subscription")
                            .from(EventDeliveries::Table, EventDeliveries::SubscriptionId)
                            .to(EventSubscriptions::Table, EventSubscriptions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Full indexes, not partial ones: the statements bind `status` as a parameter, and
        // neither SQLite (its plans fixed without the values) nor a generic PostgreSQL plan can
        // use an index whose WHERE names a value.
        for (name, columns) in [
            // The claim and the idle poll: a subscription's pending rows, single changes'
            // before bulk jobs', in order; and what is in flight (`sending`).
            (
                "idx_event_deliveries_due",
                &[
                    EventDeliveries::SubscriptionId,
                    EventDeliveries::Status,
                    EventDeliveries::Priority,
                    EventDeliveries::Seq,
                ][..],
            ),
            // Order per subject: is an earlier delivery of this subject still unsettled?
            (
                "idx_event_deliveries_subject",
                &[
                    EventDeliveries::SubscriptionId,
                    EventDeliveries::SubjectId,
                    EventDeliveries::Status,
                    EventDeliveries::Seq,
                ][..],
            ),
            // The Integrations page: a subscription's newest deliveries.
            (
                "idx_event_deliveries_list",
                &[EventDeliveries::SubscriptionId, EventDeliveries::Seq][..],
            ),
            // A subject's queued events (a single change lifts them; erasure scrubs them).
            (
                "idx_event_deliveries_subject_id",
                &[EventDeliveries::SubjectId, EventDeliveries::Status][..],
            ),
            // Housekeeping: delivered rows past their week.
            (
                "idx_event_deliveries_delivered",
                &[EventDeliveries::Status, EventDeliveries::DeliveredAt][..],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(EventDeliveries::Table);
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(EventSubscriptions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EventSubscriptions {
    Table,
    Id,
    Name,
    Url,
    Format,
    EventTypes,
    Enabled,
    IncludeEmail,
    Audience,
    MaxInFlight,
    SecretSealed,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum EventDeliveries {
    Table,
    Seq,
    SubscriptionId,
    EventId,
    EventType,
    SubjectKind,
    SubjectId,
    SessionId,
    Reason,
    Actor,
    Priority,
    OccurredAt,
    Email,
    NewEmail,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimId,
    ClaimedUntil,
    LastStatus,
    LastError,
    CreatedAt,
    DeliveredAt,
}
