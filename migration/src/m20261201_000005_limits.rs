//! One limiter for every limited operation: each event says when it stops counting (so cleanup
//! keeps a lockout's day-long window and drops an hour-old request), and the settings gain the
//! per-client limits on wrong passwords and on registrations, and the least password strength
//! score.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One change per statement: SQLite's ALTER TABLE takes one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(LimitEvents::Table)
                    .add_column(timestamp_with_time_zone_null(LimitEvents::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_limit_events_expires_at")
                    .table(LimitEvents::Table)
                    .col(LimitEvents::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .add_column(integer(Settings::MaxFailedSignInsPerIpPerHour).default(100))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .add_column(integer(Settings::MaxRegistrationsPerIpPerHour).default(30))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .add_column(integer(Settings::MinPasswordScore).default(1))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_limit_events_expires_at")
                    .table(LimitEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LimitEvents::Table)
                    .drop_column(LimitEvents::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        for column in [
            Settings::MaxFailedSignInsPerIpPerHour,
            Settings::MaxRegistrationsPerIpPerHour,
            Settings::MinPasswordScore,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Settings::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum LimitEvents {
    Table,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    MaxFailedSignInsPerIpPerHour,
    MaxRegistrationsPerIpPerHour,
    MinPasswordScore,
}
