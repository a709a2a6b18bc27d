//! The API port's accept loop: what `axum::serve` does, plus the bounds a public server needs
//! against slow and idle clients (`axum::serve` runs hyper without a timer, so none of
//! hyper's timeouts apply there).
//!
//! - **Header read timeout**: a request's head must arrive whole within it, counted from its
//!   first byte. A client that dribbles its headers a byte at a time is cut off. (hyper's own
//!   `header_read_timeout` also runs while a keep-alive connection waits for its next request,
//!   so it could not be shorter than the idle timeout; this one is counted here instead.)
//! - **Idle timeout**: a connection on which no byte moves either way for this long is closed,
//!   whether it sits between keep-alive requests or has stopped reading its response. Keep it
//!   longer than the idle timeout of the load balancer in front (AWS ALB: 60 s), or the balancer
//!   may send a request on a connection this server is closing.
//! - **Connection cap**: past it the server stops accepting (new connections wait in the
//!   kernel's backlog) until one closes, so file descriptors and per-connection memory stay
//!   bounded.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tower::ServiceExt;

/// The bounds of the accept loop (`LATCHKEY_HEADER_READ_TIMEOUT_SECONDS`,
/// `LATCHKEY_IDLE_TIMEOUT_SECONDS`, `LATCHKEY_MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// How long open connections get to finish their requests once shutdown begins.
const DRAIN: Duration = Duration::from_secs(20);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests (up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let io = TokioIo::new(Guarded::new(stream, &limits));
        let connection = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timed out, bad request line): nothing to log.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

/// Where a connection is in reading a request head.
#[derive(Debug, Clone, Copy)]
enum Head {
    /// Between requests: the next byte read (other than the blank lines HTTP/1.1 lets a client
    /// send before a request line) starts a head.
    Awaiting,
    /// Inside a head; `last` are the two bytes read before.
    Reading { last: [u8; 2] },
    /// The head is complete (its empty line was read); the body, if any, follows.
    Done,
    /// An HTTP/2 connection (prior knowledge): frames, not heads; the idle timeout applies.
    Off,
}

/// How an HTTP/2 client opens its connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A TCP stream that fails with `TimedOut` once no byte has moved either way for the idle
/// timeout, or once a request head has taken longer than the header read timeout.
struct Guarded {
    inner: TcpStream,
    idle_timeout: Duration,
    header_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    head: Head,
    /// Set while a head is being read: when it must be complete.
    head_deadline: Option<(Instant, Pin<Box<Sleep>>)>,
    /// The connection's first bytes, until they tell HTTP/2 from HTTP/1.
    opening: Vec<u8>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl Guarded {
    fn new(inner: TcpStream, limits: &ConnectionLimits) -> Self {
        Self {
            inner,
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_read_timeout,
            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            head: Head::Awaiting,
            head_deadline: None,
            opening: Vec::with_capacity(H2_PREFACE.len()),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(next);
    }

    /// Follows the bytes of a request head until its empty line.
    fn read_bytes(&mut self, bytes: &[u8]) {
        if self.opening.len() < H2_PREFACE.len() {
            let take = (H2_PREFACE.len() - self.opening.len()).min(bytes.len());
            self.opening.extend_from_slice(&bytes[..take]);
            if self.opening == H2_PREFACE {
                self.head = Head::Off;
                self.head_deadline = None;
            }
        }
        for &b in bytes {
            match &mut self.head {
                Head::Done | Head::Off => return,
                // Blank lines before a request line are allowed (and skipped by the parser):
                // they neither start nor end a head.
                Head::Awaiting if b == b'\r' || b == b'\n' => {}
                Head::Awaiting => {
                    let at = Instant::now() + self.header_timeout;
                    self.head_deadline = Some((at, Box::pin(tokio::time::sleep_until(at))));
                    self.head = Head::Reading { last: [0, b] };
                }
                Head::Reading { last } => {
                    // The empty line ends the head: LF LF, or LF CR LF.
                    let ends =
                        b == b'\n' && (last[1] == b'\n' || (last[1] == b'\r' && last[0] == b'\n'));
                    if ends {
                        self.head = Head::Done;
                        self.head_deadline = None;
                    } else {
                        *last = [last[1], b];
                    }
                }
            }
        }
    }

    /// An error once a deadline has passed; polling registers the wake-ups.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some((at, sleep)) = &mut self.head_deadline {
            if Instant::now() >= *at || sleep.as_mut().poll(cx).is_ready() {
                return Err(timed_out(
                    "request head not complete within the header read timeout",
                ));
            }
        }
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Err(timed_out("connection idle past the idle timeout")),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    self.moved();
                    self.read_bytes(read);
                    // A client that keeps sending never sees a pending read: check here too.
                    self.check(cx)?;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.check(cx)?;
                Poll::Pending
            }
        }
    }
}

