//! The proof-of-work challenge, in the ALTCHA format (version 1), so a storefront may use the
//! ALTCHA widget or solve it with twenty lines of its own.
//!
//! The server picks a secret number `n` in `0..=maxnumber` and a salt that carries the
//! challenge's expiry and its *scope* (what it was asked for: one name, or one network; a
//! solution is accepted only there), and sends `challenge = hex(SHA-256(salt ‖ n))` with
//! `signature = hex(HMAC-SHA-256(key, challenge))`. The client tries numbers until one hashes
//! to the challenge and sends back the challenge, salt, signature and the number it found
//! (base64 of a JSON object). The server checks the hash and the signature (it stores nothing
//! per challenge it issues) and that the salt's expiry has not passed; the caller spends each
//! solved challenge once.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::keys::MacKey;

/// How long a challenge can be solved and used.
pub const WORK_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// The only algorithm issued and accepted.
pub const ALGORITHM: &str = "SHA-256";

/// Longest solution payload looked at (a real one is about 300 bytes).
const MAX_PAYLOAD: usize = 2048;

/// A challenge as the client receives it (ALTCHA's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkChallenge {
    pub algorithm: String,
    pub challenge: String,
    pub maxnumber: u64,
    pub salt: String,
    pub signature: String,
}

/// What the client sends back, base64 of this JSON.
#[derive(Debug, Deserialize)]
struct Payload {
    algorithm: String,
    challenge: String,
    number: u64,
    salt: String,
    signature: String,
}

/// Why a solution was not accepted; each answers with a fresh challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkRejection {
    /// None was sent, and one is needed.
    Required,
    /// Not a payload of this format, a wrong number, or a signature this server did not make.
    Invalid,
    /// Past the challenge's lifetime.
    Expired,
    /// Accepted once already.
    Spent,
}

impl WorkRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::Spent => "SPENT",
        }
    }
}

/// A solution whose hash and signature check out, not yet spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved {
    /// The challenge (hex): what spending it records.
    pub challenge: String,
    /// What it was issued for (see [`WorkKey::issue`]).
    pub scope: String,
}

/// Issues and checks challenges under one HMAC key, the same on every replica.
#[derive(Debug, Clone)]
pub struct WorkKey(MacKey);

impl WorkKey {
    pub fn derive(secret: &[u8]) -> crate::Result<Self> {
        MacKey::derive(secret, "proof-of-work challenge v1").map(Self)
    }

    /// A fresh challenge whose number lies in `0..=max_number`, good until `now` plus
    /// [`WORK_LIFETIME`], for `scope` (lower-case hex, written into the salt and so signed).
    pub fn issue(
        &self,
        max_number: u32,
        now: DateTime<Utc>,
        scope: &str,
    ) -> crate::Result<WorkChallenge> {
        let mut random = [0u8; 20];
        getrandom::fill(&mut random).map_err(|e| crate::Error::internal(format!("OS RNG: {e}")))?;
        let (nonce, draw) = random.split_at(12);
        let draw = u64::from_be_bytes(draw.try_into().unwrap_or([0; 8]));
        let number = draw % (u64::from(max_number) + 1);
        let expires = (now + WORK_LIFETIME).timestamp();
        let salt = format!("{}?expires={expires}&scope={scope}&", hex::encode(nonce));
        Ok(self.challenge_for(&salt, number, u64::from(max_number)))
    }

    fn challenge_for(&self, salt: &str, number: u64, maxnumber: u64) -> WorkChallenge {
        let challenge = hash_hex(salt, number);
        WorkChallenge {
            algorithm: ALGORITHM.to_owned(),
            signature: hex::encode(self.sign(&challenge)),
            challenge,
            maxnumber,
            salt: salt.to_owned(),
        }
    }

