//! Access tokens: short JWTs whose `jti` names a session row, signed with the key ring's
//! current Ed25519 key (named by `kid`, public keys published as a JWKS) or, for deployments
//! that have not moved yet, with the legacy HS256 secret.
//!
//! The JWT only says who the bearer claims to be and until when; the session row decides whether
//! the token is still honoured, so revocation is one row update and takes effect on the very
//! next request, even for a token minted and revoked within the same second.
//!
//! The algorithm is never taken from a token: a `kid` names one of the ring's keys and that key's
//! algorithm is the only one tried; a token without a `kid` is a legacy HS256 token, accepted only
//! while the legacy secret is configured and only if it was issued before the first asymmetric
//! key existed (Latchkey itself never signs one after that).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `iss` of every access token.
pub const ISSUER: &str = "latchkey";
/// Bearer values longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 2048;
/// The shortest signing secret accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;
/// A `kid` longer than this names no key of ours (ours are 43 characters).
const MAX_KID_BYTES: usize = 64;

/// Customer and admin tokens carry different audiences, so one can never pass for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Customer,
    Admin,
}

impl TokenKind {
    pub fn audience(self) -> &'static str {
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
    pub session_id: crate::SessionId,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the signing secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("the token is not valid")]
    Invalid,
    #[error("no key can sign a token now")]
    NoSigningKey,
}

/// One Ed25519 key of the ring: its public half, and its private half when this process may
/// sign with it.
pub struct RingKey {
    pub kid: String,
    pub generation: i64,
    /// The raw 32-byte public key.
    pub public: [u8; 32],
    /// The 32-byte seed; `None` for a key that only verifies.
    pub seed: Option<[u8; 32]>,
    /// From when it signs (a rotated key is published first, used later).
    pub signs_from: DateTime<Utc>,
}

impl fmt::Debug for RingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("generation", &self.generation)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

/// The legacy HS256 secret and which of its tokens are still believed.
struct Legacy {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// `None`: HS256 is how this deployment signs. `Some(t)`: only tokens issued before `t`
    /// (when the first asymmetric key was made) verify.
    issued_before: Option<i64>,
}

struct Signer {
    kid: String,
    encoding: EncodingKey,
    signs_from: DateTime<Utc>,
}

/// The keys a process signs and verifies with, swapped whole when the database's change.
pub struct KeyRing {
    /// Newest first.
    signers: Vec<Signer>,
    verifying: HashMap<String, DecodingKey>,
    legacy: Option<Legacy>,
    jwks: String,
    verified: VerifiedCache,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.verifying.keys().collect::<Vec<_>>())
            .field("legacy", &self.legacy.is_some())
            .finish()
    }
}

/// PKCS#8 v1 for an Ed25519 seed (RFC 8410): what the JWT library signs with.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

fn b64(bytes: &[u8]) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A public key's JWK, as published.
pub fn public_jwk(kid: &str, public: &[u8; 32]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": b64(public),
        "kid": kid, "alg": "EdDSA", "use": "sig",
    })
}

/// The RFC 7638 thumbprint of an Ed25519 public key: the `kid` Latchkey gives it, so the name
/// is derived from the key and can be checked by anyone holding the JWKS.
pub fn thumbprint(public: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(public));
    b64(&Sha256::digest(canonical.as_bytes()))
}

impl KeyRing {
    /// A ring of Ed25519 keys (any order), with the legacy secret if one is configured; its
    /// HS256 tokens verify only if issued before the oldest key (`keys` must not be empty).
    pub fn new(mut keys: Vec<RingKey>, legacy_secret: Option<&[u8]>) -> Result<Self, TokenError> {
        keys.sort_by_key(|k| std::cmp::Reverse(k.generation));
        // `iat` has whole seconds: a legacy token from the second the first key was made
        // still counts as issued before it.
        let issued_before = keys.iter().map(|k| k.signs_from.timestamp() + 1).min();
        let legacy = match legacy_secret {
            Some(secret) => Some(legacy(secret, issued_before)?),
            None => None,
        };
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|k| public_jwk(&k.kid, &k.public)).collect::<Vec<_>>()
        })
        .to_string();
        Ok(Self {
            signers: keys
                .iter()
                .filter_map(|k| {
                    Some(Signer {
                        kid: k.kid.clone(),
                        encoding: EncodingKey::from_ed_der(&ed25519_pkcs8(k.seed.as_ref()?)),
                        signs_from: k.signs_from,
                    })
                })
                .collect(),
            verifying: keys
                .iter()
                .map(|k| (k.kid.clone(), DecodingKey::from_ed_der(&k.public)))
                .collect(),
            legacy,
            jwks,
            verified: VerifiedCache::new(),
        })
    }

    /// HS256 only, as before asymmetric keys: signs and verifies with the secret.
    pub fn legacy(secret: &[u8]) -> Result<Self, TokenError> {
        Ok(Self {
            signers: Vec::new(),
            verifying: HashMap::new(),
            legacy: Some(legacy(secret, None)?),
            jwks: r#"{"keys":[]}"#.to_owned(),
            verified: VerifiedCache::new(),
        })
    }

    /// The public keys as a JWKS document (RFC 7517).
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    fn signer(&self, now: DateTime<Utc>) -> Option<&Signer> {
        self.signers.iter().find(|s| s.signs_from <= now)
    }
}

