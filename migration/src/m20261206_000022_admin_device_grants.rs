//! "Remember this browser" for admins. `admin_device_grants` holds each grant a browser got
//! after a second factor: the SHA-256 of its random secret (the browser keeps the secret), when
//! it ends, and when it was revoked; a sign-in with the right password and a live grant of that
//! admin skips the factor. `settings.remember_browser_days` is how long a grant lives (0: the
//! store offers none, the default). `admin_spent_challenges` makes each sign-in challenge
//! (sealed, held by the client) good for one sign-in: the SHA-256 of each one that signed
//! someone in, until it would have expired anyway.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AdminDeviceGrants::Table)
                    .col(uuid(AdminDeviceGrants::Id).primary_key())
                    .col(uuid(AdminDeviceGrants::AdminId))
                    .col(string_len(AdminDeviceGrants::SecretHash, 64).unique_key())
                    .col(timestamp_with_time_zone(AdminDeviceGrants::CreatedAt))
                    .col(timestamp_with_time_zone(AdminDeviceGrants::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AdminDeviceGrants::LastUsedAt))
                    .col(timestamp_with_time_zone_null(AdminDeviceGrants::RevokedAt))
                    .col(string_len_null(AdminDeviceGrants::UserAgent, 256))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_admin_device_grants_admin")
                            .from(AdminDeviceGrants::Table, AdminDeviceGrants::AdminId)
                            .to(AdminUsers::Table, AdminUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_admin_device_grants_admin")
                    .table(AdminDeviceGrants::Table)
                    .col(AdminDeviceGrants::AdminId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminSpentChallenges::Table)
                    .col(string_len(AdminSpentChallenges::ChallengeHash, 64).primary_key())
                    .col(timestamp_with_time_zone(AdminSpentChallenges::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .add_column(integer(Settings::RememberBrowserDays).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .drop_column(Settings::RememberBrowserDays)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AdminSpentChallenges::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AdminDeviceGrants::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AdminDeviceGrants {
    Table,
    Id,
    AdminId,
    SecretHash,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    UserAgent,
}

#[derive(DeriveIden)]
enum AdminSpentChallenges {
    Table,
    ChallengeHash,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AdminUsers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    RememberBrowserDays,
}
