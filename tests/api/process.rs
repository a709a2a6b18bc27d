//! The real `latchkey` binary as a child process on a test's database: for signals (SIGTERM,
//! SIGKILL) and for replicas that share nothing but PostgreSQL, not even a process.

use std::{net::SocketAddr, time::Duration};

use latchkey::config::Config;
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its metrics listener.
    pub metrics_addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `latchkey serve` on `config`'s database (and schema, and secret) with `env` on
    /// top, and waits until `/readyz` answers 200.
    ///
    /// The ports are picked free and handed to the child, which binds them a moment later;
    /// another process of the test run may take one in between (the child then exits with
    /// "Address already in use"), so a start that exits early is retried on fresh ports.
    pub async fn start(config: &Config, env: &[(&str, String)]) -> Self {
        for _ in 0..5 {
            if let Some(process) = Self::try_start(config, env).await {
                return process;
            }
        }
        panic!("the server did not start");
    }

    async fn try_start(config: &Config, env: &[(&str, String)]) -> Option<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.envs(crate::helpers::database_env(config))
            .env("LATCHKEY_LISTEN", addr.to_string())
            .env("LATCHKEY_METRICS_LISTEN", metrics_addr.to_string())
            .env("LATCHKEY_MAIL_DIR", config.mail_dir.display().to_string())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut process = Self {
            child: cmd.spawn().unwrap(),
            addr,
            metrics_addr,
        };
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if process.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if client
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                // Ready: this child's, unless it lost a port and is exiting.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return process
                    .child
                    .try_wait()
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(process);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start");
    }

    /// The value of the unlabelled metric `name` on its metrics listener, if it is there yet.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }
}
