//! The password policy on arbitrary input: never panics; an accepted password is NFKC
//! normalised, within the length bounds, free of control characters, and accepted again as
//! is (normalisation is idempotent); a candidate for sign-in normalises the same way.
#![no_main]

use domain::password::{NewPassword, PasswordCandidate, PasswordPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // The first line, if any, is a "personal word" (a name or the email's local part).
    let (personal, raw) = input.split_once('\n').unwrap_or(("", input));
    let policy = PasswordPolicy::default();
    match NewPassword::parse(raw, &policy, &[personal], &[]) {
        Ok(password) => {
            let normalized = password.expose();
            let chars = normalized.chars().count();
            assert!(
                chars >= policy.min_length as usize && chars <= 256,
                "{chars}"
            );
            assert!(!normalized.chars().any(char::is_control));
            let again = NewPassword::parse(normalized, &policy, &[personal], &[])
                .expect("an accepted password is accepted again");
            assert_eq!(again.expose(), normalized);
            let candidate = PasswordCandidate::parse(raw).expect("within the byte bound");
            assert_eq!(
                candidate.expose(),
                normalized,
                "sign-in normalises the same way"
            );
        }
        Err(violations) => assert!(!violations.is_empty()),
    }
});
