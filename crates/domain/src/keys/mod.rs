//! Signing keys: Ed25519 key pairs kept in storage with their private halves sealed, the ring
//! built from them, and the rotation rules.
//!
//! - A key is named by its RFC 7638 thumbprint and numbered by `generation` (unique: two
//!   replicas making the first key at once cannot both succeed).
//! - `rotate` adds a key that is published at once and signs only from `signs_from`, after
//!   every replica has reloaded its ring and every JWKS cache has expired; until then the
//!   previous key signs. Nobody is signed out: old keys keep verifying.
//! - `retire` removes a key that no longer signs once every token it can have signed has expired
//!   (the longest token lifetime after the next key took over), and forgets its private half.

mod store;
pub mod token;

pub use store::{KeyStore, StoredKey};

use std::sync::Arc;

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use chrono::{DateTime, Duration, Utc};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::{
    Error, Result,
    token::{KeyRing, RingKey, thumbprint},
};

pub const ALGORITHM: &str = "EdDSA";
const SEALED_VERSION: u8 = 1;

/// A 32-byte key for one purpose, derived (HKDF-SHA256) from a server secret and the purpose's
/// label: keys of different purposes are unrelated, and none is the secret itself.
pub fn derive_key(secret: &[u8], label: &str) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"latchkey"), secret)
        .expand(label.as_bytes(), &mut key)
        .map_err(|_| Error::internal("HKDF"))?;
    Ok(key)
}

/// An HMAC-SHA256 key for one purpose (signed links, challenges, keyed hashes). Its `Debug`
/// says nothing.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<secret>)")
    }
}

impl MacKey {
    pub fn derive(secret: &[u8], label: &str) -> Result<Self> {
        derive_key(secret, label).map(Self)
    }

    /// A fresh MAC under this key.
    pub fn mac(&self) -> hmac::Hmac<Sha256> {
        // An HMAC takes a key of any length.
        <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!())
    }
}

/// Seals secrets at rest with XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the
/// configured key-encryption secret and a purpose label (so a secret sealed for one purpose
/// never opens as another's); the row's name is the associated data, so a sealed secret moved to
/// another row does not open.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<secret>)")
    }
}

impl Sealer {
    pub fn new(secret: &[u8], purpose: &str) -> Result<Self> {
        if secret.len() < crate::token::MIN_SECRET_BYTES {
            return Err(Error::internal(
                "the key-encryption secret must be at least 32 bytes",
            ));
        }
        let key = derive_key(secret, purpose)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }

    /// Version, nonce and ciphertext of `secret`, bound to `name`.
    pub fn seal(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing a secret failed"))?;
        let mut out = vec![SEALED_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The secret sealed under `name`; `None` when it does not open (another key-encryption
    /// secret, another row, a damaged value).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 25 || sealed[0] != SEALED_VERSION {
            return None;
        }
        let nonce: [u8; 24] = sealed[1..25].try_into().ok()?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[25..],
                    aad: name.as_bytes(),
                },
            )
            .ok()
    }
}

/// Seals the private halves of signing keys (their 32-byte seeds), the `kid` as the name.
#[derive(Clone, Debug)]
pub struct KeySealer(Sealer);

impl KeySealer {
    pub fn new(secret: &[u8]) -> Result<Self> {
        Sealer::new(secret, "signing-key sealing v1").map(Self)
    }

    pub fn seal(&self, kid: &str, seed: &[u8; 32]) -> Result<Vec<u8>> {
        self.0.seal(kid, seed)
    }

    /// The seed, or an error that says the key-encryption secret is not the one it was sealed
    /// with.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<[u8; 32]> {
        self.0
            .open(kid, sealed)
            .and_then(|seed| seed.try_into().ok())
            .ok_or_else(|| {
                Error::internal(format!(
                    "signing key {kid} does not open with this key-encryption secret \
                     (LATCHKEY_KEY_ENCRYPTION_KEY, or LATCHKEY_JWT_SECRET it is derived from)"
                ))
            })
    }
}

/// The generation that signs at `now`: the newest live key whose `signs_from` has come.
pub fn signing_generation(keys: &[StoredKey], now: DateTime<Utc>) -> Option<i64> {
    keys.iter()
        .filter(|k| k.retired_at.is_none() && k.signs_from <= now)
        .map(|k| k.generation)
        .max()
}

