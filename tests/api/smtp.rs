//! A real SMTP receiver over TCP, started by the tests themselves (nothing to install).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    task::JoinHandle,
};

#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl Received {
    fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a parsable message")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }

    pub fn text(&self) -> String {
        self.parsed()
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.parsed()
            .body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default()
    }

    /// The `Message-ID` (Latchkey's outbox id).
    pub fn message_id(&self) -> String {
        self.parsed().message_id().expect("a Message-ID").to_owned()
    }

    pub fn header_to(&self) -> String {
        let parsed = self.parsed();
        parsed
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned()
    }

    /// The reset link in the plain-text part.
    pub fn link(&self) -> String {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains("token="))
            .unwrap_or_else(|| panic!("no link in: {}", self.text()))
            .to_owned()
    }

    /// The one-time code in the plain-text part (two groups of four digits), without the space.
    pub fn code(&self) -> String {
        self.maybe_code()
            .unwrap_or_else(|| panic!("no code in: {}", self.text()))
    }

    pub fn maybe_code(&self) -> Option<String> {
        let text = self.text();
        let words: Vec<&str> = text.split_whitespace().collect();
        let group = |w: &str| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit());
        words
            .windows(2)
            .find(|w| group(w[0]) && group(w[1]))
            .map(|w| format!("{}{}", w[0], w[1]))
    }

    /// The token of the "this wasn't me" link, if the mail has one.
    pub fn report_token(&self) -> Option<String> {
        let text = self.text();
        let link = text
            .split_whitespace()
            .find(|w| w.contains("/account/not-me?token="))?;
        Some(link.split("token=").nth(1)?.to_owned())
    }

    /// The token of the "unlock" link, if the mail has one.
    pub fn unlock_token(&self) -> Option<String> {
        let text = self.text();
        let link = text
            .split_whitespace()
            .find(|w| w.contains("/account/unlock?token="))?;
        Some(link.split("token=").nth(1)?.to_owned())
    }

    /// The `token` parameter of the link.
    pub fn token(&self) -> String {
        let link = self.link();
        let after = link.split("token=").nth(1).unwrap_or_default();
        after
            .split(['&', '#'])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

pub struct SmtpReceiver {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<Received>>>,
    /// When set, every RCPT TO is answered with this reply (e.g. `451 4.3.0 try later`).
    reject: Arc<Mutex<Option<String>>>,
    /// When set, new connections are accepted but never greeted: the sender must time out.
    stall: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpReceiver {
    pub async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages: Arc<Mutex<Vec<Received>>> = Arc::default();
        let reject: Arc<Mutex<Option<String>>> = Arc::default();
        let stall: Arc<AtomicBool> = Arc::default();
        let (store, refusal, silent) = (messages.clone(), reject.clone(), stall.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (store, refusal) = (store.clone(), refusal.clone());
                let silent = silent.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if silent {
                        // Say nothing; wait for the client to give up.
                        let mut sink = Vec::new();
                        let _ =
                            tokio::io::AsyncReadExt::read_to_end(&mut { socket }, &mut sink).await;
                        return;
                    }
                    let _ = session(socket, store, refusal).await;
                });
            }
        });
        Self {
            addr,
            messages,
            reject,
            stall,
            task,
        }
    }

    /// Makes new connections hang without a greeting (`false`: answer again).
    pub fn stall(&self, on: bool) {
        self.stall.store(on, Ordering::SeqCst);
    }

    /// Makes the server refuse recipients with `reply` (`None`: accept again).
    pub fn reject_with(&self, reply: Option<&str>) {
        *self.reject.lock().unwrap() = reply.map(str::to_owned);
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            if self.messages().len() >= n {
                return self.messages();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} messages, got {}", self.messages().len());
    }

    /// Waits (up to 20 s) for the newest message to `to` whose text contains `needle`.
    pub async fn wait_for_mail(&self, to: &str, needle: &str) -> Received {
        for _ in 0..400 {
            if let Some(found) = self
                .messages()
                .into_iter()
                .rev()
                .find(|m| m.to == vec![to.to_owned()] && m.text().contains(needle))
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail to {to} containing {needle}: {:?}", self.messages());
    }

    /// Every message, once `app` has no mail on its way ([`TestApp::mail_settled`]): what a
    /// "nothing (more) was sent" check reads.
    pub async fn settled(&self, app: &crate::helpers::TestApp) -> Vec<Received> {
        app.mail_settled().await;
        self.messages()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Received>>>,
    reject: Arc<Mutex<Option<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 latchkey-test ESMTP\r\n").await?;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("EHLO") || command.starts_with("HELO") {
            write
                .write_all(b"250-latchkey-test\r\n250 8BITMIME\r\n")
                .await?;
        } else if command.starts_with("MAIL FROM") {
            to.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if command.starts_with("RCPT TO") {
            let refusal = reject.lock().unwrap().clone();
            if let Some(reply) = refusal {
                write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                continue;
            }
            to.push(
                line.trim_end()[8..]
                    .trim()
                    .trim_matches(['<', '>'])
                    .to_owned(),
            );
            write.write_all(b"250 OK\r\n").await?;
        } else if command == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut raw = Vec::new();
            loop {
                let mut data_line = Vec::new();
                if lines.read_until(b'\n', &mut data_line).await? == 0 {
                    return Ok(());
                }
                if data_line == b".\r\n" {
                    break;
                }
                let unstuffed = if data_line.starts_with(b"..") {
                    &data_line[1..]
                } else {
                    &data_line[..]
                };
                raw.extend_from_slice(unstuffed);
            }
            store.lock().unwrap().push(Received {
                to: std::mem::take(&mut to),
                raw,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if command == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            // RSET, NOOP and anything else.
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}
