//! Mail delivery: renders queued outbox rows with the templates in `templates/mail` (English,
//! Japanese, Korean; plain text and HTML) and sends them over SMTP with lettre, or writes
//! `.eml` files when no SMTP server is configured.
//!
//! The worker wakes when a request queues mail (then gathers for 100 ms, so one round serves
//! the requests that arrive just behind it) and polls every second as a fallback. Each round
//! resolves recorded reset requests into tokens and outbox rows, claims rows (safe with many
//! replicas), sends several at once over a pooled connection, marks them sent and scrubs the
//! link, or schedules a retry with exponential backoff and dead-letters after `MAX_ATTEMPTS`.
//! A message is never sent in the request that caused it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use domain::{
    clock::Clock,
    ports::{MailLane, MailSignal},
};
use futures::StreamExt;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Body, Mailbox, MultiPart, SinglePart, header},
    transport::smtp::PoolConfig,
};
use minijinja::{Environment, context};
use persistence::{OutboxMessage, SqlOutbox, SqlResets};
use tokio::sync::{Notify, watch};

/// Messages claimed per round, and how many of them are sent at once (also the size of the SMTP
/// connection pool).
const BATCH: u64 = 64;
const PARALLEL_SENDS: usize = 16;
const POLL: Duration = Duration::from_secs(1);
/// Reset requests resolved per transaction.
const RESOLVE_CHUNK: u64 = PARALLEL_SENDS as u64;
/// How long a woken worker waits for more work before its round (mail goes out this much later).
const GATHER: Duration = Duration::from_millis(100);

/// The claim a worker takes on a batch: the configured lease, but never shorter than a batch
/// can take to send when every attempt runs into the SMTP timeout (a shorter lease would let
/// another replica claim rows still being sent, and send them twice).
pub fn lease(configured_seconds: u64, smtp_timeout_seconds: u64) -> chrono::Duration {
    let rounds = BATCH.div_ceil(PARALLEL_SENDS as u64) + 1;
    let floor = smtp_timeout_seconds.max(1).saturating_mul(rounds);
    chrono::Duration::seconds(configured_seconds.max(floor).min(i64::MAX as u64) as i64)
}

/// How one send went: `Err((detail, permanent))`, where a permanent refusal (SMTP 5xx) will
/// not succeed on retry.
type SendOutcome = Result<(), (String, bool)>;

/// Where mail goes (a clone shares the SMTP connection pool).
#[derive(Clone)]
pub enum Transport {
    /// The transport, and the deadline for one whole send.
    Smtp(AsyncSmtpTransport<Tokio1Executor>, Duration),
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    /// `smtp://host:port` (plain, or STARTTLS with `?tls=required`), `smtps://user:pass@host`
    /// (TLS with hostname verification, rustls). Without a URL: `.eml` files in `dir`.
    pub fn new(smtp_url: Option<&str>, timeout: Duration, dir: PathBuf) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|_| anyhow::anyhow!("LATCHKEY_SMTP_URL is not a valid SMTP URL"))?
                    .timeout(Some(timeout))
                    .pool_config(PoolConfig::new().max_size(PARALLEL_SENDS as u32))
                    .build();
                Ok(Self::Smtp(transport, timeout))
            }
            None => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating LATCHKEY_MAIL_DIR {}", dir.display()))?;
                Ok(Self::Files(AsyncFileTransport::new(dir)))
            }
        }
    }

    /// `Err((detail, permanent))`: a permanent refusal (SMTP 5xx) will not succeed on retry.
    async fn send(&self, message: Message) -> SendOutcome {
        match self {
            // lettre's timeout bounds connecting but not every reply: a server that accepts
            // the connection and never greets would hold the send, and the worker, forever
            // (found by the test with a silent receiver). One deadline covers the whole send.
            Self::Smtp(t, deadline) => match tokio::time::timeout(*deadline, t.send(message)).await
            {
                Ok(sent) => sent
                    .map(|_| ())
                    .map_err(|e| (e.to_string(), e.is_permanent())),
                Err(_) => Err((
                    format!("SMTP send timed out after {} s", deadline.as_secs()),
                    false,
                )),
            },
            Self::Files(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| (e.to_string(), false)),
        }
    }
}

