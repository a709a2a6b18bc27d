//! The signing keys in a running server and on the command line: the token codec built from
//! the database's keys, a refresher that reloads them on every replica, and `latchkey keys`.

use std::{sync::Arc, time::Duration};

use domain::{
    clock::Clock,
    keys::{KeySealer, Keys, Retired},
    token::TokenCodec,
};
use persistence::{Backend, SqlKeys, Stores};
use tokio::sync::watch;

use crate::{
    config::{Config, TokenSigning},
    secrets,
};

/// How long after `latchkey keys rotate` the new key starts signing: every JWKS cache has
/// expired and every replica has reloaded its ring (twice, to be safe) by then.
pub fn publish_delay(config: &Config) -> chrono::Duration {
    let seconds = config.jwks_max_age_seconds + 2 * config.key_refresh_seconds.max(1);
    chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000))
}

pub fn keys(config: &Config, store: Arc<SqlKeys>, backend: Backend) -> anyhow::Result<Keys> {
    let secrets = secrets::server_secrets(config, backend)?;
    let sealer = KeySealer::new(&secrets.sealing).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Keys sealed under the legacy secret before a key-encryption key was set still open.
    let previous = match (&config.key_encryption_key, &secrets.legacy) {
        (Some(_), Some(legacy)) => {
            Some(KeySealer::new(legacy).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        _ => None,
    };
    Ok(Keys::new(store, sealer, secrets.legacy).with_previous_sealer(previous))
}

/// The codec a server signs and verifies with, and (for asymmetric keys) what keeps it
/// current. Makes the first key when the database has none.
pub async fn token_codec(
    config: &Config,
    store: Arc<SqlKeys>,
    backend: Backend,
    clock: &dyn Clock,
) -> anyhow::Result<(TokenCodec, Option<KeyRefresher>)> {
    if config.token_signing == TokenSigning::Hs256 {
        let secret = secrets::server_secrets(config, backend)?
            .legacy
            .ok_or_else(|| anyhow::anyhow!("LATCHKEY_JWT_SECRET is required"))?;
        let codec =
            TokenCodec::new(&secret).map_err(|e| anyhow::anyhow!("LATCHKEY_JWT_SECRET: {e}"))?;
        return Ok((codec, None));
    }
    let keys = keys(config, store, backend)?;
    if let Some(key) = keys.ensure(clock.now()).await.map_err(anyhow_domain)? {
        tracing::info!(kid = %key.kid, "made the first signing key");
    }
    let codec = TokenCodec::with_ring(keys.ring().await.map_err(anyhow_domain)?);
    let refresher = KeyRefresher {
        keys: Arc::new(keys),
        codec: codec.clone(),
        every: Duration::from_secs(config.key_refresh_seconds.max(1)),
        changed: None,
    };
    Ok((codec, Some(refresher)))
}

fn anyhow_domain(e: domain::Error) -> anyhow::Error {
    anyhow::anyhow!("signing keys: {e}")
}

/// Reloads the key ring as soon as the session log says the keys changed (a rotation or a
/// retirement on any replica or the command line), and every `every` in any case.
pub struct KeyRefresher {
    keys: Arc<Keys>,
    codec: TokenCodec,
    every: Duration,
    changed: Option<watch::Receiver<u64>>,
}

impl KeyRefresher {
    /// Also reloads when `changed` changes.
    pub fn waking_on(mut self, changed: watch::Receiver<u64>) -> Self {
        self.changed = Some(changed);
        self
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let changed = async {
                match self.changed.as_mut() {
                    Some(changed) => {
                        if changed.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(self.every) => {},
                () = changed => {},
                _ = stop.changed() => return,
            }
            match self.keys.ring().await {
                Ok(ring) => self.codec.install(ring),
                Err(e) => {
                    tracing::warn!(error = %e, "reloading the signing keys failed; keeping the ones loaded")
                }
            }
        }
    }
}

/// `latchkey keys list`: one line per key.
pub async fn list(config: &Config) -> anyhow::Result<String> {
    use domain::keys::KeyStore;
    let (db, _) = crate::prepare_database(config).await?;
    let store = Stores::new(db).keys;
    let now = chrono::Utc::now();
    let keys = store.signing_keys().await.map_err(anyhow_domain)?;
    let signing = domain::keys::signing_generation(&keys, now);
    let mut out = String::from("generation\tkid\tstate\tsigns_from\tretired_at\n");
    for k in &keys {
        let state = match () {
            () if k.retired_at.is_some() => "retired",
            () if Some(k.generation) == signing => "signing",
            () if k.signs_from > now => "published",
            () => "verifying",
        };
        out.push_str(&format!(
            "{}\t{}\t{state}\t{}\t{}\n",
            k.generation,
            k.kid,
            k.signs_from.to_rfc3339(),
            k.retired_at.map(|t| t.to_rfc3339()).unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `latchkey keys rotate`: a new key, published now, signing after the publish delay.
pub async fn rotate(config: &Config) -> anyhow::Result<String> {
    let (db, backend) = crate::prepare_database(config).await?;
    let keys = keys(config, Stores::new(db).keys, backend)?;
    let now = chrono::Utc::now();
    keys.ensure(now).await.map_err(anyhow_domain)?;
    let key = keys
        .rotate(now, publish_delay(config))
        .await
        .map_err(anyhow_domain)?;
    Ok(format!(
        "added key {} (generation {}): published now, signs from {}; the previous key keeps \
         verifying until `latchkey keys retire` once its tokens have expired\n",
        key.kid,
        key.generation,
        key.signs_from.to_rfc3339()
    ))
}

/// `latchkey keys retire [KID] [--force]`.
pub async fn retire(config: &Config, kid: Option<&str>, force: bool) -> anyhow::Result<String> {
    use domain::ports::SettingsSource;
    let (db, backend) = crate::prepare_database(config).await?;
    let stores = Stores::new(db);
    let settings = stores.settings.current().await.map_err(anyhow_domain)?;
    let longest = settings
        .customer_token_lifetime
        .max(settings.admin_token_lifetime);
    let keys = keys(config, stores.keys, backend)?;
    let done = keys
        .retire(chrono::Utc::now(), kid, force, longest)
        .await
        .map_err(|e| match e {
            domain::Error::NotFound => anyhow::anyhow!("no live key has that kid"),
            e => anyhow_domain(e),
        })?;
    let mut out = String::new();
    for r in done {
        match r {
            Retired::Retired(kid) => out.push_str(&format!("retired {kid}\n")),
            Retired::Kept { kid, until: None } => {
                out.push_str(&format!("kept {kid}: it is the signing key (rotate first)\n"));
            }
            Retired::Kept {
                kid,
                until: Some(until),
            } => out.push_str(&format!(
                "kept {kid}: tokens it signed may be live until {} (or use --force: they stop working)\n",
                until.to_rfc3339()
            )),
        }
    }
    if out.is_empty() {
        out.push_str("nothing to retire\n");
    }
    Ok(out)
}
