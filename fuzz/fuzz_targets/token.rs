//! Token verification on arbitrary input: never panics and never accepts anything but a token
//! this codec signed for this audience; a signed token verifies to the same subject and
//! session, only for its own kind, and not once a byte of it is changed.
#![no_main]

use chrono::{Duration, TimeZone, Utc};
use domain::{
    reset::RawResetToken,
    token::{TokenCodec, TokenKind},
};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let codec = TokenCodec::new(SECRET).unwrap();
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    if let Ok(text) = std::str::from_utf8(data) {
        // Arbitrary text is not a token of ours (a forgery would need the secret).
        for kind in [TokenKind::Customer, TokenKind::Admin] {
            assert!(codec.verify(kind, text, now).is_err(), "accepted {text:?}");
        }
        // Reset tokens: whatever parses hashes to 64 hex digits and round-trips.
        if let Some(token) = RawResetToken::parse(text) {
            assert_eq!(token.hash().len(), 64);
            assert_eq!(
                RawResetToken::parse(token.expose()).map(|t| t.hash()),
                Some(token.hash())
            );
        }
    }
    // A real token, then one byte of it changed as the input says.
    if data.len() < 34 {
        return;
    }
    let subject = Uuid::from_slice(&data[..16]).unwrap();
    let session = domain::SessionId::from_uuid(Uuid::from_slice(&data[16..32]).unwrap());
    let token = codec
        .sign(
            TokenKind::Customer,
            subject,
            session,
            now,
            now + Duration::hours(1),
        )
        .unwrap();
    let verified = codec.verify(TokenKind::Customer, &token, now).unwrap();
    assert_eq!((verified.subject, verified.session_id), (subject, session));
    assert!(
        codec.verify(TokenKind::Admin, &token, now).is_err(),
        "audience confusion"
    );
    assert!(
        codec
            .verify(TokenKind::Customer, &token, now + Duration::hours(1))
            .is_err()
    );
    let mut bytes = token.into_bytes();
    let at = usize::from(data[32]) * bytes.len() / 256;
    let replacement = data[33];
    if bytes[at] == replacement {
        return;
    }
    bytes[at] = replacement;
    if let Ok(tampered) = String::from_utf8(bytes) {
        assert!(
            codec.verify(TokenKind::Customer, &tampered, now).is_err(),
            "a changed token verified: {tampered:?}"
        );
    }
});
