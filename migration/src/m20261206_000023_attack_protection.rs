//! Attack protection settings: which addresses make one network for the customers' lockout
//! (`network_v4_prefix`, `network_v6_prefix`), and when a name or a network under attack asks
//! for a solved proof-of-work challenge (`challenge_after_name_failures`,
//! `challenge_after_network_failures`, 0 = never; `challenge_max_number`, the work); what a
//! right password that is on the breached list does at sign-in
//! (`breached_password_sign_in`: `FLAG` signs in and asks for a new password, `REFUSE` mails a
//! reset link instead), and since when a customer has been asked
//! (`customers.password_change_required_at`, cleared by any new password).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for (column, default) in [
            (Settings::NetworkV4Prefix, 24),
            (Settings::NetworkV6Prefix, 48),
            (Settings::ChallengeAfterNameFailures, 10),
            (Settings::ChallengeAfterNetworkFailures, 20),
            (Settings::ChallengeMaxNumber, 100_000),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Settings::Table)
                        .add_column(integer(column).default(default))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Settings::Table)
                    .add_column(string(Settings::BreachedPasswordSignIn).default("FLAG"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .add_column(timestamp_with_time_zone_null(
                        Customers::PasswordChangeRequiredAt,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Customers::Table)
                    .drop_column(Customers::PasswordChangeRequiredAt)
                    .to_owned(),
            )
            .await?;
        for column in [
            Settings::BreachedPasswordSignIn,
            Settings::NetworkV4Prefix,
            Settings::NetworkV6Prefix,
            Settings::ChallengeAfterNameFailures,
            Settings::ChallengeAfterNetworkFailures,
            Settings::ChallengeMaxNumber,
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

#[derive(DeriveIden, Clone, Copy)]
enum Settings {
    Table,
    NetworkV4Prefix,
    NetworkV6Prefix,
    ChallengeAfterNameFailures,
    ChallengeAfterNetworkFailures,
    ChallengeMaxNumber,
    BreachedPasswordSignIn,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    PasswordChangeRequiredAt,
}
