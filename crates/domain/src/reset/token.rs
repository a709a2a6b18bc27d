//! Password reset rules: the token, the link it travels in, and the request limits.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::{
    Error, Result,
    email::Email,
    kernel::client::ClientInfo,
    limits::{Check, ClientKey, LimitKey, Rule},
    settings::{LimitMethod, ResetLimit},
};

/// 256 bits from the OS RNG, sent as 43 URL-safe characters.
pub const RESET_TOKEN_BYTES: usize = 32;
const RESET_TOKEN_CHARS: usize = 43;
/// The window "max requests per hour" counts in.
pub const LIMIT_WINDOW: Duration = Duration::hours(1);
/// A request for a reset *link* recorded within this long of a live link's issue sends no new
/// mail and voids nothing: the link just sent still works. A customer who presses the button
/// again gets the mail already on its way; a flood of requests for one address (with the
/// request limits off, or across many addresses' budgets) mails it at most once a minute
/// instead of once per worker round. Requests for a *code* always get their own mail: the code
/// is bound to the browser that asked.
pub const RESEND_AFTER: Duration = Duration::seconds(60);
pub use crate::limits::{FAILURE_WINDOW, MAX_INVALID_LINKS};
const MAX_URL_BYTES: usize = 2048;

/// A reset token as emailed. Only its SHA-256 is ever stored; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawResetToken(String);

impl fmt::Debug for RawResetToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawResetToken(<redacted>)")
    }
}

impl RawResetToken {
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; RESET_TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("OS RNG: {e}")))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts exactly the shape [`generate`](Self::generate) produces; anything else (too long,
    /// NUL bytes, other alphabets) is refused before any storage look-up.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == RESET_TOKEN_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(s.to_owned()))
    }

    /// Hex SHA-256: what storage keeps and looks up by. A plain hash suffices for 256 bits of
    /// entropy (the rule: docs/security.md).
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Builds reset links from configured URLs only (never from the request's Host header).
#[derive(Debug, Clone)]
pub struct ResetLinks {
    template: String,
    allowlist: Vec<String>,
}

impl ResetLinks {
    /// `template` must contain `{token}`; `allowlist` holds URL prefixes `redirectUrl` may
    /// start with.
    pub fn new(template: String, allowlist: Vec<String>) -> std::result::Result<Self, String> {
        if !template.contains("{token}") {
            return Err("the reset link template must contain {token}".into());
        }
        if !(template.starts_with("https://") || template.starts_with("http://")) {
            return Err("the reset link template must be an http(s) URL".into());
        }
        Ok(Self {
            template,
            allowlist,
        })
    }

    /// Accepts `url` only if it is an http(s) URL under an allow-listed prefix, matched at a
    /// boundary: `https://shop.example` admits `https://shop.example/reset` but never
    /// `https://shop.example.evil.com`.
    pub fn check_redirect(&self, url: &str) -> Result<String> {
        let refuse = || Error::bad_input("redirectUrl", "is not an allowed reset URL");
        if url.len() > MAX_URL_BYTES
            || !(url.starts_with("https://") || url.starts_with("http://"))
            || url.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(refuse());
        }
        let allowed = self.allowlist.iter().any(|prefix| {
            url.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#'])
            })
        });
        if allowed {
            Ok(url.to_owned())
        } else {
            Err(refuse())
        }
    }

    /// The link for `token`: the (already checked) redirect URL with a `token` parameter, or
    /// the configured template.
    pub fn build(&self, redirect: Option<&str>, token: &RawResetToken, email: &Email) -> String {
        match redirect {
            Some(url) => {
                let (base, fragment) = match url.split_once('#') {
                    Some((b, f)) => (b, Some(f)),
                    None => (url, None),
                };
                let sep = if base.contains('?') { '&' } else { '?' };
                let mut link = format!("{base}{sep}token={}", token.expose());
                if let Some(f) = fragment {
                    link.push('#');
                    link.push_str(f);
                }
                link
            }
            None => self
                .template
                .replace("{token}", token.expose())
                .replace("{email}", &percent_encode(email.as_str())),
        }
    }
}

/// The placeholder a link template may hold for the customer's language (`en`, `ja`, `ko`). The
/// link is built when the request is queued, before the account is looked up (so the request
/// costs the same whether or not it exists); the mail worker, which knows the recipient's
/// language, fills it in with [`with_locale`].
pub const LOCALE_PLACEHOLDER: &str = "{locale}";