/// The compiled-in templates.
pub struct Templates {
    env: Environment<'static>,
    store_name: String,
    /// "This wasn't me" links for the security mails (none in unit tests of other kinds).
    reports: Option<domain::report::ReportLinks>,
}

macro_rules! templates {
    ($env:ident, $($name:literal),* $(,)?) => {
        $(
            $env.add_template(
                concat!($name, ".subject.txt"),
                include_str!(concat!("../../../templates/mail/", $name, ".subject.txt")),
            )?;
            $env.add_template(
                concat!($name, ".txt"),
                include_str!(concat!("../../../templates/mail/", $name, ".txt")),
            )?;
            $env.add_template(
                concat!($name, ".html"),
                include_str!(concat!("../../../templates/mail/", $name, ".html")),
            )?;
        )*
    };
}

/// A rendered message.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    pub fn new(store_name: String) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        templates!(
            env,
            "password_reset.en",
            "password_reset.ja",
            "password_reset.ko",
            "password_changed.en",
            "password_changed.ja",
            "password_changed.ko",
            "email_change_confirm.en",
            "email_change_confirm.ja",
            "email_change_confirm.ko",
            "email_change_notice.en",
            "email_change_notice.ja",
            "email_change_notice.ko",
            "admin_invitation.en",
            "admin_invitation.ja",
            "admin_invitation.ko",
            "admin_password_reset.en",
            "admin_password_reset.ja",
            "admin_password_reset.ko",
            "account_frozen.en",
            "account_frozen.ja",
            "account_frozen.ko",
            "admin_password_changed.en",
            "admin_password_changed.ja",
            "admin_password_changed.ko",
            "account_reported.en",
            "account_reported.ja",
            "account_reported.ko",
            "sign_in_code.en",
            "sign_in_code.ja",
            "sign_in_code.ko",
            "admin_factors_reset.en",
            "admin_factors_reset.ja",
            "admin_factors_reset.ko",
            "breached_password.en",
            "breached_password.ja",
            "breached_password.ko",
            "sign_in_locked.en",
            "sign_in_locked.ja",
            "sign_in_locked.ko",
        );
        Ok(Self {
            env,
            store_name,
            reports: None,
        })
    }

    /// Security mails carry a "this wasn't me" link made with `links`.
    pub fn with_reports(mut self, links: domain::report::ReportLinks) -> Self {
        self.reports = Some(links);
        self
    }

    pub fn render(&self, m: &OutboxMessage) -> anyhow::Result<Rendered> {
        let kind = m.kind.as_str();
        let name = format!("{kind}.{}", m.locale.as_str());
        let hours = m
            .link_expires_at
            .map(|until| ((until - chrono::Utc::now()).num_minutes() + 59) / 60)
            .unwrap_or(24)
            .max(1);
        // A code reads in two groups of four ("1234 5678"); typed back, the space is forgiven.
        let code = m.code.as_ref().map(|(code, _)| {
            let (head, tail) = code.split_at(code.len() / 2);
            format!("{head} {tail}")
        });
        let code_minutes = m
            .code
            .as_ref()
            .map(|(_, until)| ((*until - chrono::Utc::now()).num_seconds() + 59) / 60)
            .unwrap_or(15)
            .max(1);
        let ctx = context! {
            firstname => m.firstname,
            lastname => m.lastname,
            link => m.link.as_deref().map(|l| domain::reset::with_locale(l, m.locale)),
            hours => hours,
            code => code,
            code_minutes => code_minutes,
            report => self
                .reports
                .as_ref()
                .filter(|_| domain::report::REPORTABLE.contains(&m.kind))
                .map(|links| links.link(m.id)),
            unlock => self
                .reports
                .as_ref()
                .filter(|_| m.kind == domain::ports::MailKind::SignInLocked)
                .map(|links| links.unlock_link(m.id)),
            store => self.store_name,
        };
        let render = |suffix: &str| -> anyhow::Result<String> {
            Ok(self
                .env
                .get_template(&format!("{name}.{suffix}"))?
                .render(&ctx)?)
        };
        Ok(Rendered {
            subject: render("subject.txt")?.trim().to_owned(),
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

/// Wakes the worker; the domain's [`MailSignal`].
#[derive(Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl MailSignal for Wakeup {
    fn notify(&self) {
        self.0.notify_one();
    }
}

impl Wakeup {
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// A cap on sends per second (the bulk lane's `LATCHKEY_BULK_MAIL_PER_SECOND`).
pub type SendRate = governor::DefaultDirectRateLimiter;

/// One lane's worker: the interactive lane's also resolves reset requests; the bulk lane's
/// may be held to a send rate.
pub struct MailWorker {
    pub store: Arc<SqlOutbox>,
    /// The interactive lane resolves reset requests into mail.
    pub resets: Arc<SqlResets>,
    pub lane: MailLane,
    pub rate: Option<Arc<SendRate>>,
    pub transport: Transport,
    pub templates: Arc<Templates>,
    pub from: Mailbox,
    pub clock: Arc<dyn Clock>,
    pub wakeup: Wakeup,
    /// How long a claim protects a message being sent; after it a crashed replica's claimed
    /// rows are sent by another (`LATCHKEY_MAIL_LEASE_SECONDS`).
    pub lease: chrono::Duration,
    /// What `rate` allows per second (for the batch size).
    pub rate_per_second: u64,
}

impl MailWorker {
    /// The bulk lane's worker beside this one: same transport (and SMTP pool), templates and
    /// sender, its own wake-up, and `per_second` sends at most when non-zero.
    pub fn bulk_lane(&self, per_second: u32) -> Self {
        Self {
            store: self.store.clone(),
            resets: self.resets.clone(),
            lane: MailLane::Bulk,
            rate: std::num::NonZeroU32::new(per_second).map(|n| {
                Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                    n,
                )))
            }),
            transport: self.transport.clone(),
            templates: self.templates.clone(),
            from: self.from.clone(),
            clock: self.clock.clone(),
            wakeup: Wakeup::default(),
            lease: self.lease,
            rate_per_second: u64::from(per_second),
        }
    }
}

