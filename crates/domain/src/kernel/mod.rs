//! The small kernel every feature stands on, importing no feature: the error and its password
//! vocabulary, the clock, the caller and the bearer token it presents, email addresses, every rate limit, and which mail lane
//! delivers a message.

pub mod bearer;
pub mod client;
pub mod clock;
pub mod email;
pub mod error;
pub mod ids;
pub mod limits;
pub mod mail;
pub mod violation;

/// SHA-256 of `bytes`, lower-case hex: how a secret, a token or a challenge is known once it
/// must not be kept itself.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
