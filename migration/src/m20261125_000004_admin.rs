//! The admin side: admin users (one role each), their access tokens, and the audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AdminUsers::Table)
                    .col(uuid(AdminUsers::Id).primary_key())
                    .col(string_len(AdminUsers::Username, 64))
                    .col(string_len_uniq(AdminUsers::UsernameKey, 64))
                    .col(string_len(AdminUsers::Role, 32))
                    .col(string_len(AdminUsers::PasswordHash, 255))
                    .col(integer(AdminUsers::FailedSignIns).default(0))
                    .col(timestamp_with_time_zone_null(AdminUsers::LockedUntil))
                    .col(timestamp_with_time_zone(AdminUsers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminAccessTokens::Table)
                    .col(uuid(AdminAccessTokens::Id).primary_key())
                    .col(uuid(AdminAccessTokens::AdminId))
                    .col(timestamp_with_time_zone(AdminAccessTokens::CreatedAt))
                    .col(timestamp_with_time_zone(AdminAccessTokens::ExpiresAt))
                    .col(string_len_null(AdminAccessTokens::ClientIp, 64))
                    .col(string_len_null(AdminAccessTokens::UserAgent, 1024))
                    .col(timestamp_with_time_zone_null(AdminAccessTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_admin_access_tokens_admin")
                            .from(AdminAccessTokens::Table, AdminAccessTokens::AdminId)
                            .to(AdminUsers::Table, AdminUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(uuid(AuditLog::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(uuid(AuditLog::ActorId))
                    .col(string_len(AuditLog::Actor, 64))
                    .col(string_len(AuditLog::Action, 64))
                    .col(uuid_null(AuditLog::CustomerId))
                    .col(string_len_null(AuditLog::ClientIp, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            AdminAccessTokens::Table.into_iden(),
            AdminUsers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AdminUsers {
    Table,
    Id,
    Username,
    UsernameKey,
    Role,
    PasswordHash,
    FailedSignIns,
    LockedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AdminAccessTokens {
    Table,
    Id,
    AdminId,
    CreatedAt,
    ExpiresAt,
    ClientIp,
    UserAgent,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    Actor,
    Action,
    CustomerId,
    ClientIp,
}
