//! One-time codes bound to the client that asked: the *flow*. A request that starts a flow
//! answers its client a flow id (256 bits, never mailed) and mails a short code; a code is
//! accepted only together with its flow id, a few attempts per flow. A code read out of a
//! customer's mailbox (or read to a caller on the phone) is useless without the flow id that
//! only the asking browser holds.
//!
//! Storage keeps the flow id's SHA-256 (to find the flow) and the SHA-256 of flow id and code
//! together (to check a guess): neither the database nor a backup can turn a stored flow back
//! into a working code without the flow id.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// Digits in a code: 10^8 possibilities.
pub const CODE_DIGITS: usize = 8;
/// Guesses one flow allows; the next one is refused even with the right code.
pub const MAX_CODE_ATTEMPTS: u32 = 5;
/// Wrong codes one address takes within [`WRONG_CODE_WINDOW`], over all its flows and all
/// clients; then codes for it are refused (RATE_LIMITED) until the window moves on, and the
/// link still works. It bounds guessing per account whatever the number of flows or
/// networks: 20 a day is at most 7,300 guesses at 10^8 codes a year.
pub const MAX_WRONG_CODES_PER_ADDRESS: u32 = 20;
pub const WRONG_CODE_WINDOW: chrono::Duration = chrono::Duration::hours(24);
const FLOW_BYTES: usize = 32;
const FLOW_CHARS: usize = 43;

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// What a flow is for: a reset (the flow unlocks a reset link's token) or a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    Reset,
    SignIn,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::SignIn => "sign_in",
        }
    }
}

/// The flow id its client holds. Only its hash is stored; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct FlowId(String);

impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowId(<redacted>)")
    }
}

impl FlowId {
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; FLOW_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Exactly the shape [`generate`](Self::generate) produces, or nothing.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == FLOW_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(s.to_owned()))
    }

    /// What storage finds the flow by.
    pub fn hash(&self) -> String {
        hex_sha256(&[b"flow:", self.0.as_bytes()])
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A code as mailed: [`CODE_DIGITS`] decimal digits, uniformly drawn. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode(<redacted>)")
    }
}

impl OneTimeCode {
    pub fn generate() -> Result<Self> {
        // Rejection sampling: of the 2^32 values, those below the largest multiple of 10^8
        // map onto the codes evenly.
        const SPACE: u32 = 100_000_000;
        const LIMIT: u32 = u32::MAX - (u32::MAX % SPACE);
        loop {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
            let n = u32::from_le_bytes(bytes);
            if n < LIMIT {
                return Ok(Self(format!("{:0width$}", n % SPACE, width = CODE_DIGITS)));
            }
        }
    }

    /// What a person types: the digits, with spaces or hyphens between groups forgiven (and
    /// full-width digits, as a Japanese or Korean input method gives them). Anything else, or
    /// another number of digits, is no code.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 64 {
            return None;
        }
        let mut digits = String::with_capacity(CODE_DIGITS);
        for c in s.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                '０'..='９' => digits.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
                ' ' | '-' | '\u{3000}' => {}
                _ => return None,
            }
        }
        (digits.len() == CODE_DIGITS).then_some(Self(digits))
    }

    /// The code as stored: bound to its flow, so it checks only together with the flow id.
    pub fn hash_for(&self, flow: &FlowId) -> String {
        hex_sha256(&[b"code:", flow.0.as_bytes(), b":", self.0.as_bytes()])
    }

    /// Whether this code, typed into `flow`, is the one whose hash is `stored`, in time that
    /// does not depend on how much of it matches.
    pub fn matches(&self, flow: &FlowId, stored: &str) -> bool {
        self.hash_for(flow)
            .as_bytes()
            .ct_eq(stored.as_bytes())
            .into()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A flow being started: what the client gets back, what is stored, what is mailed.
#[derive(Debug, Clone)]
pub struct NewFlow {
    pub flow: FlowId,
    pub code: OneTimeCode,
}

impl NewFlow {
    pub fn generate() -> Result<Self> {
        Ok(Self {
            flow: FlowId::generate()?,
            code: OneTimeCode::generate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits_and_spread_over_every_digit() {
        let mut seen = [0u32; 10];
        for _ in 0..2_000 {
            let code = OneTimeCode::generate().unwrap();
            assert_eq!(code.expose().len(), CODE_DIGITS);
            for b in code.expose().bytes() {
                seen[usize::from(b - b'0')] += 1;
            }
        }
        // 16,000 digits: each should appear about 1,600 times.
        assert!(
            seen.iter().all(|&n| (1_200..2_000).contains(&n)),
            "{seen:?}"
        );
    }

    #[test]
    fn typed_codes_forgive_grouping_and_full_width_digits_only() {
        let want = Some("12345678");
        for typed in ["12345678", " 1234 5678 ", "1234-5678", "１２３４５６７８"] {
            assert_eq!(
                OneTimeCode::parse(typed).as_ref().map(OneTimeCode::expose),
                want,
                "{typed}"
            );
        }
        for bad in [
            "1234567",
            "123456789",
            "1234567a",
            "12345678\0",
            "",
            "①２３４５６７８",
        ] {
            assert!(OneTimeCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_code_checks_only_with_its_own_flow() {
        let NewFlow { flow, code } = NewFlow::generate().unwrap();
        let other = FlowId::generate().unwrap();
        let stored = code.hash_for(&flow);
        assert!(code.matches(&flow, &stored));
        assert!(!code.matches(&other, &stored));
        assert!(
            !OneTimeCode::parse("00000000")
                .unwrap()
                .matches(&flow, &stored)
                || code.expose() == "00000000"
        );
        assert_ne!(flow.hash(), stored);
        assert!(FlowId::parse(flow.expose()).is_some());
        assert!(FlowId::parse(&flow.expose()[1..]).is_none());
        assert_eq!(
            format!("{flow:?} {code:?}"),
            "FlowId(<redacted>) OneTimeCode(<redacted>)"
        );
    }
}
