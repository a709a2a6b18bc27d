//! An address an account moved away from stays the account's while the old address's "this
//! wasn't me" link can still put it back: registration and other accounts' email changes look
//! it up by the old address.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("email_changes_old_email_key")
                    .table(EmailChanges::Table)
                    .col(EmailChanges::OldEmailKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("email_changes_old_email_key")
                    .table(EmailChanges::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum EmailChanges {
    Table,
    OldEmailKey,
}
