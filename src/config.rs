//! Configuration: defaults, then an optional `latchkey.toml`, then environment variables with
//! the names docs/deploy.md's configuration table lists (`DATABASE_URL`, `LATCHKEY_*`).

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

/// How access tokens are signed (`LATCHKEY_TOKEN_SIGNING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenSigning {
    /// Ed25519 keys with a `kid`, published as a JWKS.
    #[default]
    Eddsa,
    /// Legacy: one shared HS256 secret.
    Hs256,
}

/// Whether admins must sign in with a second factor (`LATCHKEY_ADMIN_2FA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdminTwoFactor {
    /// Every admin: an admin without a factor enrols one at their next sign-in.
    #[default]
    Required,
    /// An admin without a factor signs in with the password alone (development only).
    Optional,
}

/// What sits between Latchkey and PostgreSQL (`LATCHKEY_DATABASE_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// Each pooled connection is a PostgreSQL session of its own: a direct connection, or
    /// PgBouncer in session mode.
    #[default]
    Session,
    /// PgBouncer (1.21 or later, `max_prepared_statements` above 0) in transaction mode:
    /// consecutive transactions of one connection may run on different server sessions, so
    /// Latchkey keeps no session state (no startup options, no `search_path` of its own).
    Transaction,
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
    /// `LATCHKEY_DATABASE_POOLER`: `session` (direct, or PgBouncer in session mode) or
    /// `transaction` (PgBouncer in transaction mode).
    pub database_pooler: Pooler,
    /// `LATCHKEY_DATABASE_MAX_CONNECTIONS`.
    pub database_max_connections: u32,
    /// `LATCHKEY_DATABASE_DIRECT_URL`: a PostgreSQL URL that reaches the database without a
    /// transaction-mode pooler, for the session log's `LISTEN` and reads (two connections per
    /// server). Default: `DATABASE_URL`, unless `LATCHKEY_DATABASE_POOLER=transaction`; then
    /// the session cache is off until it is set.
    pub database_direct_url: Option<Secret>,
    /// `LATCHKEY_SESSION_CACHE_SIZE`: how many signed-in customers and admins (each with their
    /// live sessions) a server keeps in memory to answer the signed-in check without the
    /// database; 0 turns the cache off.
    pub session_cache_size: u64,
    /// `LATCHKEY_SESSION_CACHE_LEASE_MS`: how long one read of the session log lets a server
    /// trust its cache, and so the longest a revoking request waits for a server that stopped
    /// answering (the log is read four times a lease). At least 100.
    pub session_cache_lease_ms: u64,
    /// `LATCHKEY_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS`: PostgreSQL ends a session of
    /// the pool that sits inside a transaction, waiting for the server, longer than this
    /// (`idle_in_transaction_session_timeout`). 0 leaves the database's own setting. Not sent
    /// with `LATCHKEY_DATABASE_POOLER=transaction` (PgBouncer refuses startup options): set
    /// PgBouncer's `idle_transaction_timeout` instead.
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
    /// `LATCHKEY_BULK_MAIL_PER_SECOND`: the most bulk-job messages this replica sends per
    /// second (SMTP providers throttle); 0 means no cap. The interactive lane is never capped.
    pub bulk_mail_per_second: u32,
    /// `LATCHKEY_BULK_CUSTOMERS_PER_SECOND`: the most customers this replica works per second
    /// in bulk jobs (to spare the database in busy hours); 0 means no cap.
    pub bulk_customers_per_second: u32,
    /// `LATCHKEY_EMAIL_CHANGE_REVERT_HOURS`: how long the old address's "this wasn't me" link
    /// still works once an email change is confirmed (it works 7 days from the request while
    /// the change is pending). Using it then freezes the account until an admin recovers it.
    pub email_change_revert_hours: u32,
    /// `LATCHKEY_MAX_SESSIONS`: live sessions (signed-in devices) per customer and per admin;
    /// a sign-in beyond it signs the oldest out.
    pub max_sessions: u32,
    /// `LATCHKEY_MAX_SIGN_INS_PER_HOUR`: successful sign-ins per customer and per admin per
    /// hour; one beyond it answers RATE_LIMITED.
    pub max_sign_ins_per_hour: u32,
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
    /// `LATCHKEY_CAPTCHA_VERIFY_URL`: a third-party CAPTCHA's verification endpoint
    /// (Turnstile's, hCaptcha's or reCAPTCHA's `siteverify`). Set, a `challengeSolution` that
    /// is not a solved proof-of-work challenge is sent there as the CAPTCHA's token, with
    /// `LATCHKEY_CAPTCHA_SECRET` and the client's address; `{"success": true}` lets the request
    /// through. For stores whose storefront already shows such a CAPTCHA.
    pub captcha_verify_url: Option<String>,
    /// `LATCHKEY_CAPTCHA_SECRET`: the site's secret key for `LATCHKEY_CAPTCHA_VERIFY_URL`.
    pub captcha_secret: Option<Secret>,
    /// `LATCHKEY_EVENTS_TIMEOUT_SECONDS`: the whole exchange with a security-event receiver
    /// (connect, send, its answer); a slower one counts as a failed attempt.
    pub events_timeout_seconds: u64,
    /// `LATCHKEY_EVENTS_MAX_ATTEMPTS`: attempts before an event is dead-lettered (150, about a
    /// day with retries capped at ten minutes apart).
    pub events_max_attempts: i32,
    /// `LATCHKEY_EVENTS_POLL_MS`: how often an idle event worker looks for events to send.
    pub events_poll_ms: u64,
    /// `LATCHKEY_EVENTS_ALLOW_INTERNAL`: receivers may be on loopback, private or link-local
    /// addresses, and on plain `http://`. Default: yes in development, no in production.
    pub events_allow_internal: Option<bool>,
    /// `LATCHKEY_EVENTS_ALLOWED_NETWORKS`: comma-separated internal networks (CIDRs) receivers
    /// may be on even in production (the store's own services).
    #[serde(deserialize_with = "list")]
    pub events_allowed_networks: Vec<String>,
    /// `LATCHKEY_ENV`: `development` or `production`.
    pub env: Environment,
    /// `LATCHKEY_INTROSPECTION`: overrides the environment's default.
    pub introspection: Option<bool>,
    /// `LATCHKEY_GRAPHIQL`: overrides the environment's default (on in development).
    pub graphiql: Option<bool>,
    /// `LATCHKEY_JWT_SECRET`: at least 32 bytes. Required for PostgreSQL and in production.
    pub jwt_secret: Option<Secret>,
    /// `LATCHKEY_TOKEN_SIGNING`: `eddsa` (Ed25519 keys from the database, published at
    /// `/.well-known/jwks.json`) or `hs256` (legacy: every token signed with
    /// `LATCHKEY_JWT_SECRET`, which then is also what verifies them).
    pub token_signing: TokenSigning,
    /// `LATCHKEY_ADMIN_2FA`: `required` (every admin signs in with a second factor; one
    /// without enrols at the next sign-in) or `optional` (development only: refused in
    /// production).
    pub admin_2fa: AdminTwoFactor,
    /// `LATCHKEY_KEY_ENCRYPTION_KEY`: at least 32 bytes; seals the signing keys' private
    /// halves in the database. Unset: derived from `LATCHKEY_JWT_SECRET` (or the SQLite key
    /// file beside the database).
    pub key_encryption_key: Option<Secret>,
    /// `LATCHKEY_JWKS_MAX_AGE_SECONDS`: how long other services may cache the JWKS
    /// (`Cache-Control: max-age`). A rotated key signs only after this and two key refreshes.
    pub jwks_max_age_seconds: u64,
    /// `LATCHKEY_KEY_REFRESH_SECONDS`: how often a replica reloads the signing keys (a
    /// rotation or retirement reaches every replica within this).
    pub key_refresh_seconds: u64,
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
    /// `LATCHKEY_HEADER_READ_TIMEOUT_SECONDS`: a request's head must arrive whole within it.
    pub header_read_timeout_seconds: u64,
    /// `LATCHKEY_IDLE_TIMEOUT_SECONDS`: a connection with no byte moving either way for this
    /// long is closed. Keep it above the idle timeout of the load balancer in front.
    pub idle_timeout_seconds: u64,
    /// `LATCHKEY_MAX_CONNECTIONS`: open client connections; past it the server stops
    /// accepting until one closes.
    pub max_connections: usize,
    /// `LATCHKEY_LOG_FORMAT`: `text` or `json`. The filter comes from `RUST_LOG`.
    pub log_format: LogFormat,
    /// `LATCHKEY_ALLOW_INSECURE_URLS`: lets production start with `http://` public or reset
    /// URLs (reset links then travel unencrypted). For staging only.
    pub allow_insecure_urls: bool,
    /// `LATCHKEY_ALLOW_INSECURE_SMTP`: lets production send mail over SMTP without TLS (links
    /// readable on the wire). For staging only.
    pub allow_insecure_smtp: bool,
    /// `LATCHKEY_ALLOW_INSECURE_MAIL_DIR`: lets production write mail to `LATCHKEY_MAIL_DIR`
    /// (live reset links on disk). For staging only.
    pub allow_insecure_mail_dir: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://latchkey.db?mode=rwc".into(),
            database_schema: None,
            database_pooler: Pooler::Session,
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
            bulk_mail_per_second: 0,
            bulk_customers_per_second: 0,
            email_change_revert_hours: 48,
            max_sessions: domain::sign_in::DEFAULT_MAX_SESSIONS,
            max_sign_ins_per_hour: domain::sign_in::DEFAULT_MAX_SIGN_INS_PER_HOUR,
            mail_dir: PathBuf::from("./mail"),
            mail_from: "Store <no-reply@localhost>".into(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            captcha_verify_url: None,
            captcha_secret: None,
            events_timeout_seconds: 10,
            events_max_attempts: 150,
            events_poll_ms: 100,
            database_direct_url: None,
            session_cache_size: 100_000,
            session_cache_lease_ms: 2_000,
            events_allow_internal: None,
            events_allowed_networks: Vec::new(),
            env: Environment::Development,
            introspection: None,
            graphiql: None,
            jwt_secret: None,
            token_signing: TokenSigning::Eddsa,
            admin_2fa: AdminTwoFactor::Required,
            key_encryption_key: None,
            jwks_max_age_seconds: 300,
            key_refresh_seconds: 30,
            max_body_bytes: 64 * 1024,
            request_timeout_seconds: 15,
            hash_concurrency: None,
            hash_queue: 256,
            max_operations: 4096,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 75,
            max_connections: 8192,
            log_format: LogFormat::Text,
            allow_insecure_urls: false,
            allow_insecure_smtp: false,
            allow_insecure_mail_dir: false,
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

    /// Why production must not start with this configuration: each entry names the variable
    /// and its override. Empty outside production.
    pub fn production_refusals(&self) -> Vec<String> {
        if self.env != Environment::Production {
            return Vec::new();
        }
        let mut refusals = Vec::new();
        if self.admin_2fa == AdminTwoFactor::Optional {
            refusals.push(
                "LATCHKEY_ADMIN_2FA=optional lets an admin sign in with a password alone; it is \
                 for development"
                    .to_owned(),
            );
        }
        let plain_http = |url: &str| !url.trim().to_ascii_lowercase().starts_with("https://");
        if !self.allow_insecure_urls {
            // The public URL carries reset links unless a storefront URL does.
            let public = self.public_base_url();
            let carries_links = self.public_url.is_some() || self.storefront_reset_url.is_none();
            if carries_links && plain_http(&public) {
                refusals.push(format!(
                    "LATCHKEY_PUBLIC_URL must be an https:// URL in production (it is {public}{}); \
                     set LATCHKEY_ALLOW_INSECURE_URLS=true to allow it on staging",
                    if self.public_url.is_none() {
                        ", the default"
                    } else {
                        ""
                    }
                ));
            }
            if let Some(reset) = self
                .storefront_reset_url
                .as_deref()
                .filter(|u| plain_http(u))
            {
                refusals.push(format!(
                    "LATCHKEY_STOREFRONT_RESET_URL must be an https:// URL in production (it is {reset}); \
                     set LATCHKEY_ALLOW_INSECURE_URLS=true to allow it on staging"
                ));
            }
            if let Some(url) = self.captcha_verify_url.as_deref().filter(|u| plain_http(u)) {
                refusals.push(format!(
                    "LATCHKEY_CAPTCHA_VERIFY_URL must be an https:// URL in production (it is {url}); \
                     set LATCHKEY_ALLOW_INSECURE_URLS=true to allow it on staging"
                ));
            }
            for prefix in self.reset_url_allowlist.iter().filter(|u| plain_http(u)) {
                refusals.push(format!(
                    "LATCHKEY_RESET_URL_ALLOWLIST may hold only https:// prefixes in production (not {prefix}); \
                     set LATCHKEY_ALLOW_INSECURE_URLS=true to allow it on staging"
                ));
            }
        }
        match &self.smtp_url {
            None if !self.allow_insecure_mail_dir => refusals.push(
                "LATCHKEY_SMTP_URL is not set, so mail (with live reset links) would be written to \
                 LATCHKEY_MAIL_DIR; set an smtps:// or smtp://…?tls=required URL, or \
                 LATCHKEY_ALLOW_INSECURE_MAIL_DIR=true on staging"
                    .to_owned(),
            ),
            Some(url) if !self.allow_insecure_smtp && !smtp_uses_tls(url.expose()) => {
                refusals.push(
                    "LATCHKEY_SMTP_URL must use TLS in production (smtps://, or smtp:// with \
                     ?tls=required); set LATCHKEY_ALLOW_INSECURE_SMTP=true to allow plain SMTP on staging"
                        .to_owned(),
                );
            }
            _ => {}
        }
        refusals
    }

    /// Where security events may be sent: anywhere in development; in production `https://`
    /// and public addresses, and the operator's networks.
    pub fn event_endpoints(&self) -> anyhow::Result<domain::events::EndpointPolicy> {
        let networks = self
            .events_allowed_networks
            .iter()
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                domain::events::Network::parse(n).ok_or_else(|| {
                    anyhow::anyhow!("LATCHKEY_EVENTS_ALLOWED_NETWORKS: {n:?} is not a network")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let open = self
            .events_allow_internal
            .unwrap_or(self.env != Environment::Production);
        Ok(if open {
            domain::events::EndpointPolicy::open()
        } else {
            domain::events::EndpointPolicy::strict(networks)
        })
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

/// Implicit TLS (`smtps://`) or STARTTLS that must succeed (`tls=required`); opportunistic
/// STARTTLS can be stripped by anyone on the path. Read exactly as lettre reads the URL (its
/// scheme, then the *first* `tls` query pair, case-sensitive), so what passes here is what
/// the transport does.
fn smtp_uses_tls(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url.trim()) else {
        return false;
    };
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    matches!(
        (url.scheme(), tls.as_deref()),
        ("smtps", _) | ("smtp", Some("required"))
    )
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
    fn production_refuses_what_leaks_links_and_names_each_variable() {
        let production = Config {
            env: Environment::Production,
            ..Config::default()
        };
        let refusals = production.production_refusals();
        assert_eq!(refusals.len(), 2, "{refusals:?}");
        assert!(refusals[0].contains("LATCHKEY_PUBLIC_URL"));
        assert!(refusals[0].contains("LATCHKEY_ALLOW_INSECURE_URLS"));
        assert!(refusals[1].contains("LATCHKEY_SMTP_URL"));
        assert!(refusals[1].contains("LATCHKEY_ALLOW_INSECURE_MAIL_DIR"));

        let plain = Config {
            public_url: Some("https://auth.shop.example".into()),
            storefront_reset_url: Some("http://shop.example/reset?token={token}".into()),
            reset_url_allowlist: vec!["https://shop.example/".into(), "http://old.example/".into()],
            smtp_url: Some(Secret::new("smtp://mail.example:587?tls=opportunistic")),
            ..production.clone()
        };
        let refusals = plain.production_refusals();
        assert_eq!(refusals.len(), 3, "{refusals:?}");
        assert!(refusals[0].contains("LATCHKEY_STOREFRONT_RESET_URL"));
        assert!(refusals[1].contains("http://old.example/"));
        assert!(refusals[2].contains("LATCHKEY_ALLOW_INSECURE_SMTP"));
        assert!(
            !refusals.iter().any(|r| r.contains("mail.example")),
            "the SMTP URL may hold a password: never repeat it"
        );

        for tls in [
            "smtps://u:p@mail.example",
            "smtp://mail.example:587?tls=required",
        ] {
            let good = Config {
                smtp_url: Some(Secret::new(tls)),
                storefront_reset_url: None,
                reset_url_allowlist: Vec::new(),
                ..plain.clone()
            };
            assert!(good.production_refusals().is_empty(), "{tls}");
        }
        let storefront_only = Config {
            public_url: None,
            storefront_reset_url: Some("https://shop.example/reset?token={token}".into()),
            smtp_url: Some(Secret::new("smtps://mail.example")),
            reset_url_allowlist: Vec::new(),
            ..plain.clone()
        };
        assert!(storefront_only.production_refusals().is_empty());
        let staging = Config {
            allow_insecure_urls: true,
            allow_insecure_smtp: true,
            ..plain
        };
        assert!(staging.production_refusals().is_empty());
        assert!(Config::default().production_refusals().is_empty());
        // Admins without a second factor are for development.
        let optional = Config {
            admin_2fa: AdminTwoFactor::Optional,
            ..staging
        };
        let refusals = optional.production_refusals();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(refusals[0].contains("LATCHKEY_ADMIN_2FA"));
        assert!(
            Config {
                env: Environment::Development,
                ..optional
            }
            .production_refusals()
            .is_empty()
        );
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