    fn sign(&self, challenge: &str) -> Vec<u8> {
        let mut mac = self.0.mac();
        mac.update(challenge.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a solution payload at `now`: its number hashes to its challenge, this server
    /// signed that challenge, and the salt's expiry has not passed.
    pub fn check(&self, payload: &str, now: DateTime<Utc>) -> Result<Solved, WorkRejection> {
        let json = decoded(payload).ok_or(WorkRejection::Invalid)?;
        let p: Payload = serde_json::from_slice(&json).map_err(|_| WorkRejection::Invalid)?;
        if p.algorithm != ALGORITHM {
            return Err(WorkRejection::Invalid);
        }
        let (expires, scope) = params_of(&p.salt).ok_or(WorkRejection::Invalid)?;
        if hash_hex(&p.salt, p.number) != p.challenge {
            return Err(WorkRejection::Invalid);
        }
        let signature = hex::decode(&p.signature).map_err(|_| WorkRejection::Invalid)?;
        let mut mac = self.0.mac();
        mac.update(p.challenge.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| WorkRejection::Invalid)?;
        // Only after the signature: the expiry is then the one this server wrote.
        if expires <= now.timestamp() {
            return Err(WorkRejection::Expired);
        }
        Ok(Solved {
            challenge: p.challenge,
            scope: scope.to_owned(),
        })
    }
}

/// Whether `payload` has the shape of a proof-of-work solution (base64 of a JSON object), so
/// it is never mistaken for a third-party CAPTCHA's token.
pub fn is_work_payload(payload: &str) -> bool {
    decoded(payload)
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .is_some_and(|v| v.is_object())
}

/// The bytes of a payload in any of the base64 alphabets clients send, if it is short enough
/// to look at.
fn decoded(payload: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let payload = payload.trim();
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    STANDARD
        .decode(payload)
        .or_else(|_| STANDARD_NO_PAD.decode(payload))
        .or_else(|_| URL_SAFE_NO_PAD.decode(payload))
        .ok()
}

/// `hex(SHA-256(salt ‖ decimal(number)))`.
fn hash_hex(salt: &str, number: u64) -> String {
    crate::kernel::sha256_hex(format!("{salt}{number}").as_bytes())
}

/// The expiry (Unix seconds) and scope of a salt this server writes:
/// `<hex>?expires=<digits>&scope=<hex>&`; nothing else parses.
fn params_of(salt: &str) -> Option<(i64, &str)> {
    let (nonce, rest) = salt.split_once("?expires=")?;
    let (digits, rest) = rest.split_once("&scope=")?;
    let scope = rest.strip_suffix('&')?;
    let hexadecimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hexadecimal(nonce)
        || !hexadecimal(scope)
        || scope.len() > 64
        || digits.is_empty()
        || digits.len() > 12
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((digits.parse().ok()?, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WorkKey {
        WorkKey::derive(&[7u8; 32]).unwrap()
    }

    /// The client's side, as any solver does it: try numbers until one hashes to the challenge.
    fn solve(c: &WorkChallenge) -> String {
        let number = (0..=c.maxnumber)
            .find(|n| hash_hex(&c.salt, *n) == c.challenge)
            .expect("a number in range");
        let payload = serde_json::json!({
            "algorithm": c.algorithm, "challenge": c.challenge, "number": number,
            "salt": c.salt, "signature": c.signature, "took": 12,
        });
        base64::engine::general_purpose::STANDARD.encode(payload.to_string())
    }

    #[test]
    fn a_solved_challenge_checks_out_within_its_lifetime_only() {
        let now = Utc::now();
        let c = key().issue(2_000, now, "ab12").unwrap();
        assert_eq!(c.algorithm, "SHA-256");
        assert_eq!(c.maxnumber, 2_000);
        let solution = solve(&c);
        assert_eq!(
            key().check(&solution, now + chrono::Duration::minutes(9)),
            Ok(Solved {
                challenge: c.challenge.clone(),
                scope: "ab12".into()
            })
        );
        assert_eq!(
            key().check(&solution, now + WORK_LIFETIME),
            Err(WorkRejection::Expired)
        );
    }

    #[test]
    fn another_servers_challenge_a_wrong_number_or_an_edited_salt_is_invalid() {
        let now = Utc::now();
        let c = key().issue(500, now, "ab12").unwrap();
        let other = WorkKey::derive(&[8u8; 32]).unwrap();
        assert_eq!(other.check(&solve(&c), now), Err(WorkRejection::Invalid));
        // The salt moved forward a day, the challenge recomputed: the signature no longer fits.
        let later = format!(
            "{}?expires={}&scope=ab12&",
            &c.salt[..24],
            (now + chrono::Duration::days(1)).timestamp()
        );
        let forged = WorkChallenge {
            salt: later.clone(),
            challenge: hash_hex(&later, 3),
            maxnumber: 3,
            ..c.clone()
        };
        assert_eq!(
            key().check(&solve(&forged), now),
            Err(WorkRejection::Invalid)
        );
        let wrong = serde_json::json!({
            "algorithm": c.algorithm, "challenge": c.challenge, "number": 501,
            "salt": c.salt, "signature": c.signature,
        });
        let wrong = base64::engine::general_purpose::STANDARD.encode(wrong.to_string());
        assert_eq!(key().check(&wrong, now), Err(WorkRejection::Invalid));
        for junk in ["", "not base64!", "e30=", &"A".repeat(5000)] {
            assert_eq!(
                key().check(junk, now),
                Err(WorkRejection::Invalid),
                "{junk:.20}"
            );
        }
    }

    #[test]
    fn the_format_matches_the_altcha_reference_library() {
        // From the reference Python library (`altcha` 2.3.0, its v1 API):
        // create_challenge_v1(ChallengeOptionsV1(hmac_key=..., salt="00112233445566778899aabb",
        // number=4242, max_number=10000, expires=<2100-01-01 UTC>)).
        let salt = "00112233445566778899aabb?expires=4102444800&";
        assert_eq!(
            hash_hex(salt, 4242),
            "d7670a4b9dede808a9ce4907a8fd8a277968b15022e9222ab326f7a49b4f1c4c"
        );
        // Ours carries the scope as one more parameter, as ALTCHA's salts may: the same library
        // with `params={"scope": "ab12"}` writes exactly our salt.
        let ours = "00112233445566778899aabb?expires=4102444800&scope=ab12&";
        assert_eq!(
            hash_hex(ours, 4242),
            "49012f96cd2d50b7c0575c3a0c7b2b023132904352d4cf2074964cf77a100c5e"
        );
        assert_eq!(
            params_of("00112233445566778899aabb?expires=4102444800&scope=ab12&"),
            Some((4_102_444_800, "ab12"))
        );
        assert_eq!(params_of(salt), None, "no scope: not one of ours");
    }
}
