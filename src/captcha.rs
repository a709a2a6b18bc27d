//! The optional third-party CAPTCHA verification (`LATCHKEY_CAPTCHA_VERIFY_URL`): Turnstile,
//! hCaptcha and reCAPTCHA all verify a token the same way, a form POST of `secret`,
//! `response` and `remoteip` to their `siteverify` answered with JSON `{"success": …}`.

use std::{net::IpAddr, time::Duration};

use crate::config::Secret;

/// How long the provider may take before the token counts as not accepted.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The provider's answer is read up to this size.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

pub struct HttpCaptcha {
    client: reqwest::Client,
    url: String,
    secret: Secret,
}

impl HttpCaptcha {
    pub fn new(url: &str, secret: Secret) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // The configured endpoint answers itself; a redirect is not followed anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            url: url.to_owned(),
            secret,
        })
    }
}

#[async_trait::async_trait]
impl domain::guard::CaptchaVerifier for HttpCaptcha {
    async fn verify(&self, token: &str, ip: Option<IpAddr>) -> bool {
        let ip = ip.map(|ip| ip.to_string());
        let mut form = vec![("secret", self.secret.expose()), ("response", token)];
        if let Some(ip) = ip.as_deref() {
            form.push(("remoteip", ip));
        }
        let answer = async {
            let res = self.client.post(&self.url).form(&form).send().await?;
            if !res.status().is_success() {
                anyhow::bail!("the CAPTCHA verifier answered {}", res.status());
            }
            let bytes = res.bytes().await?;
            anyhow::ensure!(bytes.len() <= MAX_ANSWER_BYTES, "an answer too large");
            let value: serde_json::Value = serde_json::from_slice(&bytes)?;
            Ok(value["success"] == serde_json::Value::Bool(true))
        };
        match answer.await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(event = "captcha_verifier_failed", error = %e);
                false
            }
        }
    }
}
