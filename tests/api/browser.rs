//! The pages in a real browser: headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Each test starts its own server, chromedriver
//! and browser sessions, clicks through the screens of the source documents, and saves a
//! screenshot of each to `target/screenshots/` (or `LATCHKEY_SCREENSHOTS`; docs/browser.md's come
//! from `LATCHKEY_SCREENSHOTS=docs/screenshots cargo test browser_`).

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use latchkey::config::Secret;

use crate::{
    bulk::import_customers,
    helpers::{Backend, TestApp, code},
    smtp::SmtpReceiver,
};

crate::tests![
    browser_customer_resets_a_forgotten_password_in_the_storefront,
    browser_a_customer_resets_by_code_in_the_tab_that_asked,
    browser_a_customer_signs_in_with_a_mailed_code,
    browser_a_customer_signs_in_in_japanese_while_their_name_is_under_attack,
    browser_support_unlocks_a_locked_customer_from_the_grid,
    browser_admin_sends_a_reset_and_forces_sign_in,
    browser_viewer_sees_no_reset_or_force_buttons,
    browser_pages_speak_japanese_and_korean_and_work_by_keyboard,
    browser_admin_runs_bulk_actions_and_follows_their_jobs,
    browser_email_change_links_confirm_and_undo_only_on_a_click,
    browser_an_invited_admin_sets_a_password_and_signs_in,
    browser_an_administrator_manages_admin_users,
    browser_an_administrator_deletes_a_customer_after_confirming,
    browser_a_newcomer_creates_an_account_edits_it_and_deletes_it,
    browser_an_admin_adds_an_authenticator_app_and_signs_in_with_its_codes,
    browser_an_admin_adds_a_passkey_and_signs_in_with_it,
    browser_an_administrator_connects_a_service_to_security_events_in_japanese,
];

const CUSTOMER_PASSWORD: &str = "Storefront-Pass-2026";
const ADMIN_PASSWORD: &str = "Admin-Console-2026";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

