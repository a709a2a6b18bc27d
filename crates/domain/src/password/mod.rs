//! The password policy: one validator for every path that sets a password (create, change,
//! reset, admin-triggered reset), and the candidate type used when checking a password.
//!
//! Passwords are NFKC-normalised before anything else, so a composed `é` and `e` + U+0301 are the
//! same password; lengths are counted in code points of the normalised text; nothing is ever
//! truncated.

pub mod hasher;
pub mod stored_hash;

use std::{fmt, sync::OnceLock};

use unicode_normalization::UnicodeNormalization;

pub use crate::kernel::violation::PolicyViolation;

/// Inputs longer than this (in bytes, before any other work) are refused outright: the hasher
/// never sees them and the validator never walks them.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest password the policy accepts, in code points. NIST and ASVS ask for at least 64.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The configurable part of the policy (admin-editable settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in code points. Source documents: 6.
    pub min_length: u32,
    /// How many of the four classes (lower case, upper case, digit, other) must appear: 0–4.
    pub required_character_classes: u8,
    /// Source documents: passwords may not contain spaces. The hardened profile allows them.
    pub allow_whitespace: bool,
    /// The least zxcvbn strength score (0–4) a new password must reach: 0 turns the estimate
    /// off, 1 (the default) needs more than about 10^3 guesses, 2 more than 10^6, 3 more than
    /// 10^8 (the hardened profile), 4 more than 10^10.
    pub min_score: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 6,
            required_character_classes: 0,
            allow_whitespace: false,
            min_score: DEFAULT_MIN_SCORE,
        }
    }
}

/// zxcvbn score 1: the source documents' six-character passwords (in any script) still pass,
/// while the trivially guessable do not; the hardened profile asks for 3.
pub const DEFAULT_MIN_SCORE: u8 = 1;
/// zxcvbn looks at this many characters at most. Its matching is super-linear in the length
/// (measured, release build: random 16 characters 0.3 ms, 32 characters 1.1 ms, 64 characters
/// 14 ms with outliers of 300 ms, 100 characters 99 ms): scoring whole 256-character inputs
/// would hand anonymous callers a CPU lever. A prefix this long that is hard to guess makes the
/// password hard to guess; a weak prefix refuses the password, as it should
/// (`passwordpasswordpassword…`).
const SCORED_CHARS: usize = 24;

/// A password that passed the policy. Its `Debug` never shows the text.
#[derive(Clone)]
pub struct NewPassword(String);

/// A password typed at sign-in or to confirm a change: normalised like a new one, but not held
/// to the policy (the policy may have changed since it was set). The bytes as typed are kept
/// too: a hash imported from another platform was made from those, not from our NFKC form
/// (full-width Japanese input, for one, normalises to different bytes).
#[derive(Clone)]
pub struct PasswordCandidate {
    normalized: String,
    typed: String,
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

impl fmt::Debug for PasswordCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordCandidate(<redacted>)")
    }
}

