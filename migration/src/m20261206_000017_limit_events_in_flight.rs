//! A limit event can be *in flight*: reserved by a password check that is still running. A
//! sign-in refused only because of in-flight events waits for them to settle (a correct
//! password gives its place back), so concurrent correct sign-ins of one account are not
//! locked out.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(LimitEvents::Table)
                    .add_column(boolean(LimitEvents::InFlight).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(LimitEvents::Table)
                    .drop_column(LimitEvents::InFlight)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum LimitEvents {
    Table,
    InFlight,
}