fn chromium() -> Option<PathBuf> {
    std::env::var_os("LATCHKEY_TEST_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find_program(&["chromium", "chromium-browser", "google-chrome"]))
}

/// Whether chromedriver and Chromium are installed; the reason when not.
pub fn available() -> Result<(), String> {
    find_program(&["chromedriver"]).ok_or("chromedriver is not on PATH")?;
    chromium().ok_or("chromium is not on PATH")?;
    Ok(())
}

/// One chromedriver process; dropped, it is killed with its browsers.
pub struct Driver {
    _process: Child,
    url: String,
}

impl Driver {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(res) = http.get(format!("{url}/status")).send().await {
                if res.status().is_success() {
                    return Self {
                        _process: process,
                        url,
                    };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not come up on {url}");
    }

    /// A new headless browser with its own profile (cookies, sessionStorage).
    pub async fn browser(&self, language: &str) -> Browser {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium().unwrap(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-extensions",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--lang={language}"),
                ],
                "prefs": {"intl.accept_languages": language},
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session");
        Browser { client }
    }
}

pub struct Browser {
    client: Client,
}

const WAIT: Duration = Duration::from_secs(10);

impl Browser {
    /// Opens a fresh tab of this browser (its own sessionStorage; cookies shared) and makes it
    /// current; the tab that was current, to come back to.
    pub async fn new_tab(&self) -> fantoccini::wd::WindowHandle {
        let before = self.client.window().await.unwrap();
        let tab = self.client.new_window(true).await.unwrap();
        self.client.switch_to_window(tab.handle).await.unwrap();
        before
    }

    /// Closes the current tab and goes back to `to`.
    pub async fn close_tab(&self, to: fantoccini::wd::WindowHandle) {
        self.client.close_window().await.unwrap();
        self.client.switch_to_window(to).await.unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.ready().await;
    }

    /// Waits until the page's script has finished its first load (`data-ready` on `<body>`).
    pub async fn ready(&self) {
        let started = std::time::Instant::now();
        loop {
            let ready = self
                .client
                .execute(
                    "return document.readyState === 'complete' && document.body && document.body.dataset.ready === 'true';",
                    vec![],
                )
                .await
                .unwrap_or(Value::Bool(false));
            if ready == Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "page never became ready: {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.url().await),
        }
    }

    /// How many elements match (0 when there are none; no waiting).
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Waits until `script` (a JavaScript expression) is true on the page.
    pub async fn wait_until(&self, script: &str) {
        let started = std::time::Instant::now();
        loop {
            let value = self
                .client
                .execute(&format!("return Boolean({script});"), vec![])
                .await
                .unwrap_or(Value::Bool(false));
            if value == Value::Bool(true) {
                return;
            }
            assert!(started.elapsed() < WAIT, "never true: {script}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of a JavaScript expression on the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(&format!("return {script};"), vec![])
            .await
            .unwrap()
    }

    /// Sends keys to the focused element ("\u{e007}" is Enter, "\u{e013}" ArrowUp).
    pub async fn keys(&self, keys: &str) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys(keys).await.unwrap();
    }

    /// Checks the grid row of the customer with this address.
    pub async fn check_row(&self, email: &str) {
        let xpath = format!(
            "//table[@id='grid']//tr[td[normalize-space(.)={}]]//input[@data-select]",
            xpath_literal(email)
        );
        self.click_located(Locator::XPath(&xpath), &format!("the row for {email}"))
            .await;
    }

    /// Chooses an option of a `<select>` by its value.
    pub async fn choose(&self, select: &str, value: &str) {
        self.click(&format!("{select} option[value='{value}']"))
            .await;
    }

    /// Whether an element is displayed (present and not hidden).
    pub async fn visible(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.is_displayed().await.unwrap(),
            Err(_) => false,
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Clicks the element `locator` finds (waiting for it); found again if the page
    /// re-rendered it between finding and clicking (a table redrawn by its own refresh), which
    /// WebDriver reports as a stale reference.
    async fn click_located(&self, locator: Locator<'_>, what: &str) {
        for _ in 0..20 {
            let element = self
                .client
                .wait()
                .at_most(WAIT)
                .for_element(locator)
                .await
                .unwrap_or_else(|e| panic!("no {what}: {e}"));
            match element.click().await {
                Ok(_) => return,
                Err(e) if e.to_string().contains("stale element") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking {what}: {e}"),
            }
        }
        panic!("{what} went stale 20 times in a row");
    }

    pub async fn click(&self, css: &str) {
        self.click_located(Locator::Css(css), css).await;
    }

    /// Clicks the link or button whose visible text is `text`.
    pub async fn click_text(&self, text: &str) {
        let xpath = format!(
            "//*[self::a or self::button][normalize-space(.)={}]",
            xpath_literal(text)
        );
        self.click_located(
            Locator::XPath(&xpath),
            &format!("a link or button {text:?}"),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the element's text contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let started = std::time::Instant::now();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                let text = e.text().await.unwrap_or_default();
                if text.contains(needle) {
                    return text;
                }
                assert!(
                    started.elapsed() < WAIT,
                    "{css} never said {needle:?}; it says {text:?}"
                );
            } else {
                assert!(started.elapsed() < WAIT, "no {css}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the address is `path` on this server.
    pub async fn wait_path(&self, path: &str) {
        let started = std::time::Instant::now();
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.path() == path {
                self.ready().await;
                return;
            }
            assert!(started.elapsed() < WAIT, "still on {url}, expected {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The id (or tag) of the focused element.
    pub async fn focused(&self) -> String {
        self.client
            .execute(
                "const e = document.activeElement; return e.id || e.getAttribute('href') || e.tagName;",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn press_tab(&self) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys("\u{e004}").await.unwrap();
    }

    /// Saves a screenshot as `<dir>/<name>.png`.
    pub async fn shot(&self, name: &str) {
        let dir = std::env::var_os("LATCHKEY_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
            });
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        self.client.close().await.ok();
    }

    /// Gives this browser a platform authenticator that makes and uses passkeys (ChromeDriver's
    /// WebAuthn virtual authenticator: a real ceremony in the browser, with a key of its own
    /// and user verification that always succeeds).
    pub async fn add_virtual_authenticator(&self) {
        #[derive(Debug)]
        struct AddAuthenticator;
        impl fantoccini::wd::WebDriverCompatibleCommand for AddAuthenticator {
            fn endpoint(
                &self,
                base: &url::Url,
                session: Option<&str>,
            ) -> Result<url::Url, url::ParseError> {
                base.join(&format!(
                    "session/{}/webauthn/authenticator",
                    session.unwrap_or_default()
                ))
            }
            fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
                (
                    http::Method::POST,
                    Some(
                        json!({
                            "protocol": "ctap2",
                            "transport": "internal",
                            "hasResidentKey": true,
                            "hasUserVerification": true,
                            "isUserConsenting": true,
                            "isUserVerified": true,
                        })
                        .to_string(),
                    ),
                )
            }
        }
        self.client
            .issue_cmd(AddAuthenticator)
            .await
            .expect("ChromeDriver adds a virtual authenticator");
    }
}

fn xpath_literal(text: &str) -> String {
    if text.contains('\'') {
        format!("\"{text}\"")
    } else {
        format!("'{text}'")
    }
}

async fn customer(app: &TestApp, email: &str, locale: &str) {
    named_customer(app, email, locale, "Mai", "Sato").await;
}

async fn named_customer(app: &TestApp, email: &str, locale: &str, first: &str, last: &str) {
    let res = app
        .gql(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
            json!({"i": {"email": email, "firstname": first, "lastname": last, "password": CUSTOMER_PASSWORD, "locale": locale}}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
}

async fn admin(app: &TestApp, username: &str, role: &str) {
    latchkey::create_admin(&app.config, username, role, ADMIN_PASSWORD)
        .await
        .unwrap();
}

async fn admin_signs_in(browser: &Browser, app: &TestApp, username: &str) {
    browser.goto(&app.url("/admin")).await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", username).await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    second_factor(browser, app, username).await;
    browser.wait_path("/admin/customers").await;
}

/// What follows a right password on the console's sign-in page. The store requires a second
/// factor by default: an admin without one enrols an authenticator app there and then (the
/// test reads the key the page shows and computes the code, as an app would) and is shown
/// their recovery codes, which the test keeps; an admin with one types one of those codes.
/// Nothing, where the store asks for neither.
async fn second_factor(browser: &Browser, app: &TestApp, username: &str) {
    use domain::clock::Clock as _;
    let step = "location.pathname !== '/admin/sign-in' ? 'in' \
        : !document.getElementById('admin-enrol').hidden ? 'enrol' \
        : !document.getElementById('admin-factor').hidden ? 'factor' : ''";
    browser.wait_until(&format!("({step}) !== ''")).await;
    let now = browser.eval(step).await;
    match now.as_str() {
        Some("enrol") => {
            assert_eq!(browser.focused().await, "enrol-title");
            browser.fill("#enrol-name", "Test phone").await;
            browser.click("#enrol button[type=submit]").await;
            browser
                .wait_until(
                    "document.getElementById('enrol-qr').complete && document.getElementById('enrol-qr').naturalWidth > 0",
                )
                .await;
            let key = browser.text("#enrol-key").await.replace(' ', "");
            browser
                .fill("#enrol-code", &crate::helpers::totp(&key, app.clock.now()))
                .await;
            browser.click("#enrol-confirm button[type=submit]").await;
            browser
                .wait_until("!document.getElementById('recovery').hidden")
                .await;
            let codes = browser
                .eval("Array.from(document.querySelectorAll('#recovery-codes li'), (li) => li.textContent)")
                .await;
            let codes: Vec<String> = serde_json::from_value(codes).unwrap();
            assert_eq!(codes.len(), 10);
            app.keep_recovery_codes(username, codes);
            browser.click("#recovery-done").await;
        }
        Some("factor") => {
            assert_eq!(browser.focused().await, "factor-code");
            browser
                .fill("#factor-code", &app.recovery_code(username))
                .await;
            browser.click("#admin-factor button[type=submit]").await;
        }
        _ => {}
    }
}

/// The storefront half of the source documents: "Forgot Your Password?", "Email Address",
/// "Reset My Password", the emailed link, "New Password", "Reset Password", then sign-in.
async fn browser_customer_resets_a_forgotten_password_in_the_storefront(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    customer(&app, "mai@example.com", "en").await;
    // A store that resets by link only (codes: the next test).
    app.set_settings("reset_by_code = false").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;

    browser.goto(&app.url("/account/sign-in")).await;
    assert_eq!(browser.text("h1").await, "Customer Login");
    browser.shot("storefront-sign-in").await;
    browser.click_text("Forgot Your Password?").await;
    browser.wait_path("/account/forgot-password").await;
    assert_eq!(browser.text("label[for=email]").await, "Email Address");
    browser.fill("#email", "not-an-address").await;
    browser.click_text("Reset My Password").await;
    browser.wait_text("#email-error", "valid email").await;
    browser.fill("#email", "mai@example.com").await;
    browser.shot("storefront-forgot-password").await;
    browser.click_text("Reset My Password").await;
    browser
        .wait_text(
            "#notice",
            "If there is an account associated with mai@example.com",
        )
        .await;
    browser.shot("storefront-forgot-password-sent").await;

    let mail = smtp.wait_for(1).await;
    // The link's host is the configured public URL (the test server's port is only known
    // after it binds); its path and query are what the page needs.
    let link = mail[0].link();
    let path = &link[link
        .find("/account/reset-password?token=")
        .expect("a reset link")..];
    let link = app.url(path);
    browser.goto(&link).await;
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar"
    );
    assert_eq!(browser.text("label[for=password]").await, "New Password");

    // Mismatch, then a password the policy refuses: each explained, the link still usable.
    browser.fill("#password", "Another-Pass-2026").await;
    browser.fill("#confirm", "Another-Pass-2027").await;
    browser.click_text("Reset Password").await;
    browser
        .wait_text("#confirm-error", "Please enter the same value again.")
        .await;
    browser.fill("#password", "abc").await;
    browser.fill("#confirm", "abc").await;
    browser.click_text("Reset Password").await;
    browser
        .wait_text("#password-error", "must be at least 6 characters long")
        .await;
    browser.shot("storefront-new-password-policy").await;

    browser.fill("#password", "Brand-New-Pass-2026").await;
    browser.fill("#confirm", "Brand-New-Pass-2026").await;
    browser.shot("storefront-new-password").await;
    browser.click_text("Reset Password").await;
    browser
        .wait_text("#notice", "You updated your password.")
        .await;
    browser.shot("storefront-password-updated").await;
    let old = app
        .sign_in_response("mai@example.com", CUSTOMER_PASSWORD)
        .await;
    assert_eq!(
        code(&old),
        "AUTHENTICATION_FAILED",
        "the old password is gone"
    );

    browser.click("#to-sign-in").await;
    browser.wait_path("/account/sign-in").await;
    browser.fill("#email", "mai@example.com").await;
    browser.fill("#password", "Brand-New-Pass-2026").await;
    browser.click_text("Sign In").await;
    browser.wait_path("/account").await;
    browser
        .wait_text("#who", "Signed in as Mai Sato (mai@example.com)")
        .await;
    assert_eq!(browser.count("#sessions tbody tr").await, 1);
    browser.wait_text("#sessions tbody", "This device").await;
    browser.shot("storefront-account").await;

    // The link was used: opening it again explains and offers a new one.
    browser.goto(&link).await;
    browser.fill("#password", "Third-Pass-2026x").await;
    browser.fill("#confirm", "Third-Pass-2026x").await;
    browser.click_text("Reset Password").await;
    browser.wait_text("#notice", "already been used").await;
    assert!(browser.visible("#request-new").await);
    browser.close().await;
}

/// The two email-change links, as the customer opens them from the mail: opening one changes
/// nothing (mail scanners open links), the button does; the token leaves the address bar.
async fn browser_email_change_links_confirm_and_undo_only_on_a_click(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    customer(&app, "ren@example.com", "ja").await;
    let session = app.sign_in("ren@example.com", CUSTOMER_PASSWORD).await;
    let res = app
        .gql_as(
            Some(&session),
            "mutation($e: String!, $p: String!) { requestCustomerEmailChange(newEmail: $e, currentPassword: $p) }",
            json!({"e": "ren.new@example.com", "p": CUSTOMER_PASSWORD}),
        )
        .await;
    assert_eq!(res["data"]["requestCustomerEmailChange"], true, "{res}");
    let mails = smtp.wait_for(2).await;
    let path_of = |to: &str, path: &str| {
        let link = mails
            .iter()
            .find(|m| m.to == vec![to.to_owned()])
            .expect("a mail")
            .link();
        app.url(&link[link.find(path).expect("a link to the page")..])
    };
    let confirm = path_of("ren.new@example.com", "/account/confirm-email?token=");
    let cancel = path_of("ren@example.com", "/account/cancel-email-change?token=");
    assert!(
        confirm.contains("lang=ja"),
        "in the customer's language: {confirm}"
    );

    let driver = Driver::start().await;
    let browser = driver.browser("ja-JP").await;
    browser.goto(&confirm).await;
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar"
    );
    assert_eq!(browser.text("h1").await, "新しいメールアドレスの確認");
    assert_eq!(
        app.whoami(&session).await.as_deref(),
        Ok("ren@example.com"),
        "opening the link changed nothing"
    );
    browser.shot("storefront-confirm-email-ja").await;
    browser.click_text("メールアドレスを確認").await;
    browser
        .wait_text("#notice", "メールアドレスを変更しました")
        .await;
    assert_eq!(
        app.whoami(&session).await.as_deref(),
        Ok("ren.new@example.com")
    );
    // Used: opening it again says so.
    browser.goto(&confirm).await;
    browser.click_text("メールアドレスを確認").await;
    browser.wait_text("#notice", "使用済み").await;

    let english = driver.browser("en-US").await;
    english.goto(&cancel.replace("lang=ja", "lang=en")).await;
    assert_eq!(english.text("h1").await, "Stop the Email Address Change");
    assert_eq!(
        app.whoami(&session).await.as_deref(),
        Ok("ren.new@example.com")
    );
    english.shot("storefront-cancel-email-change").await;
    english.click_text("This Wasn't Me").await;
    english
        .wait_text("#notice", "every device is signed out")
        .await;
    assert_eq!(
        app.whoami(&session).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    // The account is back on its old address, and the password whoever asked knew is void.
    english.wait_text("#notice", "Forgot Your Password?").await;
    let old = app
        .sign_in_response("ren@example.com", CUSTOMER_PASSWORD)
        .await;
    assert_eq!(
        old["errors"][0]["extensions"]["code"], "AUTHENTICATION_FAILED",
        "{old}"
    );
    let back = app
        .count("customers WHERE email_key = 'ren@example.com'")
        .await;
    assert_eq!(back, 1, "the account is back on its old address");
    // The change had been confirmed: the account is frozen, and the console says so and
    // offers an administrator "Recover Account".
    admin(&app, "keeper", "administrator").await;
    admin_signs_in(&english, &app, "keeper").await;
    let root = app.admin_token("administrator").await;
    let found = app
        .gql_as(
            Some(&root),
            "{ customers(first: 1, filter: {search: \"ren@example.com\"}) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let id = found["data"]["customers"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    english
        .goto(&app.url(&format!("/admin/customers/{id}")))
        .await;
    english
        .wait_until("!document.getElementById('recover-customer').hidden")
        .await;
    let frozen = english.text("[data-field=frozenAt]").await;
    assert!(frozen.chars().any(|c| c.is_ascii_digit()), "{frozen}");
    english.click("#recover-customer").await;
    english
        .wait_text("#notice", "The account is recovered")
        .await;
    english
        .wait_until("document.getElementById('recover-customer').hidden")
        .await;
    assert_eq!(english.text("[data-field=frozenAt]").await, "—");
    english.close().await;
    browser.close().await;
}

/// The invitation link in the console: the new admin chooses a password (the policy explained)
/// and signs in with it.
async fn browser_an_invited_admin_sets_a_password_and_signs_in(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let root = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&root),
            "mutation { createAdminUser(username: \"newhire\", email: \"newhire@example.com\", role: SUPPORT) { id } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    let link = smtp.wait_for(1).await[0].link();
    let link = app.url(
        &link[link
            .find("/admin/set-password?token=")
            .expect("the console's page")..],
    );
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    browser.goto(&link).await;
    assert!(
        !browser.url().await.contains("token"),
        "the token leaves the address bar"
    );
    assert_eq!(browser.text("h1").await, "Set Your Admin Password");
    browser.fill("#password", "short-Pw-1").await;
    browser.fill("#confirm", "short-Pw-1").await;
    browser.click_text("Set Password").await;
    browser
        .wait_text("#password-error", "must be at least 12 characters long")
        .await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.fill("#confirm", ADMIN_PASSWORD).await;
    browser.shot("admin-set-password").await;
    browser.click_text("Set Password").await;
    browser.wait_text("#notice", "Your password is set.").await;
    // The admin is told at their address that the password was set.
    let notice = smtp.wait_for(2).await[1].clone();
    assert!(
        notice.subject().contains("password") && notice.text().contains("was just set"),
        "{}",
        notice.text()
    );
    admin_signs_in(&browser, &app, "newhire").await;
    browser.close().await;

    // Later, from another browser: "Forgot Your Password?" on the console's sign-in page.
    let other = driver.browser("en-US").await;
    other.goto(&app.url("/admin/sign-in")).await;
    other.click_text("Forgot Your Password?").await;
    other.wait_path("/admin/forgot-password").await;
    other.fill("#username", "newhire").await;
    other.click_text("Send Link").await;
    other
        .wait_text("#notice", "a link to set a new password is on its way")
        .await;
    let reset = smtp.wait_for(3).await[2].link();
    assert!(reset.contains("/admin/set-password?token="), "{reset}");
    other.close().await;
}

/// Admin Users in the console: invite, change a role, disable (with a confirmation), and the
/// last administrator refused.
async fn browser_an_administrator_manages_admin_users(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    admin(&app, "chief", "administrator").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    admin_signs_in(&browser, &app, "chief").await;
    browser.click_text("Admin Users").await;
    browser.wait_path("/admin/users").await;
    browser.wait_text("#admins tbody", "chief").await;
    browser.fill("#invite-username", "helper").await;
    browser.fill("#invite-email", "helper@example.com").await;
    browser.choose("#invite-role", "SUPPORT").await;
    browser.click_text("Send Invitation").await;
    browser
        .wait_text("#notice", "Invitation sent to helper@example.com.")
        .await;
    browser
        .wait_text("#admins tbody", "helper@example.com")
        .await;
    assert_eq!(
        smtp.wait_for(1).await[0].to,
        vec!["helper@example.com".to_owned()]
    );
    browser.shot("admin-users").await;

    // An admin who lost their phone: "Reset Two-Factor" (after a confirmation) signs them out
    // and removes their app; the row then shows none. Chief's own row offers no such button.
    let lost = app.admin_token("support").await;
    let lost_name = app
        .gql_as(Some(&lost), "{ currentAdmin { username } }", json!({}))
        .await["data"]["currentAdmin"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.goto(&app.url("/admin/users")).await;
    let row = format!("tr[data-username='{lost_name}']");
    browser.wait_text(&row, "Test app").await;
    assert!(
        browser
            .text("tr[data-username='chief']")
            .await
            .contains("Test phone")
    );
    assert!(
        !browser
            .text("tr[data-username='chief']")
            .await
            .contains("Reset Two-Factor")
    );
    browser
        .click(&format!("{row} td:last-child button:last-child"))
        .await;
    assert_eq!(browser.focused().await, "reset-password");
    browser.fill("#reset-password", ADMIN_PASSWORD).await;
    browser.click("#reset-factors-ok").await;
    browser
        .wait_text(
            "#notice",
            "two-factor authentication is reset (1 sessions ended)",
        )
        .await;
    browser.wait_text(&row, "None").await;
    assert_eq!(
        code(
            &app.gql_as(Some(&lost), "{ currentAdmin { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );

    browser
        .choose("tr[data-username='helper'] select", "VIEWER")
        .await;
    browser.wait_text("#notice", "helper is updated.").await;
    browser
        .click("tr[data-username='helper'] td:last-child button:first-child")
        .await;
    browser.click("#admin-confirm-ok").await;
    browser
        .wait_text("tr[data-username='helper']", "Disabled")
        .await;
    let list = app
        .gql_as(
            Some(&app.admin_token("administrator").await),
            "{ adminUsers { username role disabled } }",
            json!({}),
        )
        .await;
    assert!(
        list["data"]["adminUsers"]
            .as_array()
            .unwrap()
            .contains(&json!({"username": "helper", "role": "VIEWER", "disabled": true})),
        "{list}"
    );

    // chief's own row: with another administrator made above, chief may step down; without
    // one the page explains. Disable that other administrator first.
    let others: Vec<String> = list["data"]["adminUsers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["role"] == "ADMINISTRATOR" && a["username"] != "chief")
        .map(|a| a["username"].as_str().unwrap().to_owned())
        .collect();
    browser.goto(&app.url("/admin/users")).await;
    for other in &others {
        browser
            .wait_text(&format!("tr[data-username='{other}']"), other)
            .await;
        browser
            .click(&format!(
                "tr[data-username='{other}'] td:last-child button:first-child"
            ))
            .await;
        browser.click("#admin-confirm-ok").await;
        browser
            .wait_text(&format!("tr[data-username='{other}']"), "Disabled")
            .await;
    }
    browser
        .choose("tr[data-username='chief'] select", "SUPPORT")
        .await;
    browser
        .wait_text("#notice", "This is the last active administrator")
        .await;
    browser.close().await;
}

/// Two-factor authentication in the console: the admin adds an authenticator app (the test
/// reads the key the page shows and computes the codes as an app would), keeps the recovery
/// codes, then signs in with the password and a code, and with a recovery code; the Admin
/// Users page shows who has which app.
async fn browser_an_admin_adds_an_authenticator_app_and_signs_in_with_its_codes(backend: Backend) {
    use domain::clock::Clock as _;
    // Where a second factor is optional: the admin signs in with the password, then adds one.
    let app = TestApp::spawn_with(backend, |c| {
        c.admin_2fa = latchkey::config::AdminTwoFactor::Optional;
    })
    .await;
    admin(&app, "ann", "administrator").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    admin_signs_in(&browser, &app, "ann").await;
    browser.click_text("Two-factor authentication").await;
    browser.wait_path("/admin/security").await;
    browser
        .wait_text("#factors-none", "No authenticator app yet")
        .await;

    browser.fill("#enrol-name", "Work phone").await;
    browser.fill("#enrol-password", "not the password").await;
    browser.click("#enrol button[type=submit]").await;
    browser
        .wait_text("#enrol-password-error", "The password is not right.")
        .await;
    assert_eq!(browser.focused().await, "enrol-password");
    browser.fill("#enrol-password", ADMIN_PASSWORD).await;
    browser.click("#enrol button[type=submit]").await;
    // The QR code the API drew, shown as an image of the page's own making (the page's CSP
    // allows it), and the key to type.
    browser
        .wait_until(
            "document.getElementById('enrol-qr').complete && document.getElementById('enrol-qr').naturalWidth > 0",
        )
        .await;
    assert_eq!(browser.focused().await, "enrol-code");
    let key = browser.text("#enrol-key").await.replace(' ', "");
    browser.shot("admin-totp-enrolment").await;
    browser.fill("#enrol-code", "123").await;
    browser.click("#enrol-confirm button[type=submit]").await;
    browser
        .wait_text("#enrol-code-error", "not the code the app shows")
        .await;
    browser
        .fill("#enrol-code", &crate::helpers::totp(&key, app.clock.now()))
        .await;
    browser.click("#enrol-confirm button[type=submit]").await;
    browser.wait_text("#notice", "Work phone is added.").await;
    browser.wait_text("#factors tbody", "Work phone").await;
    assert_eq!(browser.focused().await, "recovery-title");
    assert_eq!(browser.count("#recovery-codes li").await, 10);
    let recovery = browser.text("#recovery-codes li:first-child").await;
    browser.wait_text("#recovery-left", "10").await;
    browser.shot("admin-recovery-codes").await;
    browser.click("#recovery-done").await;
    assert!(
        !browser.visible("#recovery").await,
        "the codes are shown once"
    );

    // Signing in now asks for a code, with the focus on it.
    browser.click("#admin-sign-out").await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", "ann").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    browser
        .wait_until("!document.getElementById('admin-factor').hidden")
        .await;
    assert_eq!(browser.focused().await, "factor-code");
    assert!(!browser.visible("#admin-sign-in").await);
    browser.keys("000000\u{e007}").await;
    browser
        .wait_text("#factor-code-error", "This code is not right")
        .await;
    // The enrolment spent this step's code: the app's next one (one step ahead) signs in.
    let next = crate::helpers::totp(&key, app.clock.now() + chrono::Duration::seconds(30));
    browser.fill("#factor-code", &next).await;
    browser.click("#admin-factor button[type=submit]").await;
    browser.wait_path("/admin/customers").await;

    // A recovery code signs in too; the Admin Users page shows who has which app.
    browser.click("#admin-sign-out").await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", "ann").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    browser
        .wait_until("!document.getElementById('admin-factor').hidden")
        .await;
    browser.fill("#factor-code", &recovery).await;
    browser.click("#admin-factor button[type=submit]").await;
    browser.wait_path("/admin/customers").await;
    browser.goto(&app.url("/admin/users")).await;
    browser
        .wait_text("tr[data-username='ann']", "Work phone")
        .await;
    browser.goto(&app.url("/admin/security")).await;
    browser.wait_text("#recovery-left", "9").await;

    // "Remember this browser", once the store offers it: the next sign-in from this browser
    // asks for the password only, until the admin forgets the browser.
    let settings = app
        .gql_as(
            Some(&app.admin_token("administrator").await),
            "mutation { updatePasswordSettings(input: {rememberBrowserDays: 14}) { rememberBrowserDays } }",
            json!({}),
        )
        .await;
    assert!(settings["errors"].is_null(), "{settings}");
    let sign_in_with = |code: String| {
        let browser = &browser;
        async move {
            browser.click("#admin-sign-out").await;
            browser.wait_path("/admin/sign-in").await;
            browser.fill("#username", "ann").await;
            browser.fill("#password", ADMIN_PASSWORD).await;
            browser.click("#admin-sign-in button[type=submit]").await;
            if !code.is_empty() {
                browser
                    .wait_until("!document.getElementById('admin-factor').hidden")
                    .await;
                browser
                    .wait_text("#remember-label", "Remember this browser for 14 days")
                    .await;
                browser.click("#remember-browser").await;
                browser.fill("#factor-code", &code).await;
                browser.click("#admin-factor button[type=submit]").await;
            }
            browser.wait_path("/admin/customers").await;
        }
    };
    app.clock.advance(chrono::Duration::seconds(60));
    sign_in_with(crate::helpers::totp(&key, app.clock.now())).await;
    sign_in_with(String::new()).await;
    browser.goto(&app.url("/admin/security")).await;
    browser.wait_text("#grants tbody", "Chrome").await;
    browser.click("#grants tbody button").await;
    browser
        .wait_text("#notice", "That browser asks for a code again.")
        .await;
    browser.click("#admin-sign-out").await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", "ann").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    browser
        .wait_until("!document.getElementById('admin-factor').hidden")
        .await;
    let next = crate::helpers::totp(&key, app.clock.now() + chrono::Duration::seconds(30));
    browser.fill("#factor-code", &next).await;
    browser.click("#admin-factor button[type=submit]").await;
    browser.wait_path("/admin/customers").await;

    // The page in Korean and Japanese.
    browser.goto(&app.url("/admin/security?lang=ko")).await;
    browser.wait_text("h1", "2단계 인증").await;
    browser.goto(&app.url("/admin/security?lang=ja")).await;
    browser.wait_text("h1", "二要素認証").await;
    browser.close().await;
}

/// A passkey through a real WebAuthn ceremony: ChromeDriver's virtual authenticator makes it on
/// the security page and answers with it at sign-in. WebAuthn needs a domain name, so the
/// console is opened at `localhost` (the store's public URL), not at an IP address.
async fn browser_an_admin_adds_a_passkey_and_signs_in_with_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.public_url = Some("http://localhost".into());
    })
    .await;
    admin(&app, "ann", "administrator").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    browser.add_virtual_authenticator().await;
    let local = |path: &str| format!("http://localhost:{}{path}", app.addr.port());
    browser.goto(&local("/admin")).await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", "ann").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    // The store requires a factor: an authenticator app first, as every admin does.
    second_factor(&browser, &app, "ann").await;
    browser.wait_path("/admin/customers").await;

    browser.goto(&local("/admin/security")).await;
    assert!(
        browser.visible("#passkey").await,
        "this browser can make passkeys"
    );
    browser.fill("#passkey-name", "Laptop passkey").await;
    browser.fill("#passkey-password", ADMIN_PASSWORD).await;
    browser.click("#passkey button[type=submit]").await;
    browser
        .wait_text("#notice", "Laptop passkey is added.")
        .await;
    browser.wait_text("#factors tbody", "Laptop passkey").await;

    // Signing in: the password, then the passkey instead of a code.
    browser.click("#admin-sign-out").await;
    browser.wait_path("/admin/sign-in").await;
    browser.fill("#username", "ann").await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("#admin-sign-in button[type=submit]").await;
    browser
        .wait_until("!document.getElementById('use-passkey').hidden")
        .await;
    browser.click("#use-passkey").await;
    browser.wait_path("/admin/customers").await;
    let me = app
        .gql_as(
            Some(&app.admin_token("administrator").await),
            "{ adminUsers { username factors { name kind lastUsedAt } } }",
            json!({}),
        )
        .await;
    let ann = me["data"]["adminUsers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "ann")
        .unwrap()
        .clone();
    let passkey = ann["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "PASSKEY")
        .unwrap_or_else(|| panic!("{ann}"))
        .clone();
    assert_eq!(passkey["name"], "Laptop passkey");
    assert!(passkey["lastUsedAt"].is_string(), "{passkey}");
    browser.close().await;
}

/// A newcomer's path, in Korean: "Create an Account" from the sign-in page, then "Account
/// Information" (names, language, an email change, deletion); the storefront pages carry none
/// of the console's labels.
async fn browser_a_newcomer_creates_an_account_edits_it_and_deletes_it(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ko-KR").await;
    browser.goto(&app.url("/account/sign-in")).await;
    let messages = browser.eval("document.body.dataset.messages").await;
    assert!(
        !messages.as_str().unwrap().contains("\"admin\""),
        "the storefront page ships the console's labels"
    );
    browser.click_text("계정 만들기").await;
    browser.wait_path("/account/create").await;
    assert_eq!(browser.text("h1").await, "새 고객 계정 만들기");
    // The hint says what the live policy says: the defaults, then a hardened one.
    browser.wait_text("#password-hint", "6자 이상").await;
    assert!(
        browser
            .text("#password-hint")
            .await
            .contains("공백은 사용할 수 없습니다")
    );
    let root = app.admin_token("administrator").await;
    let res = app
        .gql_as(
            Some(&root),
            "mutation { updatePasswordSettings(input: {minPasswordLength: 10, allowWhitespace: true, requiredCharacterClasses: 2}) { minPasswordLength } }",
            json!({}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    browser.goto(&app.url("/account/create")).await;
    let hint = browser.wait_text("#password-hint", "10자 이상").await;
    assert!(!hint.contains("공백") && hint.contains("2가지"), "{hint}");
    let res = app
        .gql(
            "{ passwordPolicy { minLength maxLength requiredCharacterClasses allowWhitespace minScore } }",
            json!({}),
        )
        .await;
    assert_eq!(
        res["data"]["passwordPolicy"],
        json!({"minLength": 10, "maxLength": 256, "requiredCharacterClasses": 2, "allowWhitespace": true, "minScore": 1}),
        "anonymous callers read the rules: {res}"
    );
    app.gql_as(
        Some(&root),
        "mutation { updatePasswordSettings(input: {minPasswordLength: 6, allowWhitespace: false, requiredCharacterClasses: 0}) { minPasswordLength } }",
        json!({}),
    )
    .await;
    browser.goto(&app.url("/account/create")).await;
    browser.wait_text("#password-hint", "6자 이상").await;
    browser.fill("#firstname", "지민").await;
    browser.fill("#lastname", "박").await;
    browser.fill("#email", "jimin@example.com").await;
    browser.fill("#password", "abc").await;
    browser.fill("#confirm", "abc").await;
    browser.click_text("계정 만들기").await;
    browser.wait_text("#password-error", "다른 비밀번호").await;
    browser.fill("#password", CUSTOMER_PASSWORD).await;
    browser.fill("#confirm", CUSTOMER_PASSWORD).await;
    browser.shot("storefront-create-account-ko").await;
    browser.click_text("계정 만들기").await;
    browser.wait_path("/account").await;
    browser.wait_text("#who", "jimin@example.com").await;

    browser.click("#information-link").await;
    browser.wait_path("/account/information").await;
    browser
        .wait_text("#current-email", "jimin@example.com")
        .await;
    browser.fill("#firstname", "지우").await;
    browser.choose("#locale", "ja").await;
    browser.click_text("저장").await;
    browser
        .wait_text("#notice", "계정 정보를 저장했습니다")
        .await;
    let token = app.sign_in("jimin@example.com", CUSTOMER_PASSWORD).await;
    let me = app
        .gql_as(Some(&token), "{ customer { firstname locale } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["customer"],
        json!({"firstname": "지우", "locale": "ja"})
    );

    browser.fill("#new-email", "jiwoo@example.com").await;
    browser.fill("#email-password", "wrong-password-1").await;
    browser.click_text("확인 메일 보내기").await;
    browser
        .wait_until("!document.getElementById('email-password-error').hidden")
        .await;
    assert_eq!(app.count("email_changes").await, 0);
    browser.fill("#email-password", CUSTOMER_PASSWORD).await;
    browser.click_text("확인 메일 보내기").await;
    browser.wait_text("#notice", "jiwoo@example.com").await;
    let mails = smtp.wait_for(2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.to == vec!["jiwoo@example.com".to_owned()])
    );
    browser.shot("storefront-account-information-ko").await;

    browser.fill("#delete-password", CUSTOMER_PASSWORD).await;
    browser.click_text("내 계정 삭제").await;
    browser.click("#delete-cancel").await;
    assert!(app.whoami(&token).await.is_ok(), "Cancel keeps the account");
    browser.click_text("내 계정 삭제").await;
    browser.click("#delete-ok").await;
    browser.wait_path("/account/sign-in").await;
    browser.wait_text("#notice", "계정을 삭제했습니다").await;
    assert_eq!(app.whoami(&token).await, Err("UNAUTHENTICATED".to_owned()));
    browser.close().await;
}

/// "Delete Customer" on the customer's page: Cancel keeps the customer, OK deletes them.
async fn browser_an_administrator_deletes_a_customer_after_confirming(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    customer(&app, "doomed@example.com", "en").await;
    let session = app.sign_in("doomed@example.com", CUSTOMER_PASSWORD).await;
    let id = app
        .gql_as(Some(&session), "{ customer { id } }", json!({}))
        .await["data"]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(&app, "chief", "administrator").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    admin_signs_in(&browser, &app, "chief").await;
    browser
        .goto(&app.url(&format!("/admin/customers/{id}")))
        .await;
    browser.wait_text("#customer-name", "Mai Sato").await;
    browser.click_text("Delete Customer").await;
    browser.click("#delete-cancel").await;
    assert!(
        app.whoami(&app.sign_in("doomed@example.com", CUSTOMER_PASSWORD).await)
            .await
            .is_ok()
    );
    browser.click_text("Delete Customer").await;
    browser.shot("admin-delete-customer").await;
    browser.click("#delete-ok").await;
    browser
        .wait_text("#notice", "The customer is deleted.")
        .await;
    assert_eq!(
        code(
            &app.sign_in_response("doomed@example.com", CUSTOMER_PASSWORD)
                .await
        ),
        "AUTHENTICATION_FAILED"
    );
    browser.close().await;
}

/// The admin half: Customers > All Customers, Edit, "Reset Password", "Force Sign In", OK; the
/// customer's signed-in browser is refused afterwards.
async fn browser_admin_sends_a_reset_and_forces_sign_in(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    for (i, (first, last, locale)) in [
        ("Ann", "Lee", "en"),
        ("Kenji", "Tanaka", "ja"),
        ("Min-jun", "Kim", "ko"),
    ]
    .into_iter()
    .enumerate()
    {
        named_customer(&app, &format!("other{i}@example.com"), locale, first, last).await;
    }
    customer(&app, "mai@example.com", "en").await;
    admin(&app, "ops", "administrator").await;
    let driver = Driver::start().await;

    // The customer is signed in on their own device, and on a second one through the API.
    let shopper = driver.browser("en-US").await;
    shopper.goto(&app.url("/account/sign-in")).await;
    shopper.fill("#email", "mai@example.com").await;
    shopper.fill("#password", CUSTOMER_PASSWORD).await;
    shopper.click_text("Sign In").await;
    shopper.wait_path("/account").await;
    let api_token = app.sign_in("mai@example.com", CUSTOMER_PASSWORD).await;
    shopper.goto(&app.url("/account")).await;
    assert_eq!(shopper.count("#sessions tbody tr").await, 2);

    let console = driver.browser("en-US").await;
    admin_signs_in(&console, &app, "ops").await;
    console.wait_text("#count", "4 records found").await;
    console.wait_text("#admin-who", "ops (administrator)").await;
    console.shot("admin-customers").await;
    console.fill("#search", "mai@").await;
    console.click_text("Search").await;
    console.wait_text("#count", "1 records found").await;
    let row = console.text("#grid tbody tr").await;
    assert!(
        row.contains("Mai Sato") && row.contains("mai@example.com"),
        "{row}"
    );
    console.shot("admin-customers-search").await;
    console.click("#grid tbody tr a").await;
    console.wait_text("#customer-name", "Mai Sato").await;
    console.wait_text("#info", "mai@example.com").await;
    console.shot("admin-customer").await;

    console.click_text("Reset Password").await;
    console
        .wait_text(
            "#notice",
            "The customer will receive an email with a link to reset password.",
        )
        .await;
    let mail = smtp.wait_for(1).await;
    assert_eq!(mail[0].header_to(), "mai@example.com");
    assert!(mail[0].link().contains("/account/reset-password?token="));

    console.click_text("Force Sign In").await;
    assert!(console.visible("#confirm").await, "a confirmation dialog");
    console.shot("admin-force-sign-in-confirm").await;
    console.click("#confirm-cancel").await;
    assert!(!console.visible("#confirm").await);
    assert_eq!(
        app.whoami(&api_token).await.as_deref(),
        Ok("mai@example.com"),
        "Cancel changes nothing"
    );

    console.click_text("Force Sign In").await;
    console.click("#confirm-ok").await;
    console
        .wait_text(
            "#notice",
            "You have revoked the customer's tokens: 2 signed-in devices were signed out.",
        )
        .await;
    console.shot("admin-force-sign-in-done").await;
    assert_eq!(app.whoami(&api_token).await, Err("UNAUTHENTICATED".into()));

    // The customer's browser is refused and sent to sign in again.
    shopper.client.goto(&app.url("/account")).await.unwrap();
    shopper.wait_path("/account/sign-in").await;
    shopper
        .wait_text("#notice", "Your session has ended. Please sign in again.")
        .await;
    shopper.shot("storefront-session-ended").await;

    // Both actions are in the audit log; the settings form saves.
    console.click_text("Audit log").await;
    console.wait_path("/admin/audit-log").await;
    let log = console.text("#audit tbody").await;
    assert!(
        log.contains("Force Sign In") && log.contains("Reset Password"),
        "{log}"
    );
    assert!(log.contains("ops"), "{log}");
    console.shot("admin-audit-log").await;
    console.click_text("Password settings").await;
    console.wait_path("/admin/settings").await;
    assert_eq!(
        console
            .find("#minPasswordLength")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("6")
    );
    settings_page_matches_the_api_and_saves(&console, &app).await;

    console.click("#admin-sign-out").await;
    console.wait_path("/admin/sign-in").await;
    console
        .client
        .goto(&app.url("/admin/customers"))
        .await
        .unwrap();
    console.wait_path("/admin/sign-in").await;
    shopper.close().await;
    console.close().await;
}

/// Every setting the API has is on the page, each with the range the API accepts: the bounds
/// are checked against the API itself (one past either end is refused). Then the hardened
/// values saved from the page apply at once.
async fn settings_page_matches_the_api_and_saves(console: &Browser, app: &TestApp) {
    let root = app.admin_token("administrator").await;
    let fields = console
        .eval(
            "[...document.querySelectorAll('#settings input[type=number]')]\
             .map(i => [i.id, Number(i.min), Number(i.max), i.labels[0].textContent])",
        )
        .await;
    let fields = fields.as_array().unwrap().clone();
    let names: Vec<&str> = fields.iter().map(|f| f[0].as_str().unwrap()).collect();
    let api = app
        .gql_as(Some(&root), "{ __type(name: \"PasswordSettingsInput\") { inputFields { name type { name ofType { name } } } } }", json!({}))
        .await;
    let checkboxes = console
        .eval("[...document.querySelectorAll('#settings input[type=checkbox]')].map(i => i.id)")
        .await;
    for field in api["data"]["__type"]["inputFields"].as_array().unwrap() {
        let kind = &field["type"];
        if kind["name"] == "Boolean" {
            let name = field["name"].as_str().unwrap();
            assert!(
                checkboxes.as_array().unwrap().iter().any(|c| c == name),
                "{name} has no checkbox on the page: {checkboxes}"
            );
        }
        if kind["name"] == "Int" || kind["ofType"]["name"] == "Int" {
            let name = field["name"].as_str().unwrap();
            assert!(
                names.contains(&name),
                "{name} is missing from the page: {names:?}"
            );
        }
    }
    for f in &fields {
        let (name, min, max) = (
            f[0].as_str().unwrap(),
            f[1].as_i64().unwrap(),
            f[2].as_i64().unwrap(),
        );
        assert!(
            !f[3].as_str().unwrap().contains("0 turns lockout off"),
            "{f}"
        );
        for (value, accepted) in [(min - 1, false), (max + 1, false), (max, true)] {
            let res = app
                .gql_as(
                    Some(&root),
                    "mutation($i: PasswordSettingsInput!) { updatePasswordSettings(input: $i) { minPasswordLength } }",
                    json!({"i": {name: value}}),
                )
                .await;
            if accepted {
                assert!(res["errors"].is_null(), "{name} = {value}: {res}");
            } else {
                assert_eq!(code(&res), "BAD_USER_INPUT", "{name} = {value}: {res}");
            }
        }
    }
    // Back to the defaults, then the hardened values from the page.
    app.gql_as(
        Some(&root),
        "mutation { updatePasswordSettings(input: {resetLinkLifetimeHours: 24, maxResetRequestsPerHour: 5, minSecondsBetweenResetRequests: 600, minPasswordLength: 6, requiredCharacterClasses: 0, minPasswordScore: 1, lockoutFailures: 10, lockoutMinutes: 10, customerTokenLifetimeMinutes: 60, adminTokenLifetimeMinutes: 240, maxFailedSignInsPerIpPerHour: 100, maxRegistrationsPerIpPerHour: 30}) { minPasswordLength } }",
        json!({}),
    )
    .await;
    console.goto(&app.url("/admin/settings")).await;
    console.wait_path("/admin/settings").await;
    console
        .wait_until("document.getElementById('minPasswordLength').value === '6'")
        .await;
    console.fill("#minPasswordLength", "12").await;
    console.fill("#minPasswordScore", "3").await;
    console.fill("#maxFailedSignInsPerIpPerHour", "50").await;
    console.click_text("Save Config").await;
    console
        .wait_text("#notice", "You saved the configuration.")
        .await;
    let saved = app
        .gql_as(
            Some(&root),
            "{ passwordSettings { minPasswordLength minPasswordScore maxFailedSignInsPerIpPerHour } }",
            json!({}),
        )
        .await;
    assert_eq!(
        saved["data"]["passwordSettings"],
        json!({"minPasswordLength": 12, "minPasswordScore": 3, "maxFailedSignInsPerIpPerHour": 50}),
        "{saved}"
    );
    console.shot("admin-settings").await;
    let res = app
        .gql_as(
            Some(&app.sign_in("other0@example.com", CUSTOMER_PASSWORD).await),
            "mutation { changeCustomerPassword(currentPassword: \"Storefront-Pass-2026\", newPassword: \"Short-1x\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        code(&res),
        "PASSWORD_POLICY",
        "the new minimum applies at once"
    );
}

/// A viewer reads the grid and the customer page but gets neither button, nor the settings and
/// audit log menus; opening the settings page anyway is refused by the API. Also: sign-in returns
/// to the page that asked for it, and paging continues the query that was run, not fields
/// edited since.
async fn browser_viewer_sees_no_reset_or_force_buttons(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    customer(&app, "mai@example.com", "en").await;
    for i in 0..21 {
        named_customer(
            &app,
            &format!("c{i:02}@example.com"),
            "en",
            "Sam",
            &format!("Page{i:02}"),
        )
        .await;
    }
    admin(&app, "watcher", "viewer").await;
    let driver = Driver::start().await;
    let console = driver.browser("en-US").await;

    console.goto(&app.url("/admin/settings")).await;
    console.wait_path("/admin/sign-in").await;
    console.fill("#username", "watcher").await;
    console.fill("#password", ADMIN_PASSWORD).await;
    console.click("#admin-sign-in button[type=submit]").await;
    second_factor(&console, &app, "watcher").await;
    console.wait_path("/admin/settings").await;
    console
        .wait_text("#notice", "Your role does not allow this.")
        .await;
    assert_eq!(console.count("#save").await, 0);
    console.wait_text("#admin-who", "watcher (viewer)").await;
    assert_eq!(console.count("[data-permission=SETTINGS_READ]").await, 0);
    assert_eq!(console.count("[data-permission=AUDIT_READ]").await, 0);

    console.click_text("Customers › All Customers").await;
    console.wait_path("/admin/customers").await;
    console.wait_text("#count", "22 records found").await;
    assert_eq!(console.count("#grid tbody tr").await, 20);
    assert_eq!(
        console.count("#select-page").await,
        0,
        "no selection column"
    );
    assert_eq!(console.count("#grid tbody input").await, 0);
    assert_eq!(console.count("#bulk").await, 0, "no Actions menu");
    assert_eq!(
        console.count("a[href='/admin/jobs']").await,
        0,
        "no Jobs page"
    );
    // Edit the sort without running it: "Next page" still continues the newest-first query.
    console
        .find("#sort option[value='EMAIL:ASC']")
        .await
        .click()
        .await
        .unwrap();
    console.click_text("Next page").await;
    console.wait_text("#grid tbody", "mai@example.com").await;
    assert_eq!(console.count("#grid tbody tr").await, 2, "the oldest two");
    assert!(!console.visible("#next-page").await);
    assert_eq!(console.text("#notice").await, "", "no error");
    console.click_text("First page").await;
    console.wait_text("#grid tbody", "c20@example.com").await;
    assert_eq!(console.count("#grid tbody tr").await, 20);

    console.fill("#search", "mai@").await;
    console.click_text("Search").await;
    console.wait_text("#count", "1 records found").await;
    console.click("#grid tbody tr a").await;
    console.wait_text("#info", "mai@example.com").await;
    assert_eq!(
        console.count("#reset-password").await,
        0,
        "no Reset Password"
    );
    assert_eq!(console.count("#force-sign-in").await, 0, "no Force Sign In");
    assert!(console.visible("#back").await);
    console.shot("admin-customer-viewer").await;
    console.goto(&app.url("/admin/jobs")).await;
    console
        .wait_text("#notice", "Your role does not allow this.")
        .await;
    console.close().await;
}

/// Reset by code, in Japanese: the code form appears in the tab that asked; the mailed code,
/// typed into a fresh tab of the same browser, fails there (that tab has no flow id), and then
/// works in the tab that asked.
async fn browser_a_customer_resets_by_code_in_the_tab_that_asked(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    customer(&app, "mai@example.com", "ja").await;
    let driver = Driver::start().await;
    let browser = driver.browser("ja").await;
    browser.goto(&app.url("/account/forgot-password")).await;
    browser.fill("#email", "mai@example.com").await;
    browser.click("#forgot button[type=submit]").await;
    browser.wait_text("#code-intro", "mai@example.com").await;
    assert_eq!(
        browser.text("label[for=code]").await,
        "メールに記載された確認コード"
    );
    browser.shot("storefront-reset-code-ja").await;
    let mail = smtp.wait_for(1).await.remove(0);
    assert!(mail.text().contains("確認コード"), "{}", mail.text());
    let code = mail.code();

    // The code pasted into a fresh tab: refused, and the password stays.
    let asked = browser.new_tab().await;
    browser.goto(&app.url("/account/forgot-password")).await;
    browser
        .wait_until("!document.getElementById('have-code').hidden")
        .await;
    browser.click("#have-code").await;
    browser.fill("#code", &code).await;
    browser.fill("#password", "Brand-New-Pass-2026").await;
    browser.fill("#confirm", "Brand-New-Pass-2026").await;
    browser.click("#code-form button[type=submit]").await;
    browser
        .wait_text("#code-error", "このコードはここでは使用できません")
        .await;
    browser.shot("storefront-reset-code-other-tab-ja").await;
    app.sign_in("mai@example.com", CUSTOMER_PASSWORD).await;
    browser.close_tab(asked).await;

    // In the tab that asked, typed as the mail shows it (two groups of four).
    browser
        .fill("#code", &format!("{} {}", &code[..4], &code[4..]))
        .await;
    browser.fill("#password", "Brand-New-Pass-2026").await;
    browser.fill("#confirm", "Brand-New-Pass-2026").await;
    browser.click("#code-form button[type=submit]").await;
    browser
        .wait_text("#notice", "パスワードを更新しました")
        .await;
    app.sign_in("mai@example.com", "Brand-New-Pass-2026").await;
    browser.close().await;
}

/// Sign-in by code, where the store allows it: offered on the sign-in page, the code typed in
/// the same page, straight to the account.
async fn browser_a_customer_signs_in_with_a_mailed_code(backend: Backend) {
    let (app, smtp) = TestApp::with_smtp(backend).await;
    customer(&app, "mai@example.com", "en").await;
    let driver = Driver::start().await;
    let browser = driver.browser("en-US").await;
    app.set_settings("sign_in_by_code = true").await;
    browser.goto(&app.url("/account/sign-in")).await;
    browser
        .wait_until("!document.getElementById('email-code').hidden")
        .await;
    browser.fill("#email", "mai@example.com").await;
    browser.click("#email-code").await;
    browser.wait_text("#code-intro", "mai@example.com").await;
    let code = smtp.wait_for(1).await.remove(0).code();
    browser.fill("#code", &code).await;
    browser.shot("storefront-sign-in-code").await;
    browser.click("#code-sign-in button[type=submit]").await;
    browser.wait_path("/account").await;
    browser.close().await;
}

/// A name under attack asks every sign-in for a solved proof-of-work challenge: the storefront
/// page solves it in the browser and the customer just signs in.
async fn browser_a_customer_signs_in_in_japanese_while_their_name_is_under_attack(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    customer(&app, "haru@example.com", "ja").await;
    app.set_settings("challenge_after_name_failures = 1").await;
    let wrong = app
        .sign_in_response("haru@example.com", "not-my-password")
        .await;
    assert_eq!(code(&wrong), "AUTHENTICATION_FAILED");
    let asked = app
        .sign_in_response("haru@example.com", CUSTOMER_PASSWORD)
        .await;
    assert_eq!(code(&asked), "CHALLENGE_REQUIRED", "{asked}");
    let driver = Driver::start().await;
    let browser = driver.browser("ja-JP").await;
    browser.goto(&app.url("/account/sign-in")).await;
    assert_eq!(browser.eval("document.documentElement.lang").await, "ja");
    browser.fill("#email", "haru@example.com").await;
    browser.fill("#password", CUSTOMER_PASSWORD).await;
    browser.click("#sign-in button[type=submit]").await;
    browser.wait_path("/account").await;
    browser.wait_text("main", "haru@example.com").await;
    browser.close().await;
}

/// Support finds the customers locked out with the grid's "Locked" filter and unlocks one in
/// place; the customer signs in again from the network that was locked.
async fn browser_support_unlocks_a_locked_customer_from_the_grid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    customer(&app, "jun@example.com", "ko").await;
    customer(&app, "other@example.com", "en").await;
    for i in 0..10 {
        let res = app
            .sign_in_response("jun@example.com", &format!("typo-{i}"))
            .await;
        assert_eq!(code(&res), "AUTHENTICATION_FAILED");
    }
    let locked = app
        .sign_in_response("jun@example.com", CUSTOMER_PASSWORD)
        .await;
    assert_eq!(
        code(&locked),
        "AUTHENTICATION_FAILED",
        "locked out: {locked}"
    );
    admin(&app, "helpdesk", "support").await;
    let driver = Driver::start().await;
    let console = driver.browser("ko-KR").await;
    admin_signs_in(&console, &app, "helpdesk").await;
    console.goto(&app.url("/admin/customers?locked=true")).await;
    console.wait_text("#grid tbody", "jun@example.com").await;
    assert_eq!(
        console.count("#grid tbody tr").await,
        1,
        "only the locked one"
    );
    console.click_text("잠금 해제").await;
    console.wait_text("#notice", "잠금을 해제했습니다").await;
    console.shot("admin-customers-unlock").await;
    app.sign_in("jun@example.com", CUSTOMER_PASSWORD).await;
    console.close().await;
}

/// Japanese and Korean labels from the source documents, the choice remembered, and the forms
/// usable by keyboard alone in a sensible order.
async fn browser_pages_speak_japanese_and_korean_and_work_by_keyboard(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    customer(&app, "mai@example.com", "ja").await;
    let driver = Driver::start().await;

    // Accept-Language picks Japanese.
    let browser = driver.browser("ja").await;
    browser.goto(&app.url("/account/sign-in")).await;
    assert_eq!(browser.text("#forgot-link").await, "パスワードを忘れた場合");
    browser.click("#forgot-link").await;
    browser.wait_path("/account/forgot-password").await;
    assert_eq!(browser.text("label[for=email]").await, "メールアドレス");
    assert_eq!(
        browser.text("#forgot button[type=submit]").await,
        "パスワードをリセット"
    );
    browser.shot("storefront-forgot-password-ja").await;
    browser
        .goto(&app.url("/account/reset-password?token=x"))
        .await;
    assert_eq!(
        browser.text("label[for=password]").await,
        "新しいパスワード"
    );

    // An explicit choice wins over Accept-Language and is remembered.
    browser.click("a[hreflang=ko]").await;
    browser.wait_text("h1", "새 암호 설정").await;
    browser.goto(&app.url("/account/forgot-password")).await;
    assert_eq!(browser.text("label[for=email]").await, "이메일 주소");
    assert_eq!(
        browser.text("#forgot button[type=submit]").await,
        "내 암호 재설정"
    );
    browser.shot("storefront-forgot-password-ko").await;
    browser.goto(&app.url("/admin/sign-in")).await;
    assert_eq!(browser.text("label[for=username]").await, "사용자 이름");
    browser.close().await;

    // Keyboard: Tab walks the sign-in form in reading order; Enter submits.
    let browser = driver.browser("en-US").await;
    browser.goto(&app.url("/account/sign-in")).await;
    browser.click("#email").await;
    browser.fill("#email", "mai@example.com").await;
    browser.press_tab().await;
    assert_eq!(browser.focused().await, "password");
    browser.press_tab().await;
    assert_eq!(browser.focused().await, "BUTTON", "then Sign In");
    browser.press_tab().await;
    assert_eq!(
        browser.focused().await,
        "forgot-link",
        "then Forgot Your Password?"
    );
    browser
        .find("#password")
        .await
        .send_keys(&format!("{CUSTOMER_PASSWORD}\u{e007}"))
        .await
        .unwrap();
    browser.wait_path("/account").await;
    browser.wait_text("#who", "mai@example.com").await;
    browser.close().await;
}

/// The grid's selection and Actions menu, the confirmation that states the count, and the Jobs
/// page following each job to its end: Force Sign In on two checked customers; "Require New
/// Password" by keyboard alone on the one a filter finds; a reset email to "all 30 that match",
/// cancelled half-way. Each checked against what the customers see (sessions, passwords, mail).
async fn browser_admin_runs_bulk_actions_and_follows_their_jobs(backend: Backend) {
    let smtp = SmtpReceiver::start().await;
    let url = smtp.url();
    // Two customers a second: slow enough to watch a job move, and to cancel one.
    let app = TestApp::spawn_with(backend, |c| {
        c.smtp_url = Some(Secret::new(url));
        c.bulk_customers_per_second = 2;
    })
    .await;
    import_customers(&app, 30);
    let mut tokens = Vec::new();
    for i in 0..3 {
        let email = format!("signed{i}@example.com");
        named_customer(&app, &email, "en", "Sign", &format!("In{i}")).await;
        tokens.push(app.sign_in(&email, CUSTOMER_PASSWORD).await);
    }
    admin(&app, "ops", "administrator").await;
    let driver = Driver::start().await;
    let console = driver.browser("en-US").await;
    admin_signs_in(&console, &app, "ops").await;
    console.wait_text("#count", "33 records found").await;
    console
        .wait_text("#selected-count", "No customers selected")
        .await;
    assert_eq!(
        console
            .eval("document.getElementById('actions').disabled")
            .await,
        json!(true),
        "nothing to act on yet"
    );

    force_sign_in_on_two_checked_rows(&console, &app, &tokens).await;
    require_new_password_by_keyboard(&console, &app).await;
    reset_email_to_all_that_match_cancelled(&console, &app, &smtp).await;
    audit_log_and_jobs_in_japanese_and_korean(&console, &app).await;
    console.close().await;
}

/// Two checked rows, Force Sign In: Cancel changes nothing, OK signs exactly them out.
async fn force_sign_in_on_two_checked_rows(console: &Browser, app: &TestApp, tokens: &[String]) {
    console.fill("#search", "signed").await;
    console.click_text("Search").await;
    console.wait_text("#count", "3 records found").await;
    console.check_row("signed2@example.com").await;
    console.check_row("signed1@example.com").await;
    console
        .wait_text("#selected-count", "2 customers selected")
        .await;
    console
        .wait_until("document.getElementById('select-page').indeterminate")
        .await;
    console.click("#actions").await;
    assert!(console.visible("#actions-menu").await);
    console.shot("admin-customers-selected").await;
    console.click_text("Force Sign In").await;
    console
        .wait_text("#bulk-confirm-text", "Revoke the tokens of 2 customers?")
        .await;
    console.shot("admin-bulk-confirm").await;
    console.click("#bulk-cancel").await;
    assert!(!console.visible("#bulk-confirm").await);
    assert_eq!(console.focused().await, "actions", "focus back on Actions");
    assert!(
        app.whoami(&tokens[2]).await.is_ok(),
        "Cancel changes nothing"
    );
    console.click("#actions").await;
    console.click_text("Force Sign In").await;
    console.click("#bulk-ok").await;
    console.wait_path("/admin/jobs").await;
    console
        .wait_text("#notice", "The job has started for 2 customers.")
        .await;
    console.wait_text("#jobs tbody tr.new", "Finished").await;
    console.wait_text("#jobs tbody tr.new", "2 of 2").await;
    assert_eq!(app.whoami(&tokens[2]).await, Err("UNAUTHENTICATED".into()));
    assert_eq!(app.whoami(&tokens[1]).await, Err("UNAUTHENTICATED".into()));
    assert_eq!(
        app.whoami(&tokens[0]).await.as_deref(),
        Ok("signed0@example.com"),
        "not selected, still signed in"
    );
}

/// The new filters: signed in now finds the one left; by keyboard alone, Require New
/// Password (ArrowUp opens the menu on its last item; Tab from Cancel reaches OK).
async fn require_new_password_by_keyboard(console: &Browser, app: &TestApp) {
    console.click_text("Customers › All Customers").await;
    console.wait_path("/admin/customers").await;
    console.click("#filters summary").await;
    console.choose("#signedIn", "true").await;
    console.click_text("Apply Filters").await;
    console.wait_text("#count", "1 records found").await;
    console
        .wait_text("#grid tbody", "signed0@example.com")
        .await;
    assert!(
        console.url().await.contains("signedIn=true"),
        "in the address"
    );
    console.wait_text("#filter-count", "(1 on)").await;
    console.check_row("signed0@example.com").await;
    console
        .find("#actions")
        .await
        .send_keys("\u{e013}")
        .await
        .unwrap();
    assert_eq!(
        console.eval("document.activeElement.dataset.action").await,
        json!("REQUIRE_NEW_PASSWORD")
    );
    console.keys("\u{e007}").await;
    console
        .wait_text(
            "#bulk-confirm-text",
            "Require a new password from 1 customer?",
        )
        .await;
    assert_eq!(
        console.focused().await,
        "bulk-cancel",
        "Cancel is the default"
    );
    console.press_tab().await;
    assert_eq!(console.focused().await, "bulk-ok");
    console.keys("\u{e007}").await;
    console.wait_path("/admin/jobs").await;
    console
        .wait_text("#notice", "The job has started for 1 customer.")
        .await;
    console.wait_text("#jobs tbody tr.new", "Finished").await;
    assert_eq!(
        code(
            &app.sign_in_response("signed0@example.com", CUSTOMER_PASSWORD)
                .await
        ),
        "AUTHENTICATION_FAILED",
        "the current password stopped working"
    );
    // The address remembers the filters; the password state finds the customer too.
    console.client.back().await.unwrap();
    console.wait_path("/admin/customers").await;
    console.wait_text("#count", "1 records found").await;
    assert!(
        console
            .find("#filters")
            .await
            .attr("open")
            .await
            .unwrap()
            .is_some(),
        "filters in use are shown"
    );
    console.choose("#signedIn", "").await;
    console.choose("#passwordState", "VOIDED").await;
    console.fill("#search", "signed").await;
    console.click_text("Apply Filters").await;
    console.wait_text("#count", "1 records found").await;
    console
        .wait_text("#grid tbody", "signed0@example.com")
        .await;
}

/// Everything that matches: 30 imported customers, more than a page. The job moves on the
/// Jobs page; cancelled, it stops, and the mail sent is exactly what it did.
async fn reset_email_to_all_that_match_cancelled(
    console: &Browser,
    app: &TestApp,
    smtp: &SmtpReceiver,
) {
    console.click_text("Clear all").await;
    console.wait_text("#count", "3 records found").await;
    assert!(!console.url().await.contains("passwordState"));
    console.fill("#search", "bulk").await;
    console.click_text("Search").await;
    console.wait_text("#count", "30 records found").await;
    console.click("#select-page").await;
    console
        .wait_text(
            "#select-all-text",
            "All 20 customers on this page are selected.",
        )
        .await;
    console
        .click_text("Select all 30 customers that match")
        .await;
    console
        .wait_text(
            "#select-all-text",
            "All 30 customers that match are selected.",
        )
        .await;
    console
        .wait_text("#selected-count", "30 customers selected")
        .await;
    assert_eq!(console.focused().await, "actions");
    console.shot("admin-customers-select-all").await;
    console.click("#actions").await;
    console.click_text("Reset Password").await;
    console
        .wait_text(
            "#bulk-confirm-text",
            "Email a link to reset password to 30 customers?",
        )
        .await;
    assert!(
        console
            .text("#bulk-confirm-note")
            .await
            .contains("customers who match later are not included")
    );
    console.click("#bulk-ok").await;
    console.wait_path("/admin/jobs").await;
    console
        .wait_text("#notice", "The job has started for 30 customers.")
        .await;
    console
        .wait_until("document.querySelector('#jobs tr.new progress').value >= 4")
        .await;
    console.shot("admin-jobs").await;
    console.click("#jobs tr.new button.cancel-job").await;
    console
        .wait_text("#cancel-confirm-text", "Stop this job?")
        .await;
    console.click("#cancel-ok").await;
    let notice = console
        .wait_text("#notice", "The job was cancelled after")
        .await;
    console.wait_text("#jobs tbody tr.new", "Cancelled").await;
    assert_eq!(console.count("#jobs tr.new button.cancel-job").await, 0);
    let processed = console
        .eval("Number(document.querySelector('#jobs tr.new').dataset.processed)")
        .await
        .as_u64()
        .unwrap();
    assert!(
        notice.contains(&format!("after {processed} of 30 customers")),
        "{notice}"
    );
    assert!(
        (4..30).contains(&processed),
        "cancelled half-way: {processed}"
    );
    smtp.wait_for(usize::try_from(processed).unwrap()).await;
    let mails = smtp.settled(app).await;
    assert_eq!(
        mails.len() as u64,
        processed,
        "one email per customer done, none after the cancel"
    );
    assert!(mails.iter().all(|m| m.header_to().starts_with("bulk")));
}

/// The audit log names each job; the Jobs page in Japanese and Korean.
async fn audit_log_and_jobs_in_japanese_and_korean(console: &Browser, app: &TestApp) {
    console.click_text("Audit log").await;
    console.wait_path("/admin/audit-log").await;
    let log = console.text("#audit tbody").await;
    assert_eq!(log.matches("Bulk action started").count(), 3, "{log}");
    assert!(log.contains("Bulk job cancelled"), "{log}");
    assert!(log.contains("customers=30"), "{log}");
    console.goto(&app.url("/admin/jobs?lang=ja")).await;
    console.wait_text("h1", "一括ジョブ").await;
    console.wait_text("#jobs tbody", "キャンセル済み").await;
    console.wait_text("#jobs tbody", "完了").await;
    console.shot("admin-jobs-ja").await;
    console.goto(&app.url("/admin/jobs?lang=ko")).await;
    console.wait_text("h1", "일괄 작업").await;
    console.wait_text("#jobs tbody", "취소됨").await;
}

/// The Integrations page, in Japanese: a webhook receiver added, its secret shown once and
/// handed to the receiver, a test event sent and listed as delivered; the receiver (Node,
/// `standardwebhooks`) verified it.
async fn browser_an_administrator_connects_a_service_to_security_events_in_japanese(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let receiver = crate::events::Receiver::start(&app, 0, "unused").await;
    admin(&app, "integrator", "administrator").await;
    let driver = Driver::start().await;
    let console = driver.browser("ja").await;
    admin_signs_in(&console, &app, "integrator").await;
    console.goto(&app.url("/admin/integrations")).await;
    console
        .wait_text("#subscriptions tbody", "受信先はまだありません")
        .await;
    console.fill("#sub-name", "ポイントサービス").await;
    console.fill("#sub-url", &receiver.url("/webhook")).await;
    console.click("#subscribe button[type=submit]").await;
    console
        .wait_text("#notice", "ポイントサービス を追加しました")
        .await;
    let secret = console.wait_text("#integration-secret", "whsec_").await;
    receiver.set_secret(secret.trim()).await;
    console.wait_text("#subscriptions tbody", "送信中").await;
    console.click_text("テスト送信").await;
    console
        .wait_text("#notice", "テストイベントを送信しています")
        .await;
    let hooks = receiver.wait_for(&app, "webhook", 1).await;
    assert_eq!(hooks[0]["data"]["reason"], "test", "{hooks:?}");
    console.click_text("配信履歴").await;
    console.wait_text("#deliveries tbody", "配信済み").await;
    console.shot("admin-integrations-ja").await;
    console.close().await;
}