impl MailWorker {
    /// Delivers until `stop` turns true; a batch in flight is finished first, and whatever is
    /// still queued is left for the next start.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            if let Err(e) = self.drain(&stop).await {
                tracing::warn!(error = %e, "mail delivery round failed; will retry");
            }
            self.report_backlog().await;
            tokio::select! {
                () = self.wakeup.0.notified() => {
                    // Let the requests arriving just behind the one that woke us join its
                    // round: one resolution, one claim and a few marks for many messages,
                    // instead of a round of writes beside every next request.
                    tokio::select! {
                        () = tokio::time::sleep(GATHER) => {},
                        _ = stop.changed() => {},
                    }
                },
                () = tokio::time::sleep(POLL) => {},
                _ = stop.changed() => {},
            }
        }
        tracing::info!("mail worker stopped");
    }

    /// Sets `latchkey_mail_oldest_pending_seconds{lane}`: the age of the oldest message not
    /// sent yet (0 when none waits). Measured after every round, so a queue that stops moving
    /// shows as a gauge that keeps growing, whichever replica is stuck.
    async fn report_backlog(&self) {
        match self.store.oldest_unsent(self.lane).await {
            Ok(oldest) => {
                let age = oldest
                    .map(|at| (self.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("latchkey_mail_oldest_pending_seconds", "lane" => self.lane.as_str())
                    .set(age);
            }
            Err(e) => tracing::warn!(error = %e, "could not measure the mail backlog"),
        }
        if self.lane == MailLane::Interactive {
            match self.resets.backlog().await {
                Ok((unresolved, oldest)) => {
                    let age = oldest
                        .map(|at| (self.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0)
                        .unwrap_or(0.0);
                    metrics::gauge!("latchkey_reset_requests_unresolved").set(unresolved as f64);
                    metrics::gauge!("latchkey_reset_requests_oldest_seconds").set(age);
                }
                Err(e) => tracing::warn!(error = %e, "could not measure the reset request backlog"),
            }
        }
    }

    /// Messages claimed at once: [`BATCH`], or fewer when a send rate would make a batch
    /// outlast its lease (another replica would then send its last messages again).
    fn batch(&self) -> u64 {
        match &self.rate {
            None => BATCH,
            Some(_) => {
                let per_second = self.rate_per_second.max(1);
                let lease = u64::try_from(self.lease.num_seconds()).unwrap_or(0);
                (per_second.saturating_mul(lease) / 2).clamp(1, BATCH)
            }
        }
    }

    /// Resolves the recorded reset requests (interactive lane), then sends everything due now
    /// in this lane; returns how many messages were attempted.
    pub async fn drain(&self, stop: &watch::Receiver<bool>) -> anyhow::Result<usize> {
        let mut attempted = 0;
        let requeued = self
            .store
            .requeue_expired(self.clock.now(), self.lane)
            .await
            .map_err(|e| anyhow::anyhow!("requeueing expired claims: {e}"))?;
        if requeued > 0 {
            tracing::warn!(
                lane = self.lane.as_str(),
                requeued,
                "mail claimed by a worker that stopped is sent again"
            );
        }
        let batch_size = self.batch();
        while !*stop.borrow() {
            // Resolved a few at a time, each few in a short transaction of its own: on SQLite a
            // request waiting to be recorded waits for one such transaction, not for a round.
            let mut resolved = 0;
            while self.lane == MailLane::Interactive && resolved < BATCH as usize {
                let n = self
                    .resets
                    .resolve_reset_requests(self.clock.now(), RESOLVE_CHUNK)
                    .await
                    .map_err(|e| anyhow::anyhow!("resolving reset requests: {e}"))?;
                resolved += n;
                if n < RESOLVE_CHUNK as usize {
                    break;
                }
            }
            let batch = self
                .store
                .claim_mail(self.clock.now(), batch_size, self.lease, self.lane)
                .await
                .map_err(|e| anyhow::anyhow!("claiming mail: {e}"))?;
            if batch.is_empty() {
                if resolved == 0 {
                    break;
                }
                continue;
            }
            attempted += batch.len();
            let caught_up = resolved < BATCH as usize && (batch.len() as u64) < batch_size;
            // Sends run `PARALLEL_SENDS` at a time; whatever has been sent when a send finishes
            // is marked in one statement, so a crash re-sends at most the few in flight.
            let mut sends = futures::stream::iter(batch)
                .map(|m| self.attempt(m))
                .buffer_unordered(PARALLEL_SENDS)
                .ready_chunks(PARALLEL_SENDS);
            while let Some(done) = sends.next().await {
                self.record(done).await;
            }
            // A round that was not full has caught up: the next one waits for the wake-up and
            // gathers, instead of writing beside every request that arrives meanwhile.
            if caught_up {
                break;
            }
        }
        Ok(attempted)
    }

    /// Builds and sends one message; the outcome is recorded by [`record`](Self::record).
    async fn attempt(&self, m: OutboxMessage) -> (OutboxMessage, SendOutcome) {
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        // A template or builder bug must not take the worker down: it fails this message only.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.build(&m)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("building the message panicked")));
        let outcome = match built {
            Ok(message) => self.transport.send(message).await,
            // A message that cannot be built will not build on retry either.
            Err(e) => Err((e.to_string(), true)),
        };
        (m, outcome)
    }

    async fn record(&self, done: Vec<(OutboxMessage, SendOutcome)>) {
        let now = self.clock.now();
        let mut sent = Vec::with_capacity(done.len());
        for (m, outcome) in done {
            match outcome {
                Ok(()) => {
                    metrics::counter!("latchkey_mail_sent_total", "kind" => m.kind.as_str(), "lane" => self.lane.as_str())
                        .increment(1);
                    sent.push(m);
                }
                Err((error, permanent)) => {
                    metrics::counter!("latchkey_mail_failed_total", "kind" => m.kind.as_str(), "lane" => self.lane.as_str())
                        .increment(1);
                    match self.store.mark_failed(&m, now, &error, permanent).await {
                        Ok(true) => {
                            tracing::error!(mail_id = %m.id, %error, permanent, "mail dead-lettered: it will not be retried")
                        }
                        Ok(false) => {
                            tracing::warn!(mail_id = %m.id, attempt = m.attempts + 1, %error, "mail not sent; will retry")
                        }
                        Err(e) => {
                            tracing::error!(mail_id = %m.id, error = %e, "could not record a failed send")
                        }
                    }
                }
            }
        }
        if let Err(e) = self.store.mark_sent(&sent, now).await {
            tracing::error!(messages = sent.len(), error = %e, "mail sent but not marked; it may be retried");
        }
    }

    fn build(&self, m: &OutboxMessage) -> anyhow::Result<Message> {
        let rendered = self.templates.render(m)?;
        let to: Mailbox = m
            .recipient
            .parse()
            .map_err(|_| anyhow::anyhow!("the stored recipient is not a deliverable address"))?;
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            // The outbox id: a retried message keeps its Message-ID, so duplicates can be told.
            .message_id(Some(format!("<{}@latchkey>", m.id)))
            .multipart(self.body(rendered.text, rendered.html))?)
    }

    /// SMTP gets lettre's safe transfer encodings; `.eml` files get 8-bit parts where the text
    /// allows, so a person reading the file sees the text and the whole link unwrapped.
    fn body(&self, text: String, html: String) -> MultiPart {
        if matches!(self.transport, Transport::Smtp(..)) {
            return MultiPart::alternative_plain_html(text, html);
        }
        let part = |content_type: header::ContentType, body: String| {
            let crlf = body.replace("\r\n", "\n").replace('\n', "\r\n");
            // 8bit allows any UTF-8 but no NUL and no line over 998 octets (RFC 5322).
            if crlf.contains('\0') || crlf.split("\r\n").any(|line| line.len() > 998) {
                return SinglePart::builder().header(content_type).body(body);
            }
            let eight_bit = Body::dangerous_pre_encoded(
                crlf.into_bytes(),
                header::ContentTransferEncoding::EightBit,
            );
            SinglePart::builder().header(content_type).body(eight_bit)
        };
        MultiPart::alternative()
            .singlepart(part(header::ContentType::TEXT_PLAIN, text))
            .singlepart(part(header::ContentType::TEXT_HTML, html))
    }
}

#[cfg(test)]
mod tests {
    use super::lease;

    #[test]
    fn a_lease_outlasts_a_batch_that_times_out_on_every_send() {
        // Defaults: 16 messages, 4 at a time, 10 s timeout → 5 rounds = 50 s < 60 s.
        assert_eq!(lease(60, 10).num_seconds(), 60);
        // A short configured lease is raised to what a stalled batch can take.
        assert_eq!(lease(5, 10).num_seconds(), 50);
        assert_eq!(lease(5, 1).num_seconds(), 5);
        assert_eq!(lease(0, 0).num_seconds(), 5);
    }

    /// Every kind of message has its subject, text and HTML in every language, each naming
    /// the store, and those with a link carry it (with the language filled in) in both parts.
    #[test]
    fn every_message_renders_in_every_language() {
        use domain::{customer::Locale, ports::MailKind};
        let templates = super::Templates::new("Test Store".into()).unwrap();
        for kind in MailKind::ALL {
            for locale in [Locale::En, Locale::Ja, Locale::Ko] {
                let message = persistence::OutboxMessage {
                    id: uuid::Uuid::nil(),
                    claim_id: uuid::Uuid::nil(),
                    kind,
                    recipient: "ann@example.com".into(),
                    locale,
                    link: Some("https://shop.example/x?token=abc&lang={locale}".into()),
                    link_expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(24)),
                    code: None,
                    firstname: "Ann".into(),
                    lastname: "Lee".into(),
                    attempts: 0,
                };
                let r = templates.render(&message).unwrap();
                let at = format!("{kind:?} {locale:?}");
                assert!(r.subject.contains("Test Store"), "{at}: {}", r.subject);
                if kind == MailKind::EmailChangeConfirm {
                    // It goes to an address nobody has confirmed yet: no name the account
                    // holder (or a thief) typed reaches it.
                    assert!(!r.text.contains("Ann") && !r.html.contains("Ann"), "{at}");
                    assert!(!r.text.contains("Lee") && !r.html.contains("Lee"), "{at}");
                } else if !matches!(
                    kind,
                    MailKind::AdminInvitation
                        | MailKind::AdminPasswordReset
                        | MailKind::AdminPasswordChanged
                        | MailKind::AdminFactorsReset
                ) {
                    assert!(r.text.contains("Ann") && r.html.contains("Ann"), "{at}");
                }
                if !matches!(
                    kind,
                    MailKind::PasswordChanged
                        | MailKind::AdminPasswordChanged
                        | MailKind::AccountReported
                        | MailKind::SignInCode
                        | MailKind::AdminFactorsReset
                        | MailKind::BreachedPassword
                        | MailKind::SignInLocked
                ) {
                    let link = format!("token=abc&lang={}", locale.as_str());
                    assert!(r.text.contains(&link), "{at}: {}", r.text);
                    assert!(
                        r.html.contains(&link.replace('&', "&amp;")),
                        "{at}: {}",
                        r.html
                    );
                }
            }
        }
    }

    /// A reset started by code carries the code in two groups with its minutes, beside the
    /// link or (a store that resets by code only) alone, in every language.
    #[test]
    fn a_reset_mail_carries_its_code_with_or_without_the_link() {
        use domain::{customer::Locale, ports::MailKind};
        let templates = super::Templates::new("Test Store".into()).unwrap();
        for locale in [Locale::En, Locale::Ja, Locale::Ko] {
            for link in [Some("https://shop.example/x?token=abc".to_owned()), None] {
                let message = persistence::OutboxMessage {
                    id: uuid::Uuid::nil(),
                    claim_id: uuid::Uuid::nil(),
                    kind: MailKind::PasswordReset,
                    recipient: "ann@example.com".into(),
                    locale,
                    link_expires_at: link
                        .as_ref()
                        .map(|_| chrono::Utc::now() + chrono::Duration::hours(24)),
                    link: link.clone(),
                    code: Some((
                        "12345678".into(),
                        chrono::Utc::now() + chrono::Duration::minutes(15),
                    )),
                    firstname: "Ann".into(),
                    lastname: "Lee".into(),
                    attempts: 0,
                };
                let r = templates.render(&message).unwrap();
                let at = format!("{locale:?} {link:?}");
                for part in [&r.text, &r.html] {
                    assert!(part.contains("1234 5678"), "{at}: {part}");
                    assert!(part.contains("15"), "{at}: {part}");
                    assert_eq!(part.contains("token=abc"), link.is_some(), "{at}: {part}");
                }
            }
        }
    }
}
