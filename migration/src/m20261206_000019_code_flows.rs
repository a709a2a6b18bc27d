//! One-time codes bound to the client that asked for them. A request that starts a *flow*
//! answers the client an opaque flow id and mails a short code; the code works only together
//! with that flow id. `code_flows` keeps, per flow, the flow id's and the code's SHA-256 (never
//! either itself), the attempts made and the lifetime. The mail worker writes a flow for every
//! request that asked for one, known address or not (an unknown address's flow has no account
//! and can never succeed), so a guess answers alike for both. (Requests superseded by a newer
//! one for the same address before they were resolved get no flow, known or not.)

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CodeFlows::Table)
                    .col(uuid(CodeFlows::Id).primary_key())
                    .col(string_len_uniq(CodeFlows::FlowHash, 64))
                    // `reset` (a reset token's second way in) or `sign_in`.
                    .col(string_len(CodeFlows::Purpose, 16))
                    .col(string_len(CodeFlows::CodeHash, 64))
                    // The address asked for (normalised), known or not: wrong codes are
                    // counted per address over all its flows.
                    .col(string_len(CodeFlows::EmailKey, 254))
                    .col(uuid_null(CodeFlows::CustomerId))
                    // A reset flow lives only as long as its link's token.
                    .col(uuid_null(CodeFlows::ResetTokenId))
                    .col(integer(CodeFlows::Attempts).default(0))
                    .col(timestamp_with_time_zone(CodeFlows::ExpiresAt))
                    .col(timestamp_with_time_zone(CodeFlows::CreatedAt))
                    // Used, or superseded by a newer request.
                    .col(timestamp_with_time_zone_null(CodeFlows::EndedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_code_flows_customer")
                            .from(CodeFlows::Table, CodeFlows::CustomerId)
                            .to(Customers::Table, Customers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_code_flows_reset_token")
                            .from(CodeFlows::Table, CodeFlows::ResetTokenId)
                            .to(PasswordResetTokens::Table, PasswordResetTokens::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_code_flows_customer", CodeFlows::CustomerId),
            ("idx_code_flows_reset_token", CodeFlows::ResetTokenId),
            ("idx_code_flows_expires_at", CodeFlows::ExpiresAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(CodeFlows::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        // The request row carries the flow until the worker resolves it; the raw code, like
        // the link, only until then (then in the outbox until sent, then scrubbed).
        let request_columns = [
            // `reset`, or `sign_in` (a sign-in code: no reset token, no link).
            string_len(ResetRequests::Purpose, 16)
                .default("reset")
                .to_owned(),
            string_len_null(ResetRequests::FlowHash, 64),
            string_len_null(ResetRequests::CodeHash, 64),
            string_len_null(ResetRequests::Code, 16),
            timestamp_with_time_zone_null(ResetRequests::CodeExpiresAt),
        ];
        for column in request_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(ResetRequests::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            string_len_null(EmailOutbox::Code, 16),
            timestamp_with_time_zone_null(EmailOutbox::CodeExpiresAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EmailOutbox::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        let settings_columns = [
            boolean(Settings::ResetByLink).default(true).to_owned(),
            boolean(Settings::ResetByCode).default(true).to_owned(),
            integer(Settings::ResetCodeLifetimeMinutes)
                .default(15)
                .to_owned(),
            boolean(Settings::SignInByCode).default(false).to_owned(),
        ];
        for column in settings_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Settings::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Settings::SignInByCode,
            Settings::ResetCodeLifetimeMinutes,
            Settings::ResetByCode,
            Settings::ResetByLink,
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
        for column in [EmailOutbox::CodeExpiresAt, EmailOutbox::Code] {
            manager
                .alter_table(
                    Table::alter()
                        .table(EmailOutbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            ResetRequests::CodeExpiresAt,
            ResetRequests::Code,
            ResetRequests::CodeHash,
            ResetRequests::FlowHash,
            ResetRequests::Purpose,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ResetRequests::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(CodeFlows::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CodeFlows {
    Table,
    Id,
    FlowHash,
    Purpose,
    CodeHash,
    EmailKey,
    CustomerId,
    ResetTokenId,
    Attempts,
    ExpiresAt,
    CreatedAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum ResetRequests {
    Table,
    Purpose,
    FlowHash,
    CodeHash,
    Code,
    CodeExpiresAt,
}

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    Code,
    CodeExpiresAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    ResetByLink,
    ResetByCode,
    ResetCodeLifetimeMinutes,
    SignInByCode,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PasswordResetTokens {
    Table,
    Id,
}
