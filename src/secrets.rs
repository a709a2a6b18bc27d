//! The JWT signing key: from `LATCHKEY_JWT_SECRET`, or for a development SQLite database a
//! random key created once and kept beside the database file (mode 0600), so tokens survive a
//! restart without any set-up.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use domain::token::MIN_SECRET_BYTES;
use persistence::Backend;

use crate::config::{Config, Environment};

pub fn jwt_secret(config: &Config, backend: Backend) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        let bytes = secret.expose().as_bytes().to_vec();
        anyhow::ensure!(
            bytes.len() >= MIN_SECRET_BYTES,
            "LATCHKEY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (try `openssl rand -base64 48`)"
        );
        return Ok(bytes);
    }
    anyhow::ensure!(
        config.env != Environment::Production,
        "LATCHKEY_JWT_SECRET is required when LATCHKEY_ENV=production"
    );
    anyhow::ensure!(
        backend == Backend::Sqlite,
        "LATCHKEY_JWT_SECRET is required with PostgreSQL (every replica must share it)"
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
        assert!(jwt_secret(&config, Backend::Postgres).is_err());
        let production = Config {
            env: Environment::Production,
            ..Config::default()
        };
        assert!(jwt_secret(&production, Backend::Sqlite).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        let config = Config {
            jwt_secret: Some(crate::config::Secret::new("short")),
            ..Config::default()
        };
        assert!(jwt_secret(&config, Backend::Sqlite).is_err());
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