/// `link` with [`LOCALE_PLACEHOLDER`] replaced by the recipient's language.
pub fn with_locale(link: &str, locale: crate::customer::Locale) -> String {
    link.replace(LOCALE_PLACEHOLDER, locale.as_str())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The limits a storefront reset request counts against under `limit`'s method.
pub fn request_checks(limit: &ResetLimit, email: &Email, client: &ClientInfo) -> Vec<Check> {
    let rule = Rule {
        max: limit.max_per_hour,
        window: LIMIT_WINDOW,
        min_interval: limit.min_interval,
    };
    let by_ip = || Check::new(LimitKey::ResetRequestByIp(ClientKey::of(client)), rule);
    let by_email = || Check::new(LimitKey::ResetRequestByEmail(email.key().to_owned()), rule);
    match limit.method {
        LimitMethod::ByIpAndEmail => vec![by_ip(), by_email()],
        LimitMethod::ByIp => vec![by_ip()],
        LimitMethod::ByEmail => vec![by_email()],
        LimitMethod::Off => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_url_safe_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = RawResetToken::generate().unwrap();
            assert_eq!(t.expose().len(), 43);
            assert!(RawResetToken::parse(t.expose()).is_some());
            assert!(seen.insert(t.expose().to_owned()));
        }
    }

    #[test]
    fn only_the_generated_shape_parses() {
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &"a".repeat(1 << 20),
            &format!("{}\u{0}", "a".repeat(42)),
            &format!("{}+", "a".repeat(42)),
            "' OR 1=1--",
        ] {
            assert!(RawResetToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex_and_never_the_token() {
        let t = RawResetToken::parse(&"a".repeat(43)).unwrap();
        let h = t.hash();
        assert_eq!(h.len(), 64);
        // The known answer (Python: hashlib.sha256(b"a" * 43).hexdigest()).
        assert_eq!(
            h,
            "66d34fba71f8f450f7e45598853e53bfc23bbd129027cbb131a2f4ffd7878cd0"
        );
        assert!(!h.contains(t.expose()));
        assert_eq!(h, RawResetToken::parse(&"a".repeat(43)).unwrap().hash());
        assert!(!format!("{t:?}").contains("aaaa"));
    }

    fn links() -> ResetLinks {
        ResetLinks::new(
            "https://shop.example/reset?token={token}".into(),
            vec![
                "https://shop.example".into(),
                "https://m.shop.example/account/".into(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn redirects_must_sit_under_an_allowed_prefix_at_a_boundary() {
        let l = links();
        assert!(l.check_redirect("https://shop.example/reset").is_ok());
        assert!(l.check_redirect("https://shop.example").is_ok());
        assert!(l.check_redirect("https://shop.example?x=1").is_ok());
        assert!(
            l.check_redirect("https://m.shop.example/account/reset")
                .is_ok()
        );
        for bad in [
            "https://shop.example.evil.com/reset",
            "https://shop.examplex/reset",
            "https://evil.example/https://shop.example",
            "javascript:alert(1)",
            "https://shop.example/\r\nX: y",
            "https://m.shop.example/other",
        ] {
            assert!(l.check_redirect(bad).is_err(), "{bad}");
        }
        let none = ResetLinks::new("https://x/{token}".into(), vec![]).unwrap();
        assert!(none.check_redirect("https://shop.example/reset").is_err());
    }

    #[test]
    fn links_carry_the_token_in_a_token_parameter() {
        let l = links();
        let t = RawResetToken::generate().unwrap();
        let e = Email::parse("a+b@example.com").unwrap();
        assert_eq!(
            l.build(None, &t, &e),
            format!("https://shop.example/reset?token={}", t.expose())
        );
        assert_eq!(
            l.build(Some("https://shop.example/r?lang=ja#top"), &t, &e),
            format!("https://shop.example/r?lang=ja&token={}#top", t.expose())
        );
        let with_email = ResetLinks::new("https://s/r?t={token}&e={email}".into(), vec![]).unwrap();
        assert!(
            with_email
                .build(None, &t, &e)
                .ends_with("&e=a%2Bb%40example.com")
        );
        assert!(ResetLinks::new("https://s/r".into(), vec![]).is_err());
    }

    #[test]
    fn reset_requests_count_by_the_method_and_the_normalised_email() {
        let e = Email::parse(" Victim@Example.COM ").unwrap();
        let client = ClientInfo::new("1.2.3.4".parse().ok(), None);
        let keys = |m| {
            let limit = ResetLimit {
                method: m,
                ..ResetLimit::default()
            };
            request_checks(&limit, &e, &client)
                .into_iter()
                .map(|c| c.key.storage_key())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(LimitMethod::ByIpAndEmail),
            vec!["reset:ip:1.2.3.4", "reset:email:victim@example.com"]
        );
        assert_eq!(keys(LimitMethod::ByEmail).len(), 1);
        assert!(keys(LimitMethod::Off).is_empty());
        let default = request_checks(&ResetLimit::default(), &e, &client);
        assert_eq!(default[0].rule.max, 5);
        assert_eq!(default[0].rule.min_interval, Duration::minutes(10));
    }

    #[test]
    fn the_locale_placeholder_is_filled_in_for_the_recipient() {
        let links =
            ResetLinks::new("https://s/r?token={token}&lang={locale}".into(), vec![]).unwrap();
        let token = RawResetToken::generate().unwrap();
        let email = Email::parse("a@example.com").unwrap();
        let link = links.build(None, &token, &email);
        assert!(link.ends_with("&lang={locale}"), "{link}");
        let ja = with_locale(&link, crate::customer::Locale::Ja);
        assert_eq!(ja, format!("https://s/r?token={}&lang=ja", token.expose()));
        assert_eq!(
            with_locale("https://s/r?t=x", crate::customer::Locale::Ko),
            "https://s/r?t=x"
        );
    }
}
