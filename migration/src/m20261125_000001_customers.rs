//! Customer accounts: identity, password hash and sign-in lockout state.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(uuid(Customers::Id).primary_key())
                    .col(string_len(Customers::Email, 254))
                    // Lower-cased email: one account per address whatever its case.
                    .col(string_len_uniq(Customers::EmailKey, 254))
                    .col(string_len(Customers::Firstname, 255))
                    .col(string_len(Customers::Lastname, 255))
                    .col(string_len(Customers::Locale, 8))
                    .col(string_len(Customers::PasswordHash, 255))
                    .col(timestamp_with_time_zone(Customers::PasswordChangedAt))
                    .col(integer(Customers::FailedSignIns).default(0))
                    .col(timestamp_with_time_zone_null(Customers::LockedUntil))
                    .col(timestamp_with_time_zone(Customers::CreatedAt))
                    .col(timestamp_with_time_zone(Customers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_customers_created_at")
                    .table(Customers::Table)
                    .col(Customers::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Customers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Customers {
    Table,
    Id,
    Email,
    EmailKey,
    Firstname,
    Lastname,
    Locale,
    PasswordHash,
    PasswordChangedAt,
    FailedSignIns,
    LockedUntil,
    CreatedAt,
    UpdatedAt,
}
