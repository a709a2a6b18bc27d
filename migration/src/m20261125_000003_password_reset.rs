//! Password reset: settings (one row, the defaults), reset tokens (hashes only), limit
//! events (what the request limits count), and the email outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .col(integer(Settings::Id).primary_key())
                    .col(integer(Settings::ResetLinkLifetimeHours))
                    .col(string_len(Settings::ResetRequestLimitMethod, 32))
                    .col(integer(Settings::MaxResetRequestsPerHour))
                    .col(integer(Settings::MinSecondsBetweenResetRequests))
                    .col(integer(Settings::MinPasswordLength))
                    .col(integer(Settings::RequiredCharacterClasses))
                    .col(boolean(Settings::AllowWhitespace))
                    .col(integer(Settings::LockoutFailures))
                    .col(integer(Settings::LockoutMinutes))
                    .col(integer(Settings::CustomerTokenLifetimeMinutes))
                    .col(integer(Settings::AdminTokenLifetimeMinutes))
                    .to_owned(),
            )
            .await?;
        // The defaults of the settings (docs/deploy.md, "Settings").
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Settings::Table)
                    .columns([
                        Settings::Id,
                        Settings::ResetLinkLifetimeHours,
                        Settings::ResetRequestLimitMethod,
                        Settings::MaxResetRequestsPerHour,
                        Settings::MinSecondsBetweenResetRequests,
                        Settings::MinPasswordLength,
                        Settings::RequiredCharacterClasses,
                        Settings::AllowWhitespace,
                        Settings::LockoutFailures,
                        Settings::LockoutMinutes,
                        Settings::CustomerTokenLifetimeMinutes,
                        Settings::AdminTokenLifetimeMinutes,
                    ])
                    .values_panic([
                        1.into(),
                        24.into(),
                        "BY_IP_AND_EMAIL".into(),
                        5.into(),
                        600.into(),
                        6.into(),
                        0.into(),
                        false.into(),
                        10.into(),
                        10.into(),
                        60.into(),
                        240.into(),
                    ])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PasswordResetTokens::Table)
                    .col(uuid(PasswordResetTokens::Id).primary_key())
                    .col(uuid(PasswordResetTokens::CustomerId))
                    // SHA-256 hex of the emailed token; the token itself is never stored here.
                    .col(string_len_uniq(PasswordResetTokens::TokenHash, 64))
                    .col(string_len(PasswordResetTokens::EmailKey, 254))
                    .col(timestamp_with_time_zone(PasswordResetTokens::CreatedAt))
                    .col(timestamp_with_time_zone(PasswordResetTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(PasswordResetTokens::UsedAt))
                    .col(timestamp_with_time_zone_null(
                        PasswordResetTokens::SupersededAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_password_reset_tokens_customer")
                            .from(PasswordResetTokens::Table, PasswordResetTokens::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_password_reset_tokens_customer")
                    .table(PasswordResetTokens::Table)
                    .col(PasswordResetTokens::CustomerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LimitEvents::Table)
                    .col(uuid(LimitEvents::Id).primary_key())
                    .col(string_len(LimitEvents::Key, 320))
                    .col(timestamp_with_time_zone(LimitEvents::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_limit_events_key_at")
                    .table(LimitEvents::Table)
                    .col(LimitEvents::Key)
                    .col(LimitEvents::At)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EmailOutbox::Table)
                    .col(uuid(EmailOutbox::Id).primary_key())
                    .col(string_len(EmailOutbox::Kind, 32))
                    .col(uuid_null(EmailOutbox::CustomerId))
                    .col(string_len(EmailOutbox::Recipient, 254))
                    .col(string_len(EmailOutbox::Locale, 8))
                    // The reset link (it carries the raw token) until the mail is sent.
                    .col(text_null(EmailOutbox::Link))
                    .col(timestamp_with_time_zone_null(EmailOutbox::LinkExpiresAt))
                    .col(string_len(EmailOutbox::Status, 16))
                    .col(integer(EmailOutbox::Attempts).default(0))
                    .col(timestamp_with_time_zone(EmailOutbox::NextAttemptAt))
                    .col(uuid_null(EmailOutbox::ClaimId))
                    .col(timestamp_with_time_zone_null(EmailOutbox::ClaimedUntil))
                    .col(text_null(EmailOutbox::LastError))
                    .col(timestamp_with_time_zone(EmailOutbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(EmailOutbox::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_email_outbox_due")
                    .table(EmailOutbox::Table)
                    .col(EmailOutbox::Status)
                    .col(EmailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmailOutbox::Table.into_iden(),
            LimitEvents::Table.into_iden(),
            PasswordResetTokens::Table.into_iden(),
            Settings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
}

#[derive(DeriveIden)]
pub enum Settings {
    Table,
    Id,
    ResetLinkLifetimeHours,
    ResetRequestLimitMethod,
    MaxResetRequestsPerHour,
    MinSecondsBetweenResetRequests,
    MinPasswordLength,
    RequiredCharacterClasses,
    AllowWhitespace,
    LockoutFailures,
    LockoutMinutes,
    CustomerTokenLifetimeMinutes,
    AdminTokenLifetimeMinutes,
}

#[derive(DeriveIden)]
pub enum PasswordResetTokens {
    Table,
    Id,
    CustomerId,
    TokenHash,
    EmailKey,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    SupersededAt,
}

#[derive(DeriveIden)]
pub enum LimitEvents {
    Table,
    Id,
    Key,
    At,
}

#[derive(DeriveIden)]
pub enum EmailOutbox {
    Table,
    Id,
    Kind,
    CustomerId,
    Recipient,
    Locale,
    Link,
    LinkExpiresAt,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimId,
    ClaimedUntil,
    LastError,
    CreatedAt,
    SentAt,
}
