//! The event worker: pushes security events to the store's other services.
//!
//! One task per enabled subscription per replica, so a slow or dead receiver holds back only
//! itself (never another subscription, never the mail). Each task claims the subscription's
//! due deliveries, at most the subscription's cap in flight across every replica and the
//! earliest unsettled one of each subject (so a subject's events arrive in order), sends them
//! at once, and settles them: delivered on a 2xx, else retried with backoff and jitter, and
//! dead-lettered after the last attempt. An idle task wakes when a change of this process
//! commits events, and otherwise looks for due work with one index read every `poll` (100 ms
//! by default): events written on another replica go out within that.
//!
//! Every request: no redirects, no proxy from the environment, the whole exchange (connect,
//! send, the answer's head and at most 4 KiB of its body) within `timeout`, and every address
//! the receiver's name resolves to checked against the endpoint policy (in production no
//! loopback, private or link-local address, whatever the name: DNS rebinding gains nothing).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use domain::{
    clock::Clock,
    events::{EndpointPolicy, Outgoing, SetSigner, Subscription, WebhookSecret, render},
    keys::Sealer,
};
use persistence::{Settled, SqlEvents};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

/// Bytes of a receiver's answer read at most (then the connection is dropped).
const MAX_ANSWER: usize = 4096;
/// How often the set of enabled subscriptions is read again.
const REFRESH: Duration = Duration::from_secs(2);
/// How often an idle task claims anyway, to put claims a dead replica left back in line.
const RECLAIM: Duration = Duration::from_secs(5);

/// The worker; `run` until `stopped`.
#[derive(Clone)]
pub struct EventWorker {
    pub events: Arc<SqlEvents>,
    pub signer: Arc<dyn SetSigner>,
    pub secrets: Sealer,
    /// The SETs' `iss`: this server's public URL.
    pub issuer: String,
    pub endpoints: EndpointPolicy,
    /// The whole exchange with a receiver.
    pub timeout: Duration,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: i32,
    /// How often an idle task looks for due work.
    pub poll: Duration,
    pub clock: Arc<dyn Clock>,
}

/// What the resolver answers for a name with no address events may go to.
const REFUSED_NAME: &str = "resolves to no address events may be sent to";

/// Resolves a receiver's name and keeps only the addresses the endpoint policy allows.
struct GuardedResolver(EndpointPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.check_address(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("{host} {REFUSED_NAME} (internal addresses are refused)").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How one attempt went.
struct Attempt {
    status: Option<u16>,
    error: Option<String>,
}

impl EventWorker {
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!(
                "Latchkey/",
                env!("CARGO_PKG_VERSION"),
                " (security events)"
            ))
            .dns_resolver(Arc::new(GuardedResolver(self.endpoints.clone())))
            .build()?)
    }

    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the event worker cannot build its HTTP client");
                return;
            }
        };
        let mut tasks: HashMap<Uuid, (Subscription, JoinHandle<()>)> = HashMap::new();
        loop {
            match self.events.enabled().await {
                Ok(enabled) => {
                    let live: HashMap<Uuid, (Subscription, Option<Vec<u8>>)> =
                        enabled.into_iter().map(|(s, k)| (s.id, (s, k))).collect();
                    // Gone, disabled or changed: its task ends (a changed one starts again).
                    tasks.retain(|id, (s, handle)| {
                        let keep =
                            live.get(id).is_some_and(|(now, _)| now == s) && !handle.is_finished();
                        if !keep {
                            handle.abort();
                        }
                        keep
                    });
                    for (id, (s, sealed)) in live {
                        if tasks.contains_key(&id) {
                            continue;
                        }
                        let secret = sealed.and_then(|sealed| {
                            let opened = self
                                .secrets
                                .open(&id.to_string(), &sealed)
                                .and_then(|b| String::from_utf8(b).ok())
                                .map(WebhookSecret::from_stored);
                            if opened.is_none() {
                                tracing::error!(
                                    subscription = %id,
                                    "a webhook secret does not open with this server's secret: \
                                     its deliveries fail until it is replaced (New secret)"
                                );
                            }
                            opened
                        });
                        let task = SubscriptionTask {
                            worker: self.clone(),
                            client: client.clone(),
                            subscription: s.clone(),
                            secret,
                        };
                        tasks.insert(id, (s, tokio::spawn(task.run(stopped.clone()))));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading event subscriptions failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = stopped.changed() => break,
            }
            if *stopped.borrow() {
                break;
            }
        }
        for (_, (_, handle)) in tasks {
            handle.abort();
        }
    }
}

