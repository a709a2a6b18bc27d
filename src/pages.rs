//! The server's own pages: the storefront's account pages at `/account/…` and the admin console
//! at `/admin/…`. They are a reference client: every action goes through the public GraphQL API
//! from the browser, exactly as a headless storefront or an admin SPA would.
//!
//! Everything is compiled into the binary: HTML templates (minijinja), one script per area, one
//! stylesheet, and the labels in English, Japanese and Korean (`assets/i18n/*.json`, one file
//! per language, shared by the templates and the scripts). Responses carry a strict
//! Content-Security-Policy (no inline script or style, nothing from other origins) and
//! `Referrer-Policy: no-referrer`, so a reset token in a link never leaks through a Referer.
//!
//! The language is the visitor's choice (`?lang=ja`, remembered in a cookie), else the first
//! supported language of `Accept-Language`, else English.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use domain::customer::Locale;
use minijinja::{Environment, context};
use serde::Deserialize;

/// Only this origin's scripts, styles, API and images (`blob:` images are made by the
/// console's own script: the QR code the API draws for an authenticator app); forms never submit natively (the scripts send
/// them as GraphQL, so a form posted before its script loads goes nowhere rather than putting a
/// password in a URL); DOM-injection sinks need Trusted Types, which the scripts never use.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' blob:; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'";

/// The cookie that remembers a visitor's language choice (a language tag, nothing else).
const LANG_COOKIE: &str = "latchkey_lang";

const LOCALES: [Locale; 3] = [Locale::En, Locale::Ja, Locale::Ko];

/// Which part of the UI a page belongs to: its script and its header.
#[derive(Clone, Copy)]
enum Area {
    Storefront,
    Admin,
}

impl Area {
    fn as_str(self) -> &'static str {
        match self {
            Self::Storefront => "storefront",
            Self::Admin => "admin",
        }
    }
}

/// `(path, template and page id, area)`. The page id is what the area's script dispatches on.
const PAGES: &[(&str, &str, Area)] = &[
    ("/", "index", Area::Storefront),
    ("/account", "account", Area::Storefront),
    ("/account/sign-in", "sign-in", Area::Storefront),
    ("/account/create", "create-account", Area::Storefront),
    (
        "/account/information",
        "account-information",
        Area::Storefront,
    ),
    (
        "/account/forgot-password",
        "forgot-password",
        Area::Storefront,
    ),
    (
        "/account/reset-password",
        "reset-password",
        Area::Storefront,
    ),
    ("/account/confirm-email", "confirm-email", Area::Storefront),
    (
        "/account/cancel-email-change",
        "cancel-email-change",
        Area::Storefront,
    ),
    (
        "/account/release-account",
        "release-account",
        Area::Storefront,
    ),
    ("/account/not-me", "not-me", Area::Storefront),
    ("/account/unlock", "unlock", Area::Storefront),
    ("/admin/sign-in", "admin-sign-in", Area::Admin),
    ("/admin/set-password", "admin-set-password", Area::Admin),
    (
        "/admin/forgot-password",
        "admin-forgot-password",
        Area::Admin,
    ),
    ("/admin/customers", "admin-customers", Area::Admin),
    ("/admin/customers/{id}", "admin-customer", Area::Admin),
    ("/admin/settings", "admin-settings", Area::Admin),
    ("/admin/audit-log", "admin-audit-log", Area::Admin),
    ("/admin/jobs", "admin-jobs", Area::Admin),
    ("/admin/users", "admin-users", Area::Admin),
    ("/admin/security", "admin-security", Area::Admin),
    ("/admin/integrations", "admin-integrations", Area::Admin),
];

/// Static files under `/ui/`: `(name, content type, body)`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "latchkey.css",
        "text/css; charset=utf-8",
        include_str!("../assets/ui/latchkey.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/common.js"),
    ),
    (
        "storefront.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/storefront.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/admin.js"),
    ),
];

fn dictionary_source(locale: Locale) -> &'static str {
    match locale {
        Locale::En => include_str!("../assets/i18n/en.json"),
        Locale::Ja => include_str!("../assets/i18n/ja.json"),
        Locale::Ko => include_str!("../assets/i18n/ko.json"),
    }
}

/// The dictionary sections a page's script reads (`data-messages`): each page carries only
/// those, so the storefront's pages never ship the console's labels. `common` and `policy`
/// (read by the shared script) go with every page; the templates see the whole dictionary,
/// which renders only what they use.
fn script_sections(page: &str) -> &'static [&'static str] {
    match page {
        "sign-in" => &["signin", "forgot"],
        "forgot-password" => &["forgot", "reset"],
        "reset-password" => &["reset"],
        "confirm-email" | "cancel-email-change" | "release-account" => &["email_change"],
        "not-me" => &["email_change", "not_me"],
        "unlock" => &["email_change", "unlock"],
        "account" => &["account"],
        "create-account" => &["create", "signin"],
        "account-information" => &["information", "account"],
        p if p.starts_with("admin-") => &["admin", "reset"],
        _ => &[],
    }
}

