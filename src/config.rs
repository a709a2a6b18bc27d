//! Configuration: defaults, then an optional `latchkey.toml`, then environment variables with
//! the names of SPEC "Running it" (`DATABASE_URL`, `LATCHKEY_*`).

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A secret from configuration; its `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// `LATCHKEY_DATABASE_SCHEMA`: PostgreSQL schema (search path) to keep the tables in.
    pub database_schema: Option<String>,
    /// `LATCHKEY_DATABASE_MAX_CONNECTIONS`.
    pub database_max_connections: u32,
    /// `LATCHKEY_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS`: PostgreSQL ends a session of
    /// the pool that sits inside a transaction, waiting for the server, longer than this
    /// (`idle_in_transaction_session_timeout`). 0 leaves the database's own setting.
    pub database_idle_in_transaction_timeout_seconds: u64,
    /// `LATCHKEY_LISTEN`.
    pub listen: SocketAddr,
    /// `LATCHKEY_METRICS_LISTEN`: where Prometheus metrics are served (`host:port`), off the
    /// API port, or `off`. Loopback by default: per-request counters are for operators, and on
    /// a public port they would tell an attacker which sign-ins and resets found an account.
    pub metrics_listen: String,
    /// `LATCHKEY_PUBLIC_URL`: this server's public base URL. Default `http://<listen>`.
    pub public_url: Option<String>,
    /// `LATCHKEY_STOREFRONT_RESET_URL`: reset link template with `{token}`.
    pub storefront_reset_url: Option<String>,
    /// `LATCHKEY_RESET_URL_ALLOWLIST`: comma-separated prefixes a `redirectUrl` may start with.
    #[serde(deserialize_with = "list")]
    pub reset_url_allowlist: Vec<String>,
    /// `LATCHKEY_SMTP_URL`: unset means mail is written as `.eml` files to `mail_dir`.
    pub smtp_url: Option<Secret>,
    /// `LATCHKEY_SMTP_TIMEOUT_SECONDS`: a send (connect to accepted) that takes longer counts
    /// as a temporary failure (retried with backoff).
    pub smtp_timeout_seconds: u64,
    /// `LATCHKEY_MAIL_LEASE_SECONDS`: how long a replica's claim on a message lasts; if the
    /// replica dies mid-send, another sends the message after this (keep it well above the
    /// SMTP timeout).
    pub mail_lease_seconds: u64,
    /// `LATCHKEY_MAIL_DIR`.
    pub mail_dir: PathBuf,
    /// `LATCHKEY_MAIL_FROM`.
    pub mail_from: String,
    /// `LATCHKEY_CORS_ORIGINS`: comma-separated origins allowed to call `/graphql`.
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    /// `LATCHKEY_TRUSTED_PROXIES`: comma-separated addresses/CIDRs whose `X-Forwarded-For` is
    /// believed.
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    /// `LATCHKEY_ENV`: `development` or `production`.
    pub env: Environment,
    /// `LATCHKEY_INTROSPECTION`: overrides the environment's default.
    pub introspection: Option<bool>,
    /// `LATCHKEY_GRAPHIQL`: overrides the environment's default (on in development).
    pub graphiql: Option<bool>,
    /// `LATCHKEY_JWT_SECRET`: at least 32 bytes. Required for PostgreSQL and in production.
    pub jwt_secret: Option<Secret>,
    /// `LATCHKEY_MAX_BODY_BYTES`: requests with larger bodies get 413 before parsing.
    pub max_body_bytes: usize,
    /// `LATCHKEY_REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout_seconds: u64,
    /// `LATCHKEY_HASH_CONCURRENCY`: argon2 hashes at once (19 MiB each). Default: core count.
    pub hash_concurrency: Option<usize>,
    /// `LATCHKEY_HASH_QUEUE`: requests that may wait for a hashing slot before RATE_LIMITED.
    pub hash_queue: usize,
    /// `LATCHKEY_MAX_OPERATIONS`: GraphQL operations running at once, including those whose
    /// clients hung up (they run to completion); past it requests get 503 RATE_LIMITED.
    pub max_operations: usize,
    /// `LATCHKEY_LOG_FORMAT`: `text` or `json`. The filter comes from `RUST_LOG`.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://latchkey.db?mode=rwc".into(),
            database_schema: None,
            database_max_connections: 8,
            database_idle_in_transaction_timeout_seconds: 10,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: "127.0.0.1:9464".into(),
            public_url: None,
            storefront_reset_url: None,
            reset_url_allowlist: Vec::new(),
            smtp_url: None,
            smtp_timeout_seconds: 10,
            mail_lease_seconds: 60,
            mail_dir: PathBuf::from("./mail"),
            mail_from: "Store <no-reply@localhost>".into(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            env: Environment::Development,
            introspection: None,
            graphiql: None,
            jwt_secret: None,
            max_body_bytes: 64 * 1024,
            request_timeout_seconds: 15,
            hash_concurrency: None,
            hash_queue: 256,
            max_operations: 4096,
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Defaults < `latchkey.toml` (or `LATCHKEY_CONFIG`) < environment.
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let file = std::env::var("LATCHKEY_CONFIG").unwrap_or_else(|_| "latchkey.toml".into());
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("LATCHKEY_").ignore(&["CONFIG", "ADMIN_PASSWORD"]))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .extract()
            .map_err(Box::new)
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection
            .unwrap_or(self.env == Environment::Development)
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql
            .unwrap_or(self.env == Environment::Development)
    }

    /// This server's public base URL, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// Accepts `"a, b"` (environment variables) as well as `["a", "b"]` (TOML).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests {
    use super::*;

    #[test]
    fn environment_variables_use_the_spec_names_and_override_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "latchkey.toml",
                r#"listen = "0.0.0.0:9000"
                   cors_origins = ["https://admin.example"]
                   env = "production""#,
            )?;
            jail.set_env("DATABASE_URL", "postgres://db/latchkey");
            jail.set_env("LATCHKEY_LISTEN", "127.0.0.1:7000");
            jail.set_env("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1");
            let c = Config::load().map_err(|e| *e)?;
            assert_eq!(c.database_url, "postgres://db/latchkey");
            assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
            assert_eq!(c.cors_origins, vec!["https://admin.example"]);
            assert_eq!(c.trusted_proxies, vec!["10.0.0.0/8", "192.168.1.1"]);
            assert_eq!(c.env, Environment::Production);
            assert!(!c.introspection_enabled());
            assert!(!c.graphiql_enabled());
            Ok(())
        });
    }

    #[test]
    fn defaults_match_the_spec() {
        figment::Jail::expect_with(|_| {
            let c = Config::load().map_err(|e| *e)?;
            assert_eq!(c.database_url, "sqlite://latchkey.db?mode=rwc");
            assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.public_base_url(), "http://127.0.0.1:8080");
            assert_eq!(c.mail_dir, PathBuf::from("./mail"));
            assert_eq!(c.mail_from, "Store <no-reply@localhost>");
            assert!(c.introspection_enabled());
            Ok(())
        });
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Config {
            jwt_secret: Some(Secret::new("super-secret-signing-key-0123456789")),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
