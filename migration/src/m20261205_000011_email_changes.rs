//! Email changes: one row per `requestCustomerEmailChange`, holding the hashes of its two
//! links (confirm, sent to the new address; cancel, sent to the old one). The links themselves
//! live only in the outbox until sent.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_customers::Customers;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EmailChanges::Table)
                    .col(uuid(EmailChanges::Id).primary_key())
                    .col(uuid(EmailChanges::CustomerId))
                    .col(string_len(EmailChanges::OldEmail, 254))
                    .col(string_len(EmailChanges::OldEmailKey, 254))
                    .col(string_len(EmailChanges::NewEmail, 254))
                    .col(string_len(EmailChanges::NewEmailKey, 254))
                    // SHA-256 hex of each emailed token; the tokens are never stored here.
                    .col(string_len_uniq(EmailChanges::ConfirmHash, 64))
                    .col(string_len_uniq(EmailChanges::CancelHash, 64))
                    .col(timestamp_with_time_zone(EmailChanges::CreatedAt))
                    .col(timestamp_with_time_zone(EmailChanges::ExpiresAt))
                    .col(timestamp_with_time_zone(EmailChanges::CancelUntil))
                    .col(timestamp_with_time_zone_null(EmailChanges::ConfirmedAt))
                    .col(timestamp_with_time_zone_null(EmailChanges::CancelledAt))
                    .col(timestamp_with_time_zone_null(EmailChanges::SupersededAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EmailChanges::Table, EmailChanges::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("email_changes_customer")
                    .table(EmailChanges::Table)
                    .col(EmailChanges::CustomerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EmailChanges::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EmailChanges {
    Table,
    Id,
    CustomerId,
    OldEmail,
    OldEmailKey,
    NewEmail,
    NewEmailKey,
    ConfirmHash,
    CancelHash,
    CreatedAt,
    ExpiresAt,
    CancelUntil,
    ConfirmedAt,
    CancelledAt,
    SupersededAt,
}