/// What a retirement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    Retired(String),
    /// Still signing, or some token it signed may not have expired yet (until when).
    Kept {
        kid: String,
        until: Option<DateTime<Utc>>,
    },
}

/// The key use cases; the ring they build is what `TokenCodec::install` takes.
pub struct Keys {
    store: Arc<dyn KeyStore>,
    sealer: KeySealer,
    /// Opens keys sealed before a key-encryption key was configured (with the one derived
    /// from the legacy secret); new keys are always sealed with `sealer`.
    previous: Option<KeySealer>,
    legacy_secret: Option<Vec<u8>>,
}

impl Keys {
    pub fn new(
        store: Arc<dyn KeyStore>,
        sealer: KeySealer,
        legacy_secret: Option<Vec<u8>>,
    ) -> Self {
        Self {
            store,
            sealer,
            previous: None,
            legacy_secret,
        }
    }

    /// Also opens keys sealed by `previous` (a deployment that set a key-encryption key after
    /// its keys were sealed under the legacy secret): rotate, then retire those keys, and the
    /// legacy secret is no longer needed.
    pub fn with_previous_sealer(mut self, previous: Option<KeySealer>) -> Self {
        self.previous = previous;
        self
    }

    fn generate(
        &self,
        generation: i64,
        now: DateTime<Utc>,
        signs_from: DateTime<Utc>,
    ) -> Result<StoredKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let kid = thumbprint(&public);
        Ok(StoredKey {
            sealed_private_key: Some(self.sealer.seal(&kid, &seed)?),
            kid,
            generation,
            algorithm: ALGORITHM.to_owned(),
            public_key: public.to_vec(),
            created_at: now,
            signs_from,
            retired_at: None,
        })
    }

    /// Adds the next generation's key, signing from `signs_from`; retried when another process
    /// took the generation meanwhile.
    async fn add(&self, now: DateTime<Utc>, signs_from: DateTime<Utc>) -> Result<StoredKey> {
        for _ in 0..5 {
            let next = self
                .store
                .signing_keys()
                .await?
                .iter()
                .map(|k| k.generation)
                .max()
                .unwrap_or(0)
                + 1;
            let key = self.generate(next, now, signs_from)?;
            if self.store.add_signing_key(key.clone()).await? {
                return Ok(key);
            }
        }
        Err(Error::internal(
            "could not add a signing key: generations kept clashing",
        ))
    }

    /// Makes the first key when there is none live (a new deployment, or one that signed with
    /// HS256 until now); it signs at once. `None` when a live key already existed.
    pub async fn ensure(&self, now: DateTime<Utc>) -> Result<Option<StoredKey>> {
        let live = self.store.signing_keys().await?;
        if live.iter().any(|k| k.retired_at.is_none()) {
            return Ok(None);
        }
        // Generation 1 once: of two processes starting at once, the one that loses the race
        // uses the winner's key (a second key would leave each replica signing with its own
        // until the next refresh, and each refusing the other's tokens meanwhile).
        let next = live.iter().map(|k| k.generation).max().unwrap_or(0) + 1;
        let key = self.generate(next, now, now)?;
        Ok(self
            .store
            .add_signing_key(key.clone())
            .await?
            .then_some(key))
    }

    /// A new key, published now and signing from `now + publish_delay`.
    #[tracing::instrument(name = "keys.rotate", skip_all)]
    pub async fn rotate(&self, now: DateTime<Utc>, publish_delay: Duration) -> Result<StoredKey> {
        self.add(now, now + publish_delay).await
    }

    /// Retires `kid`, or (`None`) every key whose tokens have all expired. A key still signing
    /// is never retired; with `force` a superseded key goes at once (its tokens stop working:
    /// for a key that leaked).
    #[tracing::instrument(name = "keys.retire", skip_all)]
    pub async fn retire(
        &self,
        now: DateTime<Utc>,
        kid: Option<&str>,
        force: bool,
        longest_token_lifetime: Duration,
    ) -> Result<Vec<Retired>> {
        let keys: Vec<StoredKey> = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .collect();
        if let Some(kid) = kid
            && !keys.iter().any(|k| k.kid == kid)
        {
            return Err(Error::NotFound);
        }
        let signing = signing_generation(&keys, now);
        let mut out = Vec::new();
        for key in keys.iter().filter(|k| kid.is_none_or(|kid| k.kid == kid)) {
            // Superseded when a newer key signs; its last token was signed just before that.
            let superseded = keys
                .iter()
                .filter(|k| k.generation > key.generation && k.signs_from <= now)
                .map(|k| k.signs_from)
                .min();
            let until = superseded.map(|at| at + longest_token_lifetime);
            let expired = until.is_some_and(|until| until <= now);
            let may_go =
                Some(key.generation) != signing && (expired || (force && superseded.is_some()));
            if may_go && self.store.retire_signing_key(&key.kid, now).await? {
                out.push(Retired::Retired(key.kid.clone()));
            } else if kid.is_some() || key.signs_from <= now {
                out.push(Retired::Kept {
                    kid: key.kid.clone(),
                    until,
                });
            }
        }
        Ok(out)
    }

    /// The ring of every live key, their seeds opened.
    pub async fn ring(&self) -> Result<KeyRing> {
        let mut ring_keys = Vec::new();
        for key in self.store.signing_keys().await? {
            if key.retired_at.is_some() || key.algorithm != ALGORITHM {
                continue;
            }
            let public: [u8; 32] = key.public_key.as_slice().try_into().map_err(|_| {
                Error::internal(format!(
                    "signing key {} has a malformed public key",
                    key.kid
                ))
            })?;
            let seed = match &key.sealed_private_key {
                Some(sealed) => Some(match (self.sealer.open(&key.kid, sealed), &self.previous) {
                    (Ok(seed), _) => seed,
                    (Err(_), Some(previous)) => previous.open(&key.kid, sealed)?,
                    (Err(e), None) => return Err(e),
                }),
                None => None,
            };
            ring_keys.push(RingKey {
                kid: key.kid,
                generation: key.generation,
                public,
                seed,
                signs_from: key.signs_from,
            });
        }
        if ring_keys.is_empty() {
            return Err(Error::internal("no live signing key"));
        }
        KeyRing::new(ring_keys, self.legacy_secret.as_deref())
            .map_err(|e| Error::internal(format!("key ring: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    #[test]
    fn a_sealed_seed_opens_only_with_its_secret_and_its_kid() {
        let sealer = KeySealer::new(&[7u8; 32]).unwrap();
        let seed = [42u8; 32];
        let sealed = sealer.seal("kid-a", &seed).unwrap();
        assert_eq!(sealer.open("kid-a", &sealed).unwrap(), seed);
        assert!(sealer.open("kid-b", &sealed).is_err());
        let other = KeySealer::new(&[8u8; 32]).unwrap();
        assert!(other.open("kid-a", &sealed).is_err());
        // Two seals of one seed differ (a fresh nonce each time) and neither shows the seed.
        let again = sealer.seal("kid-a", &seed).unwrap();
        assert_ne!(sealed, again);
        assert!(!sealed.windows(32).any(|w| w == seed));
    }

    /// A store that loses every insert: another process made the key first.
    struct Lost(std::sync::Mutex<Vec<StoredKey>>);

    #[async_trait]
    impl KeyStore for Lost {
        async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn add_signing_key(&self, key: StoredKey) -> Result<bool> {
            // The winner's key lands, ours does not.
            let mut keys = self.0.lock().unwrap();
            let mut winner = key;
            winner.kid = "the-winner".into();
            keys.push(winner);
            Ok(false)
        }
        async fn retire_signing_key(&self, _: &str, _: DateTime<Utc>) -> Result<bool> {
            Ok(false)
        }
    }

    #[tokio::test]
    async fn the_first_key_is_made_once_even_when_two_processes_race() {
        let store = Arc::new(Lost(std::sync::Mutex::default()));
        let keys = Keys::new(store.clone(), KeySealer::new(&[7u8; 32]).unwrap(), None);
        assert_eq!(keys.ensure(Utc::now()).await.unwrap(), None);
        let stored = store.0.lock().unwrap().clone();
        assert_eq!(stored.len(), 1, "no second key after losing the race");
        assert_eq!(stored[0].kid, "the-winner");
    }
}
