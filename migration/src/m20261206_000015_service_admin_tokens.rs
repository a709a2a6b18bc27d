//! A service credential answers for admin tokens only when made to (`latchkey service create
//! NAME --admin-tokens`): most services (cart, orders) only ever see customers' tokens, and
//! have no business learning whether an admin token is live, or an admin's role.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceCredentials::Table)
                    .add_column(boolean(ServiceCredentials::AdminTokens).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceCredentials::Table)
                    .drop_column(ServiceCredentials::AdminTokens)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ServiceCredentials {
    Table,
    AdminTokens,
}
