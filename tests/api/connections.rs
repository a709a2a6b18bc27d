//! The API port against slow, idle and too many clients: headers that dribble in are cut off,
//! idle connections are closed, and past the connection cap the server stops accepting.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Backend, TestApp};

crate::tests![
    a_client_that_dribbles_its_headers_is_cut_off,
    an_idle_connection_is_closed_after_the_idle_timeout_and_not_before,
    past_the_connection_cap_new_connections_wait_for_a_free_one,
    a_body_sent_after_100_continue_and_the_next_request_are_served,
];

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n";

/// Reads until the server closes the connection or `within` passes; true when it closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one request and reads its whole (small) response head and body.
async fn answered(stream: &mut TcpStream) -> String {
    stream.write_all(HEALTHZ).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn a_client_that_dribbles_its_headers_is_cut_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.header_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 60;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // Blank lines first (allowed before a request line): they must not count as a finished head.
    stream
        .write_all(b"\r\n\r\nPOST /graphql HTTP/1.1\r\nHost: shop\r\n")
        .await
        .unwrap();
    // One header byte every 200 ms keeps bytes moving (no idle timeout), but the head never
    // completes: the header read timeout must end it.
    let started = Instant::now();
    let mut cut_off = false;
    for byte in b"X-Slow: ".iter().cycle().take(40) {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(200)).await {
            cut_off = true;
            break;
        }
    }
    let after = started.elapsed();
    assert!(
        cut_off,
        "a client dribbling its headers for {after:?} was never cut off"
    );
    assert!(
        after < Duration::from_secs(5),
        "cut off only after {after:?}"
    );
}

async fn an_idle_connection_is_closed_after_the_idle_timeout_and_not_before(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.header_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 3;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    assert!(answered(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header read timeout but less than the idle timeout: a load
    // balancer reusing its keep-alive connection now must be served, not reset.
    assert!(
        !closed_within(&mut stream, Duration::from_millis(1800)).await,
        "an idle keep-alive connection was closed before the idle timeout"
    );
    assert!(answered(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(6)).await,
        "an idle keep-alive connection was never closed"
    );
    // A connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(6)).await);
}

async fn past_the_connection_cap_new_connections_wait_for_a_free_one(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_connections = 2;
        c.header_read_timeout_seconds = 30;
        c.idle_timeout_seconds = 60;
    })
    .await;
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    assert!(answered(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    assert!(answered(&mut second).await.starts_with("HTTP/1.1 200"));
    // The kernel completes the handshake (the backlog), but the server does not take the
    // connection while two are open.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served past a cap of two"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(second);
}

/// `Expect: 100-continue`: the body comes after the server's interim answer, and may take
/// longer than the header read timeout; it is not a request head and must not be cut off, nor
/// may the keep-alive request after it.
async fn a_body_sent_after_100_continue_and_the_next_request_are_served(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.header_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 60;
    })
    .await;
    let body = br#"{"query":"{ __typename }"}"#;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an interim answer")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(body).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(answered(&mut stream).await.starts_with("HTTP/1.1 200"));
}
