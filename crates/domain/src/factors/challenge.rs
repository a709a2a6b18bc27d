//! The sign-in challenge: what a sign-in whose password was right, for an admin with a second
//! factor (or one who must enrol one), answers instead of a token. It is sealed (XChaCha20-
//! Poly1305 under a key derived from the key-encryption secret: the holder can neither read
//! nor change it), lives a few minutes, and names its purpose, the admin, the sign-in name and
//! the fingerprint of the password hash that was verified, so the next step can mint a session
//! only while that hash is still the stored one. Nothing is stored for it; wrong codes are
//! counted per admin, over every challenge.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::Sealer;
use crate::{Error, Result};

/// The name every challenge is sealed under.
const SEALED_AS: &str = "admin sign-in challenge";
/// The longest sealed value opened (an admin's ten passkeys in a ceremony's state fit).
const MAX_SEALED_CHARS: usize = 32 * 1024;

/// How long the factor step may follow the password step.
pub const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// How long enrolling a first factor may follow the password step, where a store requires
/// one (finding the phone and scanning the code takes longer than typing one).
pub const ENROLMENT_LIFETIME: Duration = Duration::minutes(15);
/// Wrong codes one admin may type within [`WRONG_FACTOR_WINDOW`], over every challenge, and
/// within a day ([`MAX_WRONG_FACTOR_CODES_PER_DAY`]). A 6-digit code is guessable, and each
/// guess is tried against every confirmed factor at three steps (the skew): with one factor a
/// guess is right with a chance of 3 in 10^6, so a day's 20 guesses come to about 1 in 17,000
/// and a year of them to about 2 %; each more factor adds as much. Only someone who has the
/// password can guess at all.
pub const MAX_WRONG_FACTOR_CODES: u32 = 5;
pub const WRONG_FACTOR_WINDOW: Duration = Duration::minutes(15);
pub const MAX_WRONG_FACTOR_CODES_PER_DAY: u32 = 20;

/// What a challenge lets its holder do next; a challenge for one never opens as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Type a code from one of the admin's factors.
    SignIn,
    /// Enrol the first factor of an admin the store requires one of (and only that).
    Enrol,
}

/// What a challenge says. Its `Debug` shows the purpose, the admin and the expiry only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub purpose: Purpose,
    pub admin_id: Uuid,
    /// The normalised sign-in name the password was checked under.
    pub login: String,
    /// `sign_in::hash_fingerprint` of the password hash verified.
    pub fingerprint: String,
    /// Seconds since the epoch.
    pub expires: i64,
    /// The state of the passkey ceremony asked for with a factor step (JSON), when the admin
    /// has passkeys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passkey: Option<String>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("purpose", &self.purpose)
            .field("admin_id", &self.admin_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Challenge {
    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.expires, 0)
            .single()
            .unwrap_or_default()
    }
}

/// What a sealed challenge is known by once spent (SHA-256, hex): the client's copy, never the
/// claims inside.
pub fn digest(sealed: &str) -> String {
    crate::kernel::sha256_hex(sealed.as_bytes())
}

/// Seals and opens challenges.
#[derive(Debug)]
pub struct ChallengeKey(Sealer);

impl ChallengeKey {
    pub fn derive(key_encryption_secret: &[u8]) -> Result<Self> {
        Sealer::new(key_encryption_secret, "admin sign-in challenge v2").map(Self)
    }

    /// The challenge as the client holds it: its claims sealed, base64url.
    pub fn seal(&self, challenge: &Challenge) -> Result<String> {
        self.seal_as(SEALED_AS, challenge)
    }

    /// The challenge if this key sealed it for `purpose` and it has not expired at `now`.
    pub fn open(&self, sealed: &str, now: DateTime<Utc>, purpose: Purpose) -> Option<Challenge> {
        let challenge: Challenge = self.open_as(SEALED_AS, sealed)?;
        (challenge.purpose == purpose && challenge.expires > now.timestamp()).then_some(challenge)
    }

    /// Any other state a step hands the client to bring back, sealed under `name`.
    pub fn seal_as<T: Serialize>(&self, name: &str, value: &T) -> Result<String> {
        let payload =
            serde_json::to_vec(value).map_err(|e| Error::internal(format!("{name}: {e}")))?;
        Ok(URL_SAFE_NO_PAD.encode(self.0.seal(name, &payload)?))
    }

    /// What [`Self::seal_as`] sealed under `name`, if it opens (a passkey ceremony's state
    /// makes these a few kilobytes; nothing larger is even decoded).
    pub fn open_as<T: serde::de::DeserializeOwned>(&self, name: &str, sealed: &str) -> Option<T> {
        if sealed.len() > MAX_SEALED_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let payload = self.0.open(name, &bytes)?;
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_opens_only_under_its_key_whole_and_in_time() {
        let key = ChallengeKey::derive(&[7u8; 32]).unwrap();
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let challenge = Challenge {
            purpose: Purpose::SignIn,
            admin_id: Uuid::now_v7(),
            login: "ann".to_owned(),
            fingerprint: "ab".repeat(32),
            expires: (now + CHALLENGE_LIFETIME).timestamp(),
            passkey: None,
        };
        let sealed = key.seal(&challenge).unwrap();
        let open = |key: &ChallengeKey, sealed: &str, at| key.open(sealed, at, Purpose::SignIn);
        assert_eq!(open(&key, &sealed, now), Some(challenge.clone()));
        assert_eq!(open(&key, &sealed, challenge.expires_at()), None, "expired");
        assert_eq!(
            key.open(&sealed, now, Purpose::Enrol),
            None,
            "a sign-in challenge enrols nothing"
        );
        let other = ChallengeKey::derive(&[8u8; 32]).unwrap();
        assert_eq!(open(&other, &sealed, now), None, "another server's key");
        // Nothing of it is readable (no admin id, no fingerprint), and a changed byte
        // anywhere is refused.
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&challenge.admin_id.to_string()) && !text.contains("abab"));
        for i in [0, 1, 30, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[i] ^= 1;
            assert_eq!(
                open(&key, &URL_SAFE_NO_PAD.encode(&changed), now),
                None,
                "{i}"
            );
        }
        assert_eq!(
            open(&key, &sealed[..sealed.len() - 2], now),
            None,
            "truncated"
        );
        assert_eq!(open(&key, "", now), None);
    }
}
