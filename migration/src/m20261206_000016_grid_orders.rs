//! Indexes for every order the customers grid offers, each with `id` as the tie-break the
//! grid's cursors use: `(created_at, id)`, `(lastname, firstname, id)` and `(email_key, id)`.
//! Imports from other platforms often give every customer one `created_at` (a CSV without the
//! column, or dates without times): with an index on `created_at` alone, each page then sorted
//! every row (0.45 s a page at 2,000,000 customers on PostgreSQL, 1.3 s on SQLite). The
//! `(created_at, id)` index replaces the one on `created_at`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: [(&str, &[Customers]); 3] = [
    (
        "idx_customers_created_at_id",
        &[Customers::CreatedAt, Customers::Id],
    ),
    (
        "idx_customers_name_id",
        &[Customers::Lastname, Customers::Firstname, Customers::Id],
    ),
    (
        "idx_customers_email_key_id",
        &[Customers::EmailKey, Customers::Id],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(Customers::Table);
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_customers_created_at")
                    .table(Customers::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_customers_created_at")
                    .table(Customers::Table)
                    .col(Customers::CreatedAt)
                    .to_owned(),
            )
            .await?;
        for (name, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Customers::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Customers {
    Table,
    Id,
    CreatedAt,
    Lastname,
    Firstname,
    EmailKey,
}