fn legacy(secret: &[u8], issued_before: Option<i64>) -> Result<Legacy, TokenError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(TokenError::WeakSecret);
    }
    Ok(Legacy {
        encoding: EncodingKey::from_secret(secret),
        decoding: DecodingKey::from_secret(secret),
        issued_before,
    })
}

/// Signs and verifies access tokens with the current key ring; every clone sees a ring
/// installed through any of them.
#[derive(Clone)]
pub struct TokenCodec {
    ring: Arc<RwLock<Arc<KeyRing>>>,
    /// Built once: a `Validation` holds hash sets, and the signed-in check runs on every request.
    validations: Arc<Validations>,
}

/// Tokens whose signature and claims verified, by the SHA-256 of the whole token: an Ed25519
/// verification costs ~50 µs and a client sends the same token with every request. A hit
/// still checks the kind and the expiry against `now`; the session row is checked by the
/// caller every time, as before. Bounded (a full shard is emptied). Each ring has its own, so
/// a ring installed without a key (retired) verifies none of that key's tokens from cache,
/// even one a request still verifying against the old ring puts there.
struct VerifiedCache {
    shards: Vec<std::sync::Mutex<Shard>>,
}

type Shard = HashMap<[u8; 32], (TokenKind, VerifiedToken)>;

const CACHE_SHARDS: usize = 16;
const CACHE_PER_SHARD: usize = 4096;

impl VerifiedCache {
    fn new() -> Self {
        Self {
            shards: (0..CACHE_SHARDS)
                .map(|_| std::sync::Mutex::default())
                .collect(),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(key[0]) % CACHE_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &[u8; 32]) -> Option<(TokenKind, VerifiedToken)> {
        self.shard(key).get(key).copied()
    }

    fn insert(&self, key: [u8; 32], kind: TokenKind, token: VerifiedToken) {
        let mut shard = self.shard(&key);
        if shard.len() >= CACHE_PER_SHARD {
            shard.clear();
        }
        shard.insert(key, (kind, token));
    }
}

struct Validations {
    customer_ed: Validation,
    admin_ed: Validation,
    customer_hs: Validation,
    admin_hs: Validation,
}

fn validation(algorithm: Algorithm, kind: TokenKind) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[kind.audience()]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud", "jti"]);
    validation.leeway = 0;
    // Expiry is checked against the domain's clock right after decoding, not the library's
    // reading of the system time: one clock decides, and a server (or a test) on a clock of its
    // own agrees with itself.
    validation.validate_exp = false;
    validation
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCodec(<keys>)")
    }
}

