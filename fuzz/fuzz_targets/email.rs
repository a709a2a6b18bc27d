//! `Email::parse` on arbitrary input: never panics; whatever it accepts is safe in an SMTP
//! header (no CR, LF or other control characters, no quotes, angle brackets or commas), has
//! exactly one `@` with a non-empty local part and domain, round-trips through `parse`, and
//! has a key that is its lower-case form.
#![no_main]

use domain::email::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(email) = Email::parse(input) else {
        return;
    };
    let address = email.as_str();
    assert!(
        !address.chars().any(char::is_control),
        "control char in {address:?}"
    );
    assert!(
        !address.contains(['\r', '\n', '"', '<', '>', ',']),
        "{address:?}"
    );
    assert_eq!(address.matches('@').count(), 1, "{address:?}");
    let (local, domain) = address.split_once('@').unwrap();
    assert!(!local.is_empty() && !domain.is_empty(), "{address:?}");
    assert_eq!(
        address,
        address.trim(),
        "surrounding whitespace kept: {address:?}"
    );
    assert!(address.len() <= 254, "too long: {}", address.len());
    assert_eq!(email.key(), address.to_lowercase());
    let again = Email::parse(address).expect("an accepted address parses again");
    assert_eq!(again.as_str(), address);
    assert_eq!(again.key(), email.key());
});
