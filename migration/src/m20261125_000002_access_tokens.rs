//! One row per customer access token (the JWT's `jti`): what makes tokens countable, listable
//! and revocable on the very next request.

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
                    .table(AccessTokens::Table)
                    .col(uuid(AccessTokens::Id).primary_key())
                    .col(uuid(AccessTokens::CustomerId))
                    .col(timestamp_with_time_zone(AccessTokens::CreatedAt))
                    .col(timestamp_with_time_zone(AccessTokens::ExpiresAt))
                    .col(timestamp_with_time_zone(AccessTokens::LastUsedAt))
                    .col(string_len_null(AccessTokens::ClientIp, 64))
                    .col(string_len_null(AccessTokens::UserAgent, 1024))
                    .col(timestamp_with_time_zone_null(AccessTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_access_tokens_customer")
                            .from(AccessTokens::Table, AccessTokens::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves "live tokens of this customer": sessions list, Force Sign In, counts.
        manager
            .create_index(
                Index::create()
                    .name("idx_access_tokens_customer_live")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::CustomerId)
                    .col(AccessTokens::RevokedAt)
                    .col(AccessTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessTokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum AccessTokens {
    Table,
    Id,
    CustomerId,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    ClientIp,
    UserAgent,
    RevokedAt,
}