struct SubscriptionTask {
    worker: EventWorker,
    client: reqwest::Client,
    subscription: Subscription,
    secret: Option<WebhookSecret>,
}

impl SubscriptionTask {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let id = self.subscription.id;
        let mut last_claim = Instant::now().checked_sub(RECLAIM);
        // The last round's outcomes, settled in the transaction of the next claim (one write
        // a round: on SQLite every write waits for the one lock).
        let mut unsettled: Vec<Settled> = Vec::new();
        let mut commits = self.worker.events.commits();
        loop {
            if *stopped.borrow() {
                let now = self.worker.clock.now();
                if let Err(e) = self.worker.events.settle(unsettled, now).await {
                    tracing::warn!(error = %e, "settling event deliveries failed");
                }
                return;
            }
            // Commits from here on wake the next wait, even those during this claim.
            commits.borrow_and_update();
            let now = self.worker.clock.now();
            let requeue = last_claim.is_none_or(|at| at.elapsed() >= RECLAIM);
            let due = requeue
                || !unsettled.is_empty()
                || self.worker.events.due(id, now).await.unwrap_or(true);
            if due {
                if requeue {
                    last_claim = Some(Instant::now());
                }
                let lease = chrono::Duration::from_std(self.worker.timeout * 2)
                    .unwrap_or(chrono::Duration::seconds(60));
                let settled = std::mem::take(&mut unsettled);
                match self
                    .worker
                    .events
                    .claim(id, now, lease, requeue, settled)
                    .await
                {
                    Ok(batch) if !batch.is_empty() => {
                        unsettled = self.round(batch).await;
                        // More may be waiting: claim again at once.
                        continue;
                    }
                    Ok(_) => {}
                    // The round's claims expire and go out again, with the same event ids.
                    Err(e) => {
                        tracing::warn!(error = %e, subscription = %id, "claiming events failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.worker.poll) => {}
                _ = commits.changed() => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// Sends a claimed batch at once; how each went (settled with the next claim).
    async fn round(&self, batch: Vec<Outgoing>) -> Vec<Settled> {
        let attempts = futures::future::join_all(batch.iter().map(|d| self.attempt(d))).await;
        let now = self.worker.clock.now();
        batch
            .iter()
            .zip(attempts)
            .map(|(d, a)| {
                let status = a.status.map(i32::from);
                let failure = a.error.map(|error| {
                    let tries = d.attempts + 1;
                    let retry = (tries < self.worker.max_attempts)
                        .then(|| now + domain::events::backoff(tries, jitter()));
                    if retry.is_none() {
                        tracing::warn!(
                            subscription = %self.subscription.id,
                            delivery = d.seq,
                            "a security event was dead-lettered after its last attempt"
                        );
                        metrics::counter!("latchkey_events_dead_total").increment(1);
                    }
                    (error, retry)
                });
                if failure.is_none() {
                    metrics::counter!("latchkey_events_delivered_total").increment(1);
                    let lag = (now - d.occurred_at).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("latchkey_events_delivery_lag_seconds").record(lag);
                } else {
                    metrics::counter!("latchkey_events_failed_attempts_total").increment(1);
                }
                Settled {
                    seq: d.seq,
                    claim_id: d.claim_id,
                    subscription_id: self.subscription.id,
                    subject_id: d.subject_id,
                    status,
                    failure,
                }
            })
            .collect()
    }

    async fn attempt(&self, d: &Outgoing) -> Attempt {
        let s = &self.subscription;
        let fail = |error: String| Attempt {
            status: None,
            error: Some(error),
        };
        // The URL is checked again as it is now: a literal address never meets the resolver.
        if let Err(refusal) = self.worker.endpoints.check_url(&s.url) {
            return fail(format!("refused: {}", refusal.message()));
        }
        // Signed at the time of sending by the system clock: receivers hold the timestamp
        // against their own clocks (Standard Webhooks refuses one five minutes off).
        let now = chrono::Utc::now();
        let rendered = match render(
            d,
            s,
            self.secret.as_ref(),
            self.worker.signer.as_ref(),
            &self.worker.issuer,
            now,
        ) {
            Ok(r) => r,
            Err(e) => return fail(format!("cannot sign: {e}")),
        };
        let mut request = self
            .client
            .post(&s.url)
            .header(reqwest::header::CONTENT_TYPE, rendered.content_type)
            .body(rendered.body);
        for (name, value) in rendered.headers {
            request = request.header(name, value);
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status();
            let mut answer = Vec::new();
            while answer.len() < MAX_ANSWER {
                match response.chunk().await? {
                    Some(chunk) => answer.extend_from_slice(&chunk),
                    None => break,
                }
            }
            Ok::<_, reqwest::Error>((status, answer))
        };
        match tokio::time::timeout(self.worker.timeout, exchange).await {
            Err(_) => fail(format!(
                "no answer within {} s",
                self.worker.timeout.as_secs_f64()
            )),
            Ok(Err(e)) if e.is_timeout() => fail(format!(
                "no answer within {} s",
                self.worker.timeout.as_secs_f64()
            )),
            Ok(Err(e)) => fail(describe(e)),
            Ok(Ok((status, _))) if status.is_success() => Attempt {
                status: Some(status.as_u16()),
                error: None,
            },
            // The status only: what a receiver answers is not shown (on an allowed internal
            // network that would make a reader of other services' answers).
            Ok(Ok((status, _))) => Attempt {
                status: Some(status.as_u16()),
                error: Some(if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed")
                } else {
                    format!("HTTP {status}")
                }),
            },
        }
    }
}

/// A transport failure as a class, never the receiver's words or the URL: the refused
/// address, a failed connection, TLS, or anything else.
fn describe(e: reqwest::Error) -> String {
    let mut chain = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if chain.contains(REFUSED_NAME) {
        "refused: the name resolves to an internal address".to_owned()
    } else if e.is_connect() {
        if chain.contains("certificate") || chain.contains("tls") || chain.contains("TLS") {
            "could not connect: TLS failed".to_owned()
        } else if chain.contains("dns") || chain.contains("resolve") || chain.contains("lookup") {
            "could not connect: the name does not resolve".to_owned()
        } else {
            "could not connect".to_owned()
        }
    } else if e.is_body() || e.is_decode() {
        "the answer was cut short".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// A number in [0, 1) for the backoff's jitter.
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / 65536.0
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use reqwest::dns::Resolve;

    use super::*;

    /// A name that resolves to this machine is refused in production, whatever the URL said;
    /// the operator's network lets it through.
    #[tokio::test]
    async fn the_resolver_refuses_internal_addresses_unless_allowed() {
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let strict = GuardedResolver(EndpointPolicy::strict(Vec::new()));
        assert!(strict.resolve(name()).await.is_err());
        let allowed = GuardedResolver(EndpointPolicy::strict(vec![
            domain::events::Network::parse("127.0.0.0/8").unwrap(),
            domain::events::Network::parse("::1/128").unwrap(),
        ]));
        let addrs: Vec<SocketAddr> = allowed.resolve(name()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