impl Guarded {
    /// Every write's bookkeeping: progress resets the clocks, a pending write checks them.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(result) => {
                self.wrote(data, &result);
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.check(cx)?;
                Poll::Pending
            }
        }
    }

    /// Bytes went out. The server only answers once it has parsed a head, so whatever head
    /// was being followed is complete. An interim answer (`100 Continue`) means the body comes
    /// next; any other means the next byte read starts a new head.
    fn wrote(&mut self, data: &[u8], result: &io::Result<usize>) {
        if matches!(result, Ok(n) if *n > 0) {
            self.moved();
            if !matches!(self.head, Head::Off) {
                self.head_deadline = None;
                self.head = if data.starts_with(b"HTTP/1.1 1") || data.starts_with(b"HTTP/1.0 1") {
                    Head::Done
                } else {
                    Head::Awaiting
                };
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, data, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.after_write(cx, first, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn guarded() -> Guarded {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _) = tokio::join!(listener.accept(), client);
        Guarded::new(
            accepted.unwrap().0,
            &ConnectionLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 1,
            },
        )
    }

    #[tokio::test]
    async fn a_head_ends_at_its_empty_line_split_anywhere_across_reads() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\n\n",
        ] {
            for split in 1..head.len() {
                let mut g = guarded().await;
                g.read_bytes(&head[..split]);
                assert!(
                    !matches!(g.head, Head::Done) || split == head.len(),
                    "done early at {split}"
                );
                g.read_bytes(&head[split..]);
                assert!(matches!(g.head, Head::Done), "split at {split}");
                assert!(g.head_deadline.is_none());
            }
        }
        let mut g = guarded().await;
        g.read_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(g.head, Head::Reading { .. }));
        assert!(g.head_deadline.is_some());
    }

    #[tokio::test]
    async fn blank_lines_before_a_request_neither_start_nor_end_a_head() {
        let mut g = guarded().await;
        g.read_bytes(b"\r\n\r\n\n");
        assert!(matches!(g.head, Head::Awaiting));
        assert!(g.head_deadline.is_none());
        g.read_bytes(b"G");
        assert!(
            g.head_deadline.is_some(),
            "the request line starts the clock"
        );
    }

    #[tokio::test]
    async fn http2_connections_are_not_held_to_a_head_deadline() {
        let mut g = guarded().await;
        g.read_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        g.wrote(b"\0\0\x06\x04", &Ok(4));
        g.read_bytes(b"\0\0\x08\x06 frames without blank lines");
        assert!(matches!(g.head, Head::Off));
        assert!(g.head_deadline.is_none());
    }

    #[tokio::test]
    async fn a_body_after_100_continue_is_not_a_new_head() {
        let mut g = guarded().await;
        g.read_bytes(b"POST /graphql HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        g.wrote(b"HTTP/1.1 100 Continue\r\n\r\n", &Ok(25));
        g.read_bytes(b"{\"query\":\"{ __typename }\"}");
        assert!(matches!(g.head, Head::Done));
        assert!(g.head_deadline.is_none());
        g.wrote(b"HTTP/1.1 200 OK\r\n", &Ok(17));
        assert!(matches!(g.head, Head::Awaiting));
    }
}