impl NewPassword {
    /// Checks `raw` against `policy`. `personal` holds words the password must not contain
    /// (the email's local part, the customer's names); entries shorter than 4 characters are
    /// ignored so a name like "Li" does not forbid half the dictionary. `personal` and
    /// `context` (the store's name) are also given to the strength estimator, which counts a
    /// password built from them as easy to guess.
    pub fn parse(
        raw: &str,
        policy: &PasswordPolicy,
        personal: &[&str],
        context: &[&str],
    ) -> Result<Self, Vec<PolicyViolation>> {
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(vec![PolicyViolation::TooLong {
                max: MAX_PASSWORD_CHARS,
            }]);
        }
        let normalized: String = raw.nfkc().collect();
        let mut violations = Vec::new();
        let length = normalized.chars().count();
        if length < policy.min_length as usize {
            violations.push(PolicyViolation::TooShort {
                min: policy.min_length,
            });
        }
        if length > MAX_PASSWORD_CHARS {
            violations.push(PolicyViolation::TooLong {
                max: MAX_PASSWORD_CHARS,
            });
        }
        if normalized.chars().any(char::is_control) {
            violations.push(PolicyViolation::ContainsControlCharacter);
        }
        if !policy.allow_whitespace && normalized.chars().any(char::is_whitespace) {
            violations.push(PolicyViolation::ContainsWhitespace);
        }
        if character_classes(&normalized) < policy.required_character_classes.min(4) {
            violations.push(PolicyViolation::MissingCharacterClasses {
                required: policy.required_character_classes.min(4),
            });
        }
        let folded = normalized.to_lowercase();
        if is_common(&folded) {
            violations.push(PolicyViolation::Common);
        }
        if personal.iter().any(|word| {
            let word = word.trim().to_lowercase();
            word.chars().count() >= 4 && folded.contains(&word)
        }) {
            violations.push(PolicyViolation::ContainsPersonalInformation);
        }
        // Only worth estimating when nothing else is wrong (and it is the costly check).
        if violations.is_empty() && policy.min_score > 0 {
            let scored: String = normalized.chars().take(SCORED_CHARS).collect();
            // zxcvbn matches user inputs as whole tokens: give it each word and the words run
            // together ("Acme Boutique" → acme, boutique, acmeboutique).
            let mut inputs: Vec<String> = Vec::new();
            for phrase in personal.iter().chain(context) {
                let words: Vec<String> = phrase
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(str::to_lowercase)
                    .collect();
                inputs.push(words.concat());
                inputs.extend(words);
            }
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let score = u8::from(zxcvbn::zxcvbn(&scored, &inputs).score());
            if score < policy.min_score.min(4) {
                violations.push(PolicyViolation::TooWeak {
                    min_score: policy.min_score.min(4),
                });
            }
        }
        if violations.is_empty() {
            Ok(Self(normalized))
        } else {
            Err(violations)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PasswordCandidate {
    /// `None` when the input is empty or over the byte bound: no password Latchkey would
    /// accept can match it (an imported hash of the empty password must not sign in with
    /// `""`).
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.len() <= MAX_PASSWORD_BYTES).then(|| Self {
            normalized: raw.nfkc().collect(),
            typed: raw.to_owned(),
        })
    }

    /// The NFKC form, which Latchkey's own hashes are made from.
    pub fn expose(&self) -> &str {
        &self.normalized
    }

    /// Whether the password is on the breached list (or a decorated or trivial form of an
    /// entry): the list that refuses it as a new password. Asked only after it was verified.
    pub fn is_breached(&self) -> bool {
        is_common(&self.normalized.to_lowercase())
    }

    /// The password exactly as typed, for hashes imported from other platforms.
    pub fn expose_typed(&self) -> &str {
        &self.typed
    }
}

fn character_classes(s: &str) -> u8 {
    let (mut lower, mut upper, mut digit, mut other) = (false, false, false, false);
    for c in s.chars() {
        if c.is_lowercase() {
            lower = true;
        } else if c.is_uppercase() {
            upper = true;
        } else if c.is_numeric() {
            digit = true;
        } else {
            other = true;
        }
    }
    [lower, upper, digit, other]
        .iter()
        .map(|b| u8::from(*b))
        .sum()
}

/// The breached-password list (about 108,000 entries, see its header for source and licence),
/// compiled in and kept sorted, so a look-up is a binary search over borrowed lines.
const BREACHED: &str = include_str!("breached-passwords.txt");

