//! Admins' second factors. `admin_factors` holds each authenticator app an admin enrolled: its
//! TOTP secret sealed (XChaCha20-Poly1305 under the key-encryption secret, the factor's id as
//! associated data), whether a right code confirmed it, and the newest step it accepted (a step
//! is accepted once). `admin_recovery_codes` holds the keyed hash (HMAC-SHA256) of each
//! single-use recovery code. Both go with their admin.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AdminFactors::Table)
                    .col(uuid(AdminFactors::Id).primary_key())
                    .col(uuid(AdminFactors::AdminId))
                    // `totp` (passkeys come later).
                    .col(string_len(AdminFactors::Kind, 16))
                    .col(string_len(AdminFactors::Name, 64))
                    .col(binary(AdminFactors::SealedSecret))
                    .col(timestamp_with_time_zone(AdminFactors::CreatedAt))
                    .col(timestamp_with_time_zone_null(AdminFactors::ConfirmedAt))
                    .col(big_integer_null(AdminFactors::LastUsedStep))
                    .col(timestamp_with_time_zone_null(AdminFactors::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_admin_factors_admin")
                            .from(AdminFactors::Table, AdminFactors::AdminId)
                            .to(AdminUsers::Table, AdminUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_admin_factors_admin")
                    .table(AdminFactors::Table)
                    .col(AdminFactors::AdminId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminRecoveryCodes::Table)
                    .col(uuid(AdminRecoveryCodes::AdminId))
                    .col(string_len(AdminRecoveryCodes::CodeHash, 64))
                    .col(timestamp_with_time_zone(AdminRecoveryCodes::CreatedAt))
                    .col(timestamp_with_time_zone_null(AdminRecoveryCodes::UsedAt))
                    .primary_key(
                        Index::create()
                            .col(AdminRecoveryCodes::AdminId)
                            .col(AdminRecoveryCodes::CodeHash),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_admin_recovery_codes_admin")
                            .from(AdminRecoveryCodes::Table, AdminRecoveryCodes::AdminId)
                            .to(AdminUsers::Table, AdminUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AdminRecoveryCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AdminFactors::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AdminFactors {
    Table,
    Id,
    AdminId,
    Kind,
    Name,
    SealedSecret,
    CreatedAt,
    ConfirmedAt,
    LastUsedStep,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AdminRecoveryCodes {
    Table,
    AdminId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AdminUsers {
    Table,
    Id,
}
