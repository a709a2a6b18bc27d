//! The server's secrets: the legacy HS256 key (`LATCHKEY_JWT_SECRET`) and the secret that seals
//! the signing keys' private halves (`LATCHKEY_KEY_ENCRYPTION_KEY`, else derived from the
//! former). For a development SQLite database a random secret is created once and kept beside
//! the database file (mode 0600), so tokens survive a restart without any set-up.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use domain::token::MIN_SECRET_BYTES;
use persistence::Backend;

use crate::config::{Config, Environment, TokenSigning};

/// What the key ring is built from.
pub struct ServerSecrets {
    /// The HS256 secret, when there is one: what signs in `hs256` mode, and what verifies the
    /// tokens issued before the first asymmetric key.
    pub legacy: Option<Vec<u8>>,
    /// Seals the signing keys.
    pub sealing: Vec<u8>,
}

impl std::fmt::Debug for ServerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecrets(<secret>)")
    }
}

pub fn server_secrets(config: &Config, backend: Backend) -> anyhow::Result<ServerSecrets> {
    let kek = match &config.key_encryption_key {
        Some(k) => {
            let bytes = k.expose().as_bytes().to_vec();
            anyhow::ensure!(
                bytes.len() >= MIN_SECRET_BYTES,
                "LATCHKEY_KEY_ENCRYPTION_KEY must be at least {MIN_SECRET_BYTES} bytes (try `openssl rand -base64 48`)"
            );
            Some(bytes)
        }
        None => None,
    };
    let legacy = match (&config.jwt_secret, config.token_signing, &kek) {
        (Some(_), _, _) | (None, TokenSigning::Hs256, _) | (None, _, None) => {
            Some(jwt_secret(config, backend)?)
        }
        (None, TokenSigning::Eddsa, Some(_)) => None,
    };
    let sealing = match (kek, &legacy) {
        (Some(kek), _) => kek,
        (None, Some(legacy)) => legacy.clone(),
        (None, None) => anyhow::bail!("LATCHKEY_KEY_ENCRYPTION_KEY is required"),
    };
    Ok(ServerSecrets { legacy, sealing })
}

fn jwt_secret(config: &Config, backend: Backend) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        let bytes = secret.expose().as_bytes().to_vec();
        anyhow::ensure!(
            bytes.len() >= MIN_SECRET_BYTES,
            "LATCHKEY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (try `openssl rand -base64 48`)"
        );
        return Ok(bytes);
    }
    let needed = match config.token_signing {
        TokenSigning::Hs256 => "LATCHKEY_JWT_SECRET",
        TokenSigning::Eddsa => "LATCHKEY_KEY_ENCRYPTION_KEY (or LATCHKEY_JWT_SECRET)",
    };
    anyhow::ensure!(
        config.env != Environment::Production,
        "{needed} is required when LATCHKEY_ENV=production"
    );
    anyhow::ensure!(
        backend == Backend::Sqlite,
        "{needed} is required with PostgreSQL (every replica must share it)"
    );
    match sqlite_key_path(&config.database_url) {
        Some(path) => load_or_create(&path),
        None => random_key(),
    }
}

/// `sqlite://data/latchkey.db?mode=rwc` → `data/latchkey.db.jwt-secret`; `None` in memory.
fn sqlite_key_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(format!("{path}.jwt-secret")))
}

fn random_key() -> anyhow::Result<Vec<u8>> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(key).into_bytes())
}

fn load_or_create(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let key = existing.trim().as_bytes().to_vec();
        anyhow::ensure!(
            key.len() >= MIN_SECRET_BYTES,
            "{} is too short; delete it to have a new key made",
            path.display()
        );
        return Ok(key);
    }
    let key = random_key()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&key)
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a JWT signing key for this SQLite database");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_sit_beside_the_database() {
        assert_eq!(
            sqlite_key_path("sqlite://data/latchkey.db?mode=rwc"),
            Some(PathBuf::from("data/latchkey.db.jwt-secret"))
        );
        assert_eq!(sqlite_key_path("sqlite::memory:"), None);
    }

    #[test]
    fn postgres_and_production_refuse_to_start_without_a_secret() {
        let config = Config::default();
        assert!(server_secrets(&config, Backend::Postgres).is_err());
        let production = Config {
            env: Environment::Production,
            ..Config::default()
        };
        assert!(server_secrets(&production, Backend::Sqlite).is_err());
        // A key-encryption key alone is enough for asymmetric keys, not for HS256.
        let kek = Config {
            key_encryption_key: Some(crate::config::Secret::new("k".repeat(40))),
            ..Config::default()
        };
        let secrets = server_secrets(&kek, Backend::Postgres).unwrap();
        assert!(secrets.legacy.is_none());
        let hs256 = Config {
            token_signing: TokenSigning::Hs256,
            ..kek
        };
        assert!(server_secrets(&hs256, Backend::Postgres).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        let config = Config {
            jwt_secret: Some(crate::config::Secret::new("short")),
            ..Config::default()
        };
        assert!(server_secrets(&config, Backend::Sqlite).is_err());
        let config = Config {
            key_encryption_key: Some(crate::config::Secret::new("short")),
            ..Config::default()
        };
        assert!(server_secrets(&config, Backend::Sqlite).is_err());
    }

    #[test]
    fn a_created_key_is_reused_and_private() {
        let dir = std::env::temp_dir().join(format!("latchkey-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.jwt-secret");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
