//! Admin users managed from the console: an email address (invitations and "Forgot your
//! password?" go to it), a disabled flag, and the single-use tokens of invitations and admin
//! password resets (hashes only).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(AdminUsers::Table)
                    .add_column(string_len_null(AdminUsers::Email, 254))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AdminUsers::Table)
                    .add_column(timestamp_with_time_zone_null(AdminUsers::DisabledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminPasswordTokens::Table)
                    .col(uuid(AdminPasswordTokens::Id).primary_key())
                    .col(uuid(AdminPasswordTokens::AdminId))
                    // `invitation` or `reset`.
                    .col(string_len(AdminPasswordTokens::Purpose, 16))
                    .col(string_len_uniq(AdminPasswordTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(AdminPasswordTokens::CreatedAt))
                    .col(timestamp_with_time_zone(AdminPasswordTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AdminPasswordTokens::UsedAt))
                    .col(timestamp_with_time_zone_null(
                        AdminPasswordTokens::SupersededAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AdminPasswordTokens::Table, AdminPasswordTokens::AdminId)
                            .to(AdminUsers::Table, AdminUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AdminPasswordTokens::Table).to_owned())
            .await?;
        for column in [AdminUsers::DisabledAt, AdminUsers::Email] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AdminUsers::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AdminUsers {
    Table,
    Id,
    Email,
    DisabledAt,
}

#[derive(DeriveIden)]
enum AdminPasswordTokens {
    Table,
    Id,
    AdminId,
    Purpose,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    SupersededAt,
}