fn breached_list() -> &'static [&'static str] {
    static LIST: OnceLock<Vec<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        BREACHED
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Listed passwords, a listed password dressed up with digits and symbols before or after it
/// (`password123456789`, `Dragon2026!`, `!!monkey`), and the trivial shapes no list
/// enumerates completely: one repeated character, or a run of consecutive digits/letters
/// (`234567`, `abcdefg`).
fn is_common(folded: &str) -> bool {
    let listed = |s: &str| breached_list().binary_search(&s).is_ok();
    if listed(folded) {
        return true;
    }
    let decoration = |c: char| c.is_ascii_digit() || c.is_ascii_punctuation();
    let base = folded.trim_matches(decoration);
    if base != folded && base.chars().count() >= 4 && listed(base) {
        return true;
    }
    let chars: Vec<char> = folded.chars().collect();
    if chars.len() < 2 {
        return false;
    }
    let repeated = chars.iter().all(|c| *c == chars[0]);
    let ascending = chars
        .windows(2)
        .all(|w| (w[1] as u32).checked_sub(w[0] as u32) == Some(1));
    let descending = chars
        .windows(2)
        .all(|w| (w[0] as u32).checked_sub(w[1] as u32) == Some(1));
    repeated || ascending || descending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<NewPassword, Vec<PolicyViolation>> {
        NewPassword::parse(raw, &PasswordPolicy::default(), &[], &[])
    }

    #[test]
    fn six_characters_without_spaces_pass_the_default_policy() {
        assert!(check("kx7!qz").is_ok());
        assert_eq!(
            check("kx7!q").unwrap_err(),
            vec![PolicyViolation::TooShort { min: 6 }]
        );
    }

    #[test]
    fn whitespace_of_every_kind_is_refused_by_default() {
        for ws in [
            ' ', '\t', '\u{a0}', '\u{3000}', '\u{2003}', '\u{2028}', '\u{85}',
        ] {
            let pw = format!("kx7{ws}qzmw");
            let err = check(&pw).unwrap_err();
            assert!(
                err.contains(&PolicyViolation::ContainsWhitespace),
                "{:?} should be refused",
                ws
            );
        }
    }

    #[test]
    fn the_hardened_profile_allows_spaces() {
        let policy = PasswordPolicy {
            min_length: 15,
            allow_whitespace: true,
            ..PasswordPolicy::default()
        };
        assert!(NewPassword::parse("correct horse battery staple", &policy, &[], &[]).is_ok());
        assert!(NewPassword::parse("short one", &policy, &[], &[]).is_err());
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        let err = check("abc\u{0}defghijklmnop").unwrap_err();
        assert!(err.contains(&PolicyViolation::ContainsControlCharacter));
        assert!(check("abc\u{1b}[31mdefg").is_err());
    }

    #[test]
    fn unicode_counts_code_points_and_normalises() {
        // 6 code points, 18 bytes.
        assert!(check("パスワード鍵").is_ok());
        // Composed and decomposed forms are one password.
        let composed = check("caf\u{e9}-latte").unwrap();
        let decomposed = check("cafe\u{301}-latte").unwrap();
        assert_eq!(composed.expose(), decomposed.expose());
        let candidate = PasswordCandidate::parse("cafe\u{301}-latte").unwrap();
        assert_eq!(candidate.expose(), composed.expose());
    }

    #[test]
    fn long_passwords_are_kept_whole_and_over_long_ones_refused() {
        let p256 = "x7".repeat(128);
        assert_eq!(check(&p256).unwrap().expose().len(), 256);
        let p257 = format!("{p256}y");
        assert_eq!(
            check(&p257).unwrap_err(),
            vec![PolicyViolation::TooLong { max: 256 }]
        );
        let megabyte = "a".repeat(1 << 20);
        assert_eq!(
            check(&megabyte).unwrap_err(),
            vec![PolicyViolation::TooLong { max: 256 }]
        );
        assert!(PasswordCandidate::parse(&megabyte).is_none());
        assert!(PasswordCandidate::parse("").is_none());
    }

    #[test]
    fn the_breached_list_is_large_sorted_and_searchable() {
        let list = breached_list();
        assert!(list.len() >= 100_000, "{} entries", list.len());
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "the list must stay sorted (and free of duplicates) for binary search"
        );
        // Well past the old hand list of 229: entries a shorter list would miss.
        for pw in [
            "sunshine1",
            "trustno1",
            "letmein123",
            "dragon12",
            "1q2w3e4r5t",
        ] {
            assert!(is_common(pw), "{pw} is on every breach list");
        }
    }

    #[test]
    fn a_listed_password_with_digits_or_symbols_around_it_is_still_listed() {
        // Not on the list itself (an exact match misses it).
        assert!(!breached_list().contains(&"password123456789"));
        for pw in [
            "password123456789",
            "Dragon2026!",
            "!!monkey!!",
            "Passw0rd!",
        ] {
            assert!(
                check(pw).unwrap_err().contains(&PolicyViolation::Common),
                "{pw} should be refused"
            );
        }
        // A base that is not on the list, or too short to mean anything, stays allowed.
        assert!(check("kx7!qzmw2026").is_ok());
        assert!(check("42-ab-42").is_ok());
    }

    #[test]
    fn the_strength_estimate_uses_the_store_name_and_its_minimum_is_a_setting() {
        let policy = PasswordPolicy::default();
        // Built from the store's name: guessable (score 1 with it, 3 without).
        let store = ["Acme Boutique"];
        let two = PasswordPolicy {
            min_score: 2,
            ..policy.clone()
        };
        let err = NewPassword::parse("acmeboutique2026", &two, &[], &store).unwrap_err();
        assert_eq!(err, vec![PolicyViolation::TooWeak { min_score: 2 }]);
        assert!(NewPassword::parse("acmeboutique2026", &two, &[], &[]).is_ok());
        // The hardened profile's minimum refuses what the default lets through.
        let hardened = PasswordPolicy {
            min_score: 3,
            ..policy.clone()
        };
        assert!(check("kx7!qzmw").is_ok());
        assert_eq!(
            NewPassword::parse("kx7!qzmw", &hardened, &[], &[]).unwrap_err(),
            vec![PolicyViolation::TooWeak { min_score: 3 }]
        );
        assert!(NewPassword::parse("olive-tree-lantern-9", &hardened, &[], &[]).is_ok());
        // 0 turns the estimate off; the list still applies.
        let off = PasswordPolicy {
            min_score: 0,
            ..policy
        };
        assert!(NewPassword::parse("aaaaaaab", &off, &[], &[]).is_ok());
        assert!(check("aaaaaaab").is_err());
        assert!(NewPassword::parse("password1", &off, &[], &[]).is_err());
    }

    #[test]
    fn common_passwords_are_refused_whatever_the_case() {
        for pw in [
            "password",
            "PASSWORD1",
            "qwerty123",
            "iloveyou",
            "123456789",
        ] {
            assert!(
                check(pw).unwrap_err().contains(&PolicyViolation::Common),
                "{pw} should be refused"
            );
        }
    }

    #[test]
    fn trivial_sequences_and_repeats_are_refused() {
        for pw in ["aaaaaaaa", "234567", "abcdefghij", "987654", "zyxwvu"] {
            assert!(
                check(pw).unwrap_err().contains(&PolicyViolation::Common),
                "{pw} should be refused"
            );
        }
    }

    #[test]
    fn personal_information_is_refused() {
        let err = NewPassword::parse(
            "Tanaka2026",
            &PasswordPolicy::default(),
            &["tanaka", "Li"],
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains(&PolicyViolation::ContainsPersonalInformation),
            "{err:?}"
        );
        // Short names do not forbid everything that contains them.
        assert!(
            NewPassword::parse(
                "olive-tree-lantern",
                &PasswordPolicy::default(),
                &["Li"],
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn character_classes_are_counted() {
        let policy = PasswordPolicy {
            required_character_classes: 3,
            ..PasswordPolicy::default()
        };
        assert!(NewPassword::parse("Kx7qzmw", &policy, &[], &[]).is_ok());
        assert_eq!(
            NewPassword::parse("kx7qzmw", &policy, &[], &[]).unwrap_err(),
            vec![PolicyViolation::MissingCharacterClasses { required: 3 }]
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let err = check("a b").unwrap_err();
        assert!(err.contains(&PolicyViolation::TooShort { min: 6 }));
        assert!(err.contains(&PolicyViolation::ContainsWhitespace));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let p = check("kx7!qzmw").unwrap();
        assert!(!format!("{p:?}").contains("kx7"));
    }
}
