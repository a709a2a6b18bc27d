//! A small HTTP/1.1 load generator on hyper: a fixed number of keep-alive connections, each
//! sending requests back to back for a fixed time; latencies in an HDR histogram.
//!
//! At the deadline every connection hangs up at once, with its request still in flight, as
//! `wrk`, load balancers and impatient browsers do: the server must lose those answers, never
//! their writes (the bench's drain check after each scenario sees the outbox empty out).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

/// Builds the `n`-th request of a run (so scenarios can vary tokens, emails, ...).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Requests still in flight at the deadline, abandoned by hanging up.
    pub abandoned: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

pub fn post(
    addr: SocketAddr,
    path: &str,
    body: String,
    token: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

pub fn get(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// Runs `connections` connections for `duration`, each sending at least one request. A
/// response counts as an error unless it is 200 without a GraphQL `errors` member.
pub async fn run(
    addr: SocketAddr,
    make: MakeRequest,
    connections: usize,
    duration: Duration,
) -> Stats {
    spread(&[addr], make, connections, duration).await
}

/// Like [`run`], with the connections spread evenly over `addrs` (replicas behind a
/// round-robin balancer).
pub async fn spread(
    addrs: &[SocketAddr],
    make: MakeRequest,
    connections: usize,
    duration: Duration,
) -> Stats {
    let mut all = classified(addrs, make, Arc::new(|_| 0), 1, connections, duration).await;
    all.swap_remove(0)
}

/// Says which of a run's classes the `n`-th request belongs to (`0..classes`).
pub type Classify = Arc<dyn Fn(u64) -> usize + Send + Sync>;

/// Like [`spread`], with each request's latency recorded in the histogram of its class, so
/// classes interleaved on the same connections can be compared request by request (the way a
/// timing test such as dudect compares them: whatever else the server is doing weighs on every
/// class alike). `requests`, `errors` and the percentiles are per class; `seconds` and
/// `abandoned` are the run's.
pub async fn classified(
    addrs: &[SocketAddr],
    make: MakeRequest,
    classify: Classify,
    classes: usize,
    connections: usize,
    duration: Duration,
) -> Vec<Stats> {
    let classes = classes.max(1);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let addr = addrs[connection % addrs.len()];
        let make = make.clone();
        let counter = counter.clone();
        let classify = classify.clone();
        tasks.push(tokio::spawn(async move {
            let mut hists = vec![new_hist(); classes];
            let mut errors = vec![0u64; classes];
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                errors[0] += 1;
                return (hists, errors, 0);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                errors[0] += 1;
                return (hists, errors, 0);
            };
            let conn = tokio::spawn(conn);
            let mut abandoned = 0u64;
            // At least one request per connection, even when connecting took the whole
            // duration (a zero duration sends exactly one, and waits for its answer).
            let mut first = true;
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let class = classify(n).min(classes - 1);
                let t0 = Instant::now();
                let exchange = async {
                    match sender.send_request(make(n)).await {
                        Ok(res) => {
                            let status = res.status();
                            match res.into_body().collect().await {
                                Ok(body) => {
                                    let body = body.to_bytes();
                                    status == 200 && !contains(&body, b"\"errors\"")
                                }
                                Err(_) => false,
                            }
                        }
                        Err(_) => false,
                    }
                };
                let ok = if first && duration.is_zero() {
                    exchange.await
                } else {
                    tokio::select! {
                        ok = exchange => ok,
                        () = tokio::time::sleep_until(deadline.into()) => {
                            abandoned += 1;
                            break;
                        }
                    }
                };
                first = false;
                let _ = hists[class].record(t0.elapsed().as_micros() as u64);
                if !ok {
                    errors[class] += 1;
                }
                if Instant::now() >= deadline || sender.ready().await.is_err() {
                    break;
                }
            }
            // Hang up: the connection closes whatever is in flight.
            conn.abort();
            (hists, errors, abandoned)
        }));
    }
    let mut all = vec![new_hist(); classes];
    let mut errors = vec![0u64; classes];
    let mut abandoned = 0;
    for t in tasks {
        if let Ok((hists, e, a)) = t.await {
            for (class, h) in hists.iter().enumerate() {
                let _ = all[class].add(h);
                errors[class] += e[class];
            }
            abandoned += a;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.iter()
        .zip(errors)
        .map(|(hist, errors)| Stats {
            requests: hist.len(),
            errors,
            abandoned,
            seconds,
            p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        })
        .collect()
}

fn new_hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_hist()))
}

fn unreachable_hist() -> Histogram<u64> {
    // `Histogram::new(3)` cannot fail for 3 significant digits; this keeps the code panic-free.
    Histogram::new_with_max(60_000_000, 3).unwrap_or_else(|_| std::process::exit(2))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
