//! Time-based one-time passwords (RFC 6238) as every authenticator app computes them: HMAC-SHA1,
//! 6 digits, 30-second steps, a 160-bit secret. A code is accepted for the step it names and one
//! step either side (clock skew), and a step once used is never accepted again (RFC 6238 §5.2:
//! a code read over someone's shoulder, or replayed from a phishing page, is spent).
//!
//! The arithmetic is `totp-rs`'s; this module fixes the parameters, keeps the secret out of
//! logs, writes the `otpauth://` URI apps read from a QR code, and turns "which step" into the
//! replay rule.

use std::fmt;

use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::{Error, Result};

/// Digits of a code.
pub const TOTP_DIGITS: u8 = 6;
/// Seconds per step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Bytes of a secret (160 bits, RFC 4226's recommendation).
pub const TOTP_SECRET_BYTES: usize = 20;

/// A TOTP secret. Its `Debug` says nothing; it is shown to the admin once, at enrolment, and
/// stored sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    pub fn generate() -> Result<Self> {
        let mut bytes = vec![0u8; TOTP_SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        Ok(Self(bytes))
    }

    /// A secret read back from storage; `None` unless it has the length this module makes.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() == TOTP_SECRET_BYTES).then_some(Self(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The key as an admin types it into an app by hand: RFC 4648 base32, no padding.
    pub fn base32(&self) -> String {
        Secret::from(self.0.clone()).to_base32()
    }

    /// The `otpauth://totp/…` URI an authenticator app reads from a QR code: the store's name
    /// as the issuer (in the label and as a parameter, as Google Authenticator documents it),
    /// the admin's username as the account.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", uri_part(issuer), uri_part(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECONDS}",
            self.base32(),
            uri_part(issuer)
        )
    }

    fn totp(&self) -> Totp {
        codec(Algorithm::SHA1, TOTP_DIGITS, self.0.clone())
    }

    /// The step a typed `code` is right for at `now` (the current step or one either side),
    /// provided it is later than `last_used`, the newest step this secret has accepted. Spaces
    /// between the digits are forgiven. `None` for a wrong, malformed or replayed code.
    pub fn check(&self, code: &str, now: DateTime<Utc>, last_used: Option<u64>) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let time = u64::try_from(now.timestamp()).ok()?;
        let step = self.totp().check(&code, time)?;
        match last_used {
            Some(used) if step <= used => None,
            _ => Some(step),
        }
    }

    /// The code an app shows at `at` (for tests and the bench: the server never shows one).
    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        let time = u64::try_from(at.timestamp()).unwrap_or_default();
        self.totp().generate(time).to_string()
    }
}

fn codec(algorithm: Algorithm, digits: u8, secret: Vec<u8>) -> Totp {
    Builder::new()
        .with_algorithm(algorithm)
        .with_digits(digits)
        .with_skew(1)
        .with_step_duration(TOTP_STEP_SECONDS)
        .with_secret(secret)
        .build_noncompliant()
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for the URI's label and
/// issuer.
fn uri_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().unwrap()
    }

    /// RFC 6238, Appendix B: the reference secrets (ASCII "1234567890" repeated to the hash's
    /// size), 8 digits, 30-second steps.
    #[test]
    fn the_rfc_6238_test_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let vectors: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, want1, want256, want512) in vectors {
            let t = u64::try_from(time).unwrap();
            for (algorithm, secret, want) in [
                (Algorithm::SHA1, &sha1, want1),
                (Algorithm::SHA256, &sha256, want256),
                (Algorithm::SHA512, &sha512, want512),
            ] {
                let code = codec(algorithm, 8, secret.clone()).generate(t).to_string();
                assert_eq!(code, want, "{algorithm:?} at {time}");
            }
        }
    }

    /// The app's parameters on the RFC's SHA-1 secret: the last 6 of the 8 digits.
    #[test]
    fn six_digit_codes_are_the_rfc_codes_truncated() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(secret.code_at(at(59)), "287082");
        assert_eq!(secret.code_at(at(1111111109)), "081804");
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_never_twice() {
        let secret = TotpSecret::generate().unwrap();
        let now = at(1_800_000_000);
        let step = 1_800_000_000 / 30;
        let code = secret.code_at(now);
        assert_eq!(secret.check(&code, now, None), Some(step));
        // Typed with a space, as apps show it ("123 456").
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(secret.check(&spaced, now, None), Some(step));
        // The same step again: a replay.
        assert_eq!(secret.check(&code, now, Some(step)), None);
        // The previous step's code 30 s late, and the next step's 30 s early: clock skew.
        let before = secret.code_at(now - chrono::Duration::seconds(30));
        assert_eq!(secret.check(&before, now, None), Some(step - 1));
        let after = secret.code_at(now + chrono::Duration::seconds(30));
        assert_eq!(secret.check(&after, now, None), Some(step + 1));
        // An older step is spent once a newer one was used.
        assert_eq!(secret.check(&before, now, Some(step)), None);
        // Two steps away is too far.
        let far = secret.code_at(now - chrono::Duration::seconds(60));
        assert!(far == code || secret.check(&far, now, None).is_none());
        assert_eq!(secret.check("12345", now, None), None);
        assert_eq!(secret.check("abcdef", now, None), None);
    }

    #[test]
    fn the_uri_names_the_store_and_the_admin_and_carries_the_key() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            secret.otpauth_uri("Tanaka Shoten", "ann:admin"),
            "otpauth://totp/Tanaka%20Shoten:ann%3Aadmin?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Tanaka%20Shoten&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{secret:?}"), "TotpSecret(<redacted>)");
        assert!(TotpSecret::from_bytes(vec![0; 10]).is_none());
    }
}