struct Dictionary {
    /// For the templates: `t.signin.title` (a minijinja value: cloning it per page is a
    /// reference count, not a copy of every label).
    labels: minijinja::Value,
    /// This language's own name, for the language links.
    name: String,
    /// Per page, the sections its script reads, as JSON (`data-messages` on `<body>`).
    json: std::collections::HashMap<&'static str, String>,
}

pub struct Pages {
    env: Environment<'static>,
    dictionaries: Vec<(Locale, Dictionary)>,
    store: String,
    /// The settings page offers exactly what `updatePasswordSettings` accepts (built once).
    ranges: minijinja::Value,
}

impl Pages {
    pub fn new(store: String) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        // Every page is HTML: escape everything, whatever a template is called.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        macro_rules! template {
            ($($name:literal),* $(,)?) => {
                $(env.add_template(
                    concat!($name, ".html"),
                    include_str!(concat!("../templates/pages/", $name, ".html")),
                )?;)*
            };
        }
        template!(
            "base",
            "index",
            "account",
            "sign-in",
            "create-account",
            "account-information",
            "forgot-password",
            "reset-password",
            "confirm-email",
            "cancel-email-change",
            "release-account",
            "not-me",
            "unlock",
            "admin-sign-in",
            "admin-set-password",
            "admin-forgot-password",
            "admin-customers",
            "admin-customer",
            "admin-settings",
            "admin-audit-log",
            "admin-jobs",
            "admin-users",
            "admin-security",
            "admin-integrations",
            "admin-totp-scan",
            "admin-recovery-codes",
        );
        let dictionaries = LOCALES
            .iter()
            .map(|&locale| {
                let parsed: serde_json::Value = serde_json::from_str(dictionary_source(locale))?;
                let mut json = std::collections::HashMap::new();
                for (_, page, _) in PAGES {
                    let mut subset = serde_json::Map::new();
                    for section in ["common", "policy"]
                        .iter()
                        .chain(script_sections(page).iter())
                    {
                        if let Some(v) = parsed.get(*section) {
                            subset.insert((*section).to_owned(), v.clone());
                        }
                    }
                    json.insert(*page, serde_json::to_string(&subset)?);
                }
                let name = parsed["lang"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let labels = minijinja::Value::from_serialize(&parsed);
                Ok((locale, Dictionary { labels, name, json }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ranges = domain::admin::SETTING_RANGES
            .iter()
            .map(|(name, min, max)| context! { name, min, max })
            .collect::<Vec<_>>();
        Ok(Self {
            env,
            dictionaries,
            store,
            ranges: minijinja::Value::from(ranges),
        })
    }

    fn dictionary(&self, locale: Locale) -> &Dictionary {
        self.dictionaries
            .iter()
            .find(|(l, _)| *l == locale)
            .map_or(&self.dictionaries[0].1, |(_, d)| d)
    }

    fn render(&self, page: &str, area: Area, locale: Locale) -> Result<String, minijinja::Error> {
        let dictionary = self.dictionary(locale);
        let languages: Vec<_> = LOCALES
            .iter()
            .map(|&l| {
                context! {
                    code => l.as_str(),
                    name => self.dictionary(l).name.as_str(),
                }
            })
            .collect();
        self.env
            .get_template(&format!("{page}.html"))?
            .render(context! {
                page,
                area => area.as_str(),
                lang => locale.as_str(),
                languages,
                t => dictionary.labels.clone(),
                messages => dictionary.json.get(page).map_or("{}", String::as_str),
                store => self.store.as_str(),
                ranges => self.ranges.clone(),
            })
    }
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The visitor's language, and whether to remember an explicit choice in the cookie.
fn choose_locale(explicit: Option<&str>, headers: &HeaderMap) -> (Locale, bool) {
    if let Some(locale) = explicit.and_then(Locale::parse) {
        return (locale, true);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LANG_COOKIE)
        .and_then(|(_, value)| Locale::parse(value));
    if let Some(locale) = cookie {
        return (locale, false);
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(preferred_language);
    (accepted.unwrap_or_default(), false)
}

/// The supported language the `Accept-Language` header ranks highest (ties keep header order).
fn preferred_language(header: &str) -> Option<Locale> {
    let mut best: Option<(f32, Locale)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let Some(locale) = parts.next().and_then(Locale::parse) else {
            continue;
        };
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, locale));
        }
    }
    best.map(|(_, locale)| locale)
}

fn secure_headers(response: &mut Response, content_type: &'static str, cache: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
}

fn page_response(
    pages: &Pages,
    page: &str,
    area: Area,
    query: &LangQuery,
    headers: &HeaderMap,
) -> Response {
    let (locale, remember) = choose_locale(query.lang.as_deref(), headers);
    let html = match pages.render(page, area, locale) {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, page, "page template failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = html.into_response();
    secure_headers(&mut response, "text/html; charset=utf-8", "no-store");
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    if remember {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            locale.as_str()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            let mut response = (*body).into_response();
            secure_headers(&mut response, content_type, "no-cache");
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub fn routes<S: Clone + Send + Sync + 'static>(pages: Pages) -> Router<S> {
    let pages = Arc::new(pages);
    let mut router = Router::new()
        .route("/ui/{name}", get(asset))
        .route("/admin", get(|| async { Redirect::to("/admin/customers") }))
        .route(
            "/admin/",
            get(|| async { Redirect::to("/admin/customers") }),
        );
    for &(path, page, area) in PAGES {
        router = router.route(
            path,
            get(
                move |State(pages): State<Arc<Pages>>,
                      Query(query): Query<LangQuery>,
                      headers: HeaderMap| async move {
                    page_response(&pages, page, area, &query, &headers)
                },
            ),
        );
    }
    router.with_state(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                name,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn an_explicit_choice_wins_and_is_remembered() {
        let h = headers(&[
            (header::ACCEPT_LANGUAGE, "ko"),
            (header::COOKIE, "latchkey_lang=en"),
        ]);
        assert_eq!(choose_locale(Some("ja"), &h), (Locale::Ja, true));
        assert_eq!(
            choose_locale(None, &h),
            (Locale::En, false),
            "cookie over header"
        );
        assert_eq!(
            choose_locale(Some("fr"), &h),
            (Locale::En, false),
            "an unsupported choice falls through"
        );
    }

    #[test]
    fn accept_language_quality_orders_the_choice() {
        assert_eq!(
            preferred_language("fr-FR, ko;q=0.8, ja;q=0.9"),
            Some(Locale::Ja)
        );
        assert_eq!(
            preferred_language("ko-KR,ko;q=0.9,en-US;q=0.8"),
            Some(Locale::Ko)
        );
        assert_eq!(preferred_language("ja;q=0, en;q=0.1"), Some(Locale::En));
        assert_eq!(preferred_language("de, fr"), None);
        assert_eq!(preferred_language(""), None);
        let h = headers(&[(header::ACCEPT_LANGUAGE, "de")]);
        assert_eq!(choose_locale(None, &h), (Locale::En, false));
    }

    fn keys(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(map) = value.as_object() {
            for (k, v) in map {
                keys(v, &format!("{prefix}{k}."), out);
            }
        } else {
            out.push(prefix.trim_end_matches('.').to_owned());
        }
    }

    #[test]
    fn every_language_has_every_label() {
        let mut english = Vec::new();
        keys(
            &serde_json::from_str(dictionary_source(Locale::En)).unwrap_or_default(),
            "",
            &mut english,
        );
        assert!(english.len() > 100, "{}", english.len());
        for locale in [Locale::Ja, Locale::Ko] {
            let mut other = Vec::new();
            keys(
                &serde_json::from_str(dictionary_source(locale)).unwrap_or_default(),
                "",
                &mut other,
            );
            assert_eq!(english, other, "{locale:?}");
        }
    }

    #[test]
    fn every_page_renders_in_every_language() {
        let pages = Pages::new("Store".into()).unwrap_or_else(|e| panic!("{e}"));
        for &(_, page, area) in PAGES {
            for locale in LOCALES {
                let html = pages
                    .render(page, area, locale)
                    .unwrap_or_else(|e| panic!("{page} {locale:?}: {e}"));
                assert!(html.contains(&format!("<html lang=\"{}\">", locale.as_str())));
                assert_eq!(
                    html.matches("<script").count(),
                    1,
                    "{page}: one script, not inline"
                );
                assert!(!html.contains("style="), "{page}: no inline style");
                let title = &html[html.find("<title>").map_or(0, |i| i + 7)..];
                let title = &title[..title.find("</title>").unwrap_or(0)];
                assert!(!title.contains('<'), "{page}: markup in the title: {title}");
                // Each id once (a form included twice would be found by neither script nor
                // label).
                let mut ids: Vec<&str> = html
                    .match_indices(" id=\"")
                    .map(|(i, _)| {
                        let rest = &html[i + 5..];
                        &rest[..rest.find('"').unwrap_or(0)]
                    })
                    .collect();
                ids.sort_unstable();
                let before = ids.len();
                ids.dedup();
                assert_eq!(ids.len(), before, "{page}: an id used twice");
                assert!(
                    html.contains("data-messages=\"{&quot;"),
                    "{page}: the labels are an escaped attribute"
                );
            }
        }
    }
}
