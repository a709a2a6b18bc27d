//! A minimal SMTP server that accepts every message and counts it: the bench's mail goes over
//! real SMTP (the worker's pooled connections), not to files.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// Starts the sink; returns its address and the count of messages accepted. It runs on an OS
/// thread and a runtime of its own, as a store's SMTP relay would run apart from a client: the
/// load generator's connections must not wait behind the sink's sessions in one runtime (that
/// would charge the mail's cost to the requests that caused it, and to nobody else).
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("smtp-sink".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((socket, _)) = listener.accept().await {
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        let _ = session(socket, &counter).await;
                    });
                }
            });
        })?;
    Ok((addr, count))
}

async fn session(socket: tokio::net::TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 bench ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if command.starts_with("EHLO") {
            write.write_all(b"250-bench\r\n250 8BITMIME\r\n").await?;
        } else if command.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            loop {
                line.clear();
                if lines.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
            }
            count.fetch_add(1, Ordering::Relaxed);
            write.write_all(b"250 queued\r\n").await?;
        } else if command.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}
