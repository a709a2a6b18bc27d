//! The address a "this wasn't me" removes from a frozen account gets a link to give the
//! account back to the address from before: its SHA-256 and lifetime are kept on the change
//! that was undone.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EmailChanges::Table)
                    .add_column(string_len_null(EmailChanges::ReleaseHash, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(EmailChanges::Table)
                    .add_column(timestamp_with_time_zone_null(EmailChanges::ReleaseUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_email_changes_release_hash")
                    .table(EmailChanges::Table)
                    .col(EmailChanges::ReleaseHash)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_email_changes_release_hash")
                    .table(EmailChanges::Table)
                    .to_owned(),
            )
            .await?;
        for column in [EmailChanges::ReleaseUntil, EmailChanges::ReleaseHash] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EmailChanges::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum EmailChanges {
    Table,
    ReleaseHash,
    ReleaseUntil,
}
