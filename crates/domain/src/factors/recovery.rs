//! Recovery codes: ten single-use codes an admin keeps on paper for the day the phone is lost.
//! Each is 10 characters of Crockford's base32 (50 random bits; no I, L, O or U, so nothing is
//! misread), shown once as `xxxxx-xxxxx`, typed in any case with or without the hyphen, and
//! stored only as an HMAC-SHA256 under a key derived from the server's key-encryption secret,
//! with the admin's id in the message: someone who reads the database cannot search 50 bits
//! offline without that secret, and someone who can write to it cannot plant a code of their
//! own (or move one to another admin). Guesses through the API are bounded by the sign-in's
//! factor step, which counts wrong codes per admin (`challenge::MAX_WRONG_FACTOR_CODES`).

use std::fmt;

use hmac::Mac;

use uuid::Uuid;

use crate::keys::MacKey;
use crate::{Error, Result};

/// Codes issued at once (a new set replaces the old).
pub const RECOVERY_CODES: usize = 10;
const CODE_CHARS: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// One recovery code. Its `Debug` says nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

impl RecoveryCode {
    /// A fresh set of [`RECOVERY_CODES`] distinct codes.
    pub fn generate_set() -> Result<Vec<Self>> {
        let mut codes: Vec<Self> = Vec::with_capacity(RECOVERY_CODES);
        while codes.len() < RECOVERY_CODES {
            let code = Self::generate()?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        Ok(codes)
    }

    fn generate() -> Result<Self> {
        let mut bytes = [0u8; CODE_CHARS];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        // 256 is a multiple of 32: each byte's low five bits are uniform.
        Ok(Self(
            bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                .collect(),
        ))
    }

    /// What an admin types: any case, hyphens and spaces anywhere; Crockford's look-alikes
    /// read as the digits they look like (`o` → `0`, `i`/`l` → `1`). Anything else is no code.
    pub fn parse(typed: &str) -> Option<Self> {
        if typed.len() > 64 {
            return None;
        }
        let mut code = String::with_capacity(CODE_CHARS);
        for c in typed.chars() {
            let c = c.to_ascii_lowercase();
            match c {
                '-' | ' ' => {}
                'o' => code.push('0'),
                'i' | 'l' => code.push('1'),
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => code.push(c),
                _ => return None,
            }
        }
        (code.len() == CODE_CHARS).then_some(Self(code))
    }

    /// As shown once: `xxxxx-xxxxx`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..5], &self.0[5..])
    }

    /// As stored for `admin`, under `key` (see [`RecoveryKey`]).
    pub fn hash(&self, key: &RecoveryKey, admin: Uuid) -> String {
        let mut mac = key.0.mac();
        mac.update(admin.as_bytes());
        mac.update(self.0.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The key recovery codes are stored under, derived from the key-encryption secret with a
/// label of its own.
#[derive(Clone, Debug)]
pub struct RecoveryKey(MacKey);

impl RecoveryKey {
    pub fn derive(key_encryption_secret: &[u8]) -> Result<Self> {
        MacKey::derive(key_encryption_secret, "admin recovery codes v1").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_ten_distinct_codes_that_read_back_however_typed() {
        let set = RecoveryCode::generate_set().unwrap();
        assert_eq!(set.len(), RECOVERY_CODES);
        let key = RecoveryKey::derive(&[7u8; 32]).unwrap();
        let admin = Uuid::now_v7();
        let hashes: std::collections::HashSet<String> =
            set.iter().map(|c| c.hash(&key, admin)).collect();
        assert_eq!(hashes.len(), RECOVERY_CODES);
        for code in &set {
            let shown = code.display();
            assert_eq!(shown.len(), 11);
            assert_eq!(shown.as_bytes()[5], b'-');
            assert_eq!(RecoveryCode::parse(&shown).as_ref(), Some(code));
            let shouted = shown.to_uppercase().replace('-', " ");
            assert_eq!(RecoveryCode::parse(&shouted).as_ref(), Some(code));
        }
        assert_eq!(format!("{:?}", set[0]), "RecoveryCode(<redacted>)");
        // Another admin, or another server's secret, stores another hash for the same code.
        let code = &set[0];
        assert_ne!(code.hash(&key, admin), code.hash(&key, Uuid::now_v7()));
        let other = RecoveryKey::derive(&[8u8; 32]).unwrap();
        assert_ne!(code.hash(&key, admin), code.hash(&other, admin));
    }

    #[test]
    fn look_alikes_read_as_digits_and_anything_else_is_no_code() {
        assert_eq!(
            RecoveryCode::parse("OIL23-45678").map(|c| c.display()),
            Some("01123-45678".to_owned())
        );
        assert_eq!(RecoveryCode::parse("abcd-efgh"), None, "too short");
        assert_eq!(
            RecoveryCode::parse("abcde-fghuu"),
            None,
            "u is not in the alphabet"
        );
        assert_eq!(RecoveryCode::parse("abcde-fgh!j"), None);
        assert_eq!(RecoveryCode::parse("ａｂｃｄｅ-ｆｇｈｊｋ"), None);
    }
}