impl TokenCodec {
    /// HS256 with one secret (legacy; and what unit tests use).
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        Ok(Self::with_ring(KeyRing::legacy(secret)?))
    }

    pub fn with_ring(ring: KeyRing) -> Self {
        Self {
            ring: Arc::new(RwLock::new(Arc::new(ring))),
            validations: Arc::new(Validations {
                customer_ed: validation(Algorithm::EdDSA, TokenKind::Customer),
                admin_ed: validation(Algorithm::EdDSA, TokenKind::Admin),
                customer_hs: validation(Algorithm::HS256, TokenKind::Customer),
                admin_hs: validation(Algorithm::HS256, TokenKind::Admin),
            }),
        }
    }

    /// Replaces the ring for every clone of this codec (a rotation, a retirement).
    pub fn install(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn sign(
        &self,
        kind: TokenKind,
        subject: Uuid,
        session_id: crate::SessionId,
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
        let ring = self.ring();
        if let Some(signer) = ring.signer(issued_at) {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(signer.kid.clone());
            return jsonwebtoken::encode(&header, &claims, &signer.encoding)
                .map_err(|_| TokenError::Invalid);
        }
        match &ring.legacy {
            Some(legacy) if legacy.issued_before.is_none() => {
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &legacy.encoding)
                    .map_err(|_| TokenError::Invalid)
            }
            _ => Err(TokenError::NoSigningKey),
        }
    }

    /// A Security Event Token (RFC 8417) with these claims, signed with the key that signs
    /// access tokens now (`kid` in the header, `typ` `secevent+jwt`), so a receiver verifies it
    /// with the public JWKS. A deployment still on the legacy shared secret has no key a
    /// receiver could verify with: `NoSigningKey`.
    pub fn sign_event(
        &self,
        claims: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let ring = self.ring();
        let signer = ring.signer(now).ok_or(TokenError::NoSigningKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        header.typ = Some("secevent+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &signer.encoding).map_err(|_| TokenError::Invalid)
    }

    /// Checks signature, algorithm, issuer, audience and expiry (against `now`, the domain's
    /// clock, alone). Whether the session is still live is for storage to say.
    pub fn verify(
        &self,
        kind: TokenKind,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let digest: [u8; 32] = {
            use sha2::{Digest, Sha256};
            Sha256::digest(token.as_bytes()).into()
        };
        let ring = self.ring();
        if let Some((cached_kind, verified)) = ring.verified.get(&digest) {
            // A token verified for one audience is never the other kind's (the audiences are
            // disjoint): asking for the other kind answers at once, without a second signature
            // check (authentication tries the customer kind first, then the admin kind).
            return if cached_kind == kind && verified.expires_at > now.timestamp() {
                Ok(verified)
            } else {
                Err(TokenError::Invalid)
            };
        }
        let verified = self.verify_uncached(&ring, kind, token, now)?;
        ring.verified.insert(digest, kind, verified);
        Ok(verified)
    }

    fn verify_uncached(
        &self,
        ring: &KeyRing,
        kind: TokenKind,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let v = &self.validations;
        let (key, validation, issued_before) = match header.kid.as_deref() {
            Some(kid) if kid.len() <= MAX_KID_BYTES => {
                let key = ring.verifying.get(kid).ok_or(TokenError::Invalid)?;
                let validation = match kind {
                    TokenKind::Customer => &v.customer_ed,
                    TokenKind::Admin => &v.admin_ed,
                };
                (key, validation, None)
            }
            Some(_) => return Err(TokenError::Invalid),
            None => {
                let legacy = ring.legacy.as_ref().ok_or(TokenError::Invalid)?;
                let validation = match kind {
                    TokenKind::Customer => &v.customer_hs,
                    TokenKind::Admin => &v.admin_hs,
                };
                (&legacy.decoding, validation, legacy.issued_before)
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.exp <= now.timestamp() || issued_before.is_some_and(|t| claims.iat >= t) {
            return Err(TokenError::Invalid);
        }
        let subject = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Invalid)?;
        let session_id = crate::SessionId::parse(&claims.jti).ok_or(TokenError::Invalid)?;
        Ok(VerifiedToken {
            subject,
            session_id,
            issued_at: claims.iat,
            expires_at: claims.exp,
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

    #[test]
    fn a_token_verified_as_one_kind_is_refused_as_the_other_from_the_cache_too() {
        let codec = codec();
        let now = Utc::now();
        let (sub, sid) = (Uuid::now_v7(), crate::SessionId::new());
        let admin = codec
            .sign(TokenKind::Admin, sub, sid, now, now + Duration::hours(1))
            .unwrap();
        for _ in 0..2 {
            assert!(codec.verify(TokenKind::Admin, &admin, now).is_ok());
            assert_eq!(
                codec.verify(TokenKind::Customer, &admin, now),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn expiry_is_judged_by_the_given_clock_not_the_system_time() {
        let codec = codec();
        let issued: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
        let (sub, sid) = (Uuid::now_v7(), crate::SessionId::new());
        let token = codec
            .sign(
                TokenKind::Customer,
                sub,
                sid,
                issued,
                issued + Duration::hours(1),
            )
            .unwrap();
        let during = codec.verify(TokenKind::Customer, &token, issued + Duration::minutes(30));
        assert_eq!(during.map(|v| v.session_id), Ok(sid));
        assert_eq!(
            codec
                .verify(TokenKind::Customer, &token, issued + Duration::hours(1))
                .map(|v| v.session_id),
            Err(TokenError::Invalid)
        );
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
        let (sub, sid) = (Uuid::now_v7(), crate::SessionId::new());
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
                crate::SessionId::from_uuid(Uuid::nil()),
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
                crate::SessionId::from_uuid(Uuid::nil()),
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

    fn ring_key(generation: i64, seed: u8, signs_from: DateTime<Utc>) -> RingKey {
        let seed = [seed; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        RingKey {
            kid: thumbprint(&public),
            generation,
            public,
            seed: Some(seed),
            signs_from,
        }
    }

    fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).unwrap().kid
    }

    #[test]
    fn a_ring_signs_with_its_newest_key_that_may_sign_and_verifies_with_every_key() {
        let now = Utc::now();
        let old = ring_key(1, 1, now - Duration::days(1));
        let next = ring_key(2, 2, now + Duration::minutes(5));
        let (old_kid, next_kid) = (old.kid.clone(), next.kid.clone());
        let codec = TokenCodec::with_ring(KeyRing::new(vec![next, old], None).unwrap());
        let (sub, sid) = (Uuid::now_v7(), crate::SessionId::new());
        let t = codec
            .sign(TokenKind::Customer, sub, sid, now, now + Duration::hours(1))
            .unwrap();
        assert_eq!(kid_of(&t).as_deref(), Some(old_kid.as_str()));
        let later = now + Duration::minutes(6);
        let t2 = codec
            .sign(
                TokenKind::Customer,
                sub,
                sid,
                later,
                later + Duration::hours(1),
            )
            .unwrap();
        assert_eq!(kid_of(&t2).as_deref(), Some(next_kid.as_str()));
        for token in [&t, &t2] {
            let v = codec.verify(TokenKind::Customer, token, later).unwrap();
            assert_eq!((v.subject, v.session_id), (sub, sid));
        }
        let jwks: serde_json::Value = serde_json::from_str(codec.ring().jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(!codec.ring().jwks().contains("\"d\""), "no private part");
    }

    #[test]
    fn an_installed_ring_is_what_every_clone_uses() {
        let now = Utc::now();
        let codec = TokenCodec::with_ring(
            KeyRing::new(vec![ring_key(1, 1, now - Duration::hours(1))], None).unwrap(),
        );
        let clone = codec.clone();
        let t = codec
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        // Verified once (and so remembered), then the key is retired: the ring without it no
        // longer verifies its tokens.
        assert!(codec.verify(TokenKind::Customer, &t, now).is_ok());
        clone.install(KeyRing::new(vec![ring_key(2, 2, now - Duration::hours(1))], None).unwrap());
        assert!(codec.verify(TokenKind::Customer, &t, now).is_err());
    }

    #[test]
    fn legacy_hs256_tokens_verify_only_if_issued_before_the_first_key() {
        let now = Utc::now();
        let legacy = codec();
        let before = legacy
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now - Duration::minutes(10),
                now + Duration::hours(1),
            )
            .unwrap();
        let after = legacy
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        let ring = KeyRing::new(
            vec![ring_key(1, 1, now - Duration::minutes(1))],
            Some(SECRET),
        );
        let codec = TokenCodec::with_ring(ring.unwrap());
        assert!(codec.verify(TokenKind::Customer, &before, now).is_ok());
        assert!(codec.verify(TokenKind::Customer, &after, now).is_err());
        let without = TokenCodec::with_ring(
            KeyRing::new(vec![ring_key(1, 1, now - Duration::minutes(1))], None).unwrap(),
        );
        assert!(without.verify(TokenKind::Customer, &before, now).is_err());
        // And the ring never signs with the secret.
        let t = codec
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        assert!(kid_of(&t).is_some());
    }

    #[test]
    fn a_kid_never_lets_the_token_choose_the_algorithm_or_the_key() {
        let now = Utc::now();
        let key = ring_key(1, 1, now - Duration::hours(1));
        let kid = key.kid.clone();
        let public = key.public;
        let codec = TokenCodec::with_ring(KeyRing::new(vec![key], Some(SECRET)).unwrap());
        // HS256 keyed with the public key, or with the legacy secret, under a real kid.
        for secret in [&public[..], SECRET] {
            let t = forge(json!({"alg": "HS256", "kid": kid}), claims(now), secret);
            assert!(codec.verify(TokenKind::Customer, &t, now).is_err());
        }
        // EdDSA under a kid we do not have, or an absurd one.
        let stranger = TokenCodec::with_ring(
            KeyRing::new(vec![ring_key(1, 9, now - Duration::hours(1))], None).unwrap(),
        );
        let t = stranger
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        assert!(codec.verify(TokenKind::Customer, &t, now).is_err());
        let long = forge(
            json!({"alg": "EdDSA", "kid": "k".repeat(500)}),
            claims(now),
            SECRET,
        );
        assert!(codec.verify(TokenKind::Customer, &long, now).is_err());
    }

    #[test]
    fn a_kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let x: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_keeps_its_kind() {
        let now = Utc::now();
        let codec = TokenCodec::with_ring(
            KeyRing::new(vec![ring_key(1, 1, now - Duration::hours(1))], None).unwrap(),
        );
        let t = codec
            .sign(
                TokenKind::Customer,
                Uuid::nil(),
                crate::SessionId::from_uuid(Uuid::nil()),
                now,
                now + Duration::hours(1),
            )
            .unwrap();
        for _ in 0..2 {
            assert!(codec.verify(TokenKind::Customer, &t, now).is_ok());
            assert!(codec.verify(TokenKind::Admin, &t, now).is_err());
        }
        assert!(
            codec
                .verify(TokenKind::Customer, &t, now + Duration::hours(2))
                .is_err()
        );
        // A byte changed is another token, verified from scratch.
        let mut tampered = t.clone().into_bytes();
        let at = tampered.len() - 10;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(codec.verify(TokenKind::Customer, &tampered, now).is_err());
    }
}
