//! Access tokens: short HS256 JWTs whose `jti` names a session row.
//!
//! The JWT only says who the bearer claims to be and until when; the session row decides whether
//! the token is still honoured, so revocation is one row update and takes effect on the very
//! next request, even for a token minted and revoked within the same second.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "latchkey";
/// Bearer values longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 2048;
/// The shortest signing secret accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// Customer and admin tokens carry different audiences, so one can never pass for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Customer,
    Admin,
}

impl TokenKind {
    fn audience(self) -> &'static str {
        match self {
            Self::Customer => "latchkey:customer",
            Self::Admin => "latchkey:admin",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    iat: i64,
    exp: i64,
}

/// What a verified token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: Uuid,
    pub session_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the signing secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("the token is not valid")]
    Invalid,
}

/// Signs and verifies access tokens with one pinned algorithm.
#[derive(Clone)]
pub struct TokenCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: a `Validation` holds hash sets, and the signed-in check runs on every request.
    customer: Validation,
    admin: Validation,
}

fn validation(kind: TokenKind) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[kind.audience()]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud", "jti"]);
    validation.leeway = 0;
    validation
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCodec(<secret>)")
    }
}

impl TokenCodec {
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(TokenError::WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            customer: validation(TokenKind::Customer),
            admin: validation(TokenKind::Admin),
        })
    }

    pub fn sign(
        &self,
        kind: TokenKind,
        subject: Uuid,
        session_id: Uuid,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: kind.audience().to_owned(),
            sub: subject.to_string(),
            jti: session_id.to_string(),
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Checks signature, algorithm, issuer, audience and expiry (against `now` and the wall
    /// clock). Whether the session is still live is for storage to say.
    pub fn verify(
        &self,
        kind: TokenKind,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let validation = match kind {
            TokenKind::Customer => &self.customer,
            TokenKind::Admin => &self.admin,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.header.kid.is_some() {
            return Err(TokenError::Invalid);
        }
        let claims = data.claims;
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Invalid);
        }
        let subject = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Invalid)?;
        let session_id = Uuid::parse_str(&claims.jti).map_err(|_| TokenError::Invalid)?;
        Ok(VerifiedToken {
            subject,
            session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use chrono::Duration;
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn codec() -> TokenCodec {
        TokenCodec::new(SECRET).unwrap()
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{h}.{c}");
        let sig = hmac_sha256(secret, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    // A tiny HMAC so forged tokens do not depend on the library under test.
    fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::digest([ipad.as_slice(), msg].concat());
        let inner: Vec<u8> = inner.to_vec();
        Sha256::digest([opad.as_slice(), inner.as_slice()].concat()).to_vec()
    }

    fn claims(now: DateTime<Utc>) -> serde_json::Value {
        json!({
            "iss": "latchkey", "aud": "latchkey:customer",
            "sub": Uuid::nil().to_string(), "jti": Uuid::nil().to_string(),
            "iat": now.timestamp(), "exp": (now + Duration::hours(1)).timestamp()
        })
    }

    #[test]
    fn a_signed_token_round_trips() {
        let now = Utc::now();
        let (sub, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let t = codec()
            .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
            .unwrap();
        let v = codec().verify(TokenKind::Customer, &t, now).unwrap();
        assert_eq!((v.subject, v.session_id), (sub, sid));
    }

    #[test]
    fn the_forging_helper_produces_tokens_the_codec_accepts() {
        let now = Utc::now();
        let t = forge(json!({"alg": "HS256", "typ": "JWT"}), claims(now), SECRET);
        assert!(codec().verify(TokenKind::Customer, &t, now).is_ok());
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(
            TokenCodec::new(b"short").unwrap_err(),
            TokenError::WeakSecret
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let now = Utc::now();
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
        let c = URL_SAFE_NO_PAD.encode(claims(now).to_string());
        assert!(
            codec()
                .verify(TokenKind::Customer, &format!("{h}.{c}."), now)
                .is_err()
        );
    }

    #[test]
    fn other_algorithms_and_wrong_keys_are_refused() {
        let now = Utc::now();
        let hs512 = forge(json!({"alg": "HS512"}), claims(now), SECRET);
        assert!(codec().verify(TokenKind::Customer, &hs512, now).is_err());
        let wrong_key = forge(
            json!({"alg": "HS256"}),
            claims(now),
            b"another-secret-another-secret-xx",
        );
        assert!(
            codec()
                .verify(TokenKind::Customer, &wrong_key, now)
                .is_err()
        );
        let with_kid = forge(
            json!({"alg": "HS256", "kid": "../../etc/passwd"}),
            claims(now),
            SECRET,
        );
        assert!(codec().verify(TokenKind::Customer, &with_kid, now).is_err());
    }

    #[test]
    fn expired_missing_or_mistyped_claims_are_refused() {
        let now = Utc::now();
        let mut expired = claims(now);
        expired["exp"] = json!((now - Duration::seconds(1)).timestamp());
        let mut no_exp = claims(now);
        no_exp.as_object_mut().unwrap().remove("exp");
        let mut string_exp = claims(now);
        string_exp["exp"] = json!((now + Duration::hours(1)).timestamp().to_string());
        let mut no_iat = claims(now);
        no_iat.as_object_mut().unwrap().remove("iat");
        let mut wrong_iss = claims(now);
        wrong_iss["iss"] = json!("someone-else");
        for c in [expired, no_exp, string_exp, no_iat, wrong_iss] {
            let t = forge(json!({"alg": "HS256"}), c.clone(), SECRET);
            assert!(codec().verify(TokenKind::Customer, &t, now).is_err(), "{c}");
        }
    }

    #[test]
    fn expiry_follows_the_injected_clock_too() {
        let now = Utc::now();
        let t = codec()
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                Uuid::nil(),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        let later = now + Duration::hours(2);
        assert!(codec().verify(TokenKind::Customer, &t, later).is_err());
    }

    #[test]
    fn a_customer_token_is_not_an_admin_token() {
        let now = Utc::now();
        let t = codec()
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                Uuid::nil(),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        assert!(codec().verify(TokenKind::Admin, &t, now).is_err());
    }

    #[test]
    fn garbage_and_huge_tokens_are_refused() {
        let now = Utc::now();
        for t in ["", "abc", "a.b.c", "\u{0}", &"x".repeat(1 << 20)] {
            assert!(codec().verify(TokenKind::Customer, t, now).is_err());
        }
    }
}
