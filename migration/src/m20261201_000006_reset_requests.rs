//! Reset requests as recorded on the request path: one row for every accepted "Forgot Your
//! Password?", whether or not an account has the address, so the request does the same work
//! for every address. The mail worker resolves each row off the request path (a token and a
//! mail for an account, nothing for an unknown address) and deletes it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ResetRequests::Table)
                    // UUIDv7: the primary key orders rows by arrival, which is the order the
                    // worker resolves them in.
                    .col(uuid(ResetRequests::Id).primary_key())
                    .col(string_len(ResetRequests::EmailKey, 254))
                    // The link carries the raw token until the row is resolved (then it moves
                    // to the outbox, or is deleted with the row for an unknown address).
                    .col(text(ResetRequests::Link))
                    .col(string_len(ResetRequests::TokenHash, 64))
                    .col(timestamp_with_time_zone(ResetRequests::ExpiresAt))
                    .col(timestamp_with_time_zone(ResetRequests::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ResetRequests::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ResetRequests {
    Table,
    Id,
    EmailKey,
    Link,
    TokenHash,
    ExpiresAt,
    CreatedAt,
}
