//! Signing keys and service credentials (tokens other services can verify).
//!
//! - `signing_keys`: Ed25519 key pairs; the private half sealed (XChaCha20-Poly1305 under a key
//!   from the environment), forgotten when the key is retired. `generation` is unique, so two
//!   replicas making the first key at the same moment cannot both succeed.
//! - `service_credentials`: the services allowed to call `/introspect`; only a SHA-256 of each
//!   secret is kept (the secrets are 256 random bits, so a fast hash is enough).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(string_len(SigningKeys::Kid, 64).primary_key())
                    .col(big_integer(SigningKeys::Generation).unique_key())
                    .col(string_len(SigningKeys::Algorithm, 16))
                    .col(binary(SigningKeys::PublicKey))
                    .col(binary_null(SigningKeys::SealedPrivateKey))
                    .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                    .col(timestamp_with_time_zone(SigningKeys::SignsFrom))
                    .col(timestamp_with_time_zone_null(SigningKeys::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServiceCredentials::Table)
                    .col(uuid(ServiceCredentials::Id).primary_key())
                    .col(string_len(ServiceCredentials::Name, 64).unique_key())
                    .col(string_len(ServiceCredentials::SecretHash, 64).unique_key())
                    .col(timestamp_with_time_zone(ServiceCredentials::CreatedAt))
                    .col(timestamp_with_time_zone_null(ServiceCredentials::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ServiceCredentials::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Generation,
    Algorithm,
    PublicKey,
    SealedPrivateKey,
    CreatedAt,
    SignsFrom,
    RetiredAt,
}

#[derive(DeriveIden)]
enum ServiceCredentials {
    Table,
    Id,
    Name,
    SecretHash,
    CreatedAt,
    RevokedAt,
}
