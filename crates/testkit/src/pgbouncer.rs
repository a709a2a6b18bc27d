//! A real PgBouncer in transaction mode, for the API tests (the replica, fault and
//! key-rotation tests run once through it) and the bench's "through PgBouncer" row alike.
//!
//! Transaction pooling hands consecutive transactions of one client connection to different
//! PostgreSQL sessions. Latchkey's statements are prepared (sqlx caches them per connection),
//! so PgBouncer must track protocol-level prepared statements: 1.21 or later with
//! `max_prepared_statements` above 0. Debian 12 ships 1.18, which cannot; `.ci/run` then
//! builds Debian 13's `pgbouncer` source package (see `.ci/pgbouncer.sh`) and points
//! `LATCHKEY_TEST_PGBOUNCER` at it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The oldest PgBouncer that keeps prepared statements working in transaction mode.
const OLDEST: (u32, u32) = (1, 21);

/// The PgBouncer binary the tests use, or why there is none usable.
pub fn available() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("LATCHKEY_TEST_PGBOUNCER") {
        Some(path) => vec![PathBuf::from(path)],
        None => [
            "/usr/sbin/pgbouncer",
            "/usr/bin/pgbouncer",
            "/usr/local/bin/pgbouncer",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    let mut seen = Vec::new();
    for path in candidates {
        let Ok(out) = Command::new(&path).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = text
            .split_whitespace()
            .nth(1)
            .and_then(|v| {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .unwrap_or((0, 0));
        if version >= OLDEST {
            return Ok(path);
        }
        seen.push(format!(
            "{} is {}",
            path.display(),
            text.lines().next().unwrap_or("?")
        ));
    }
    Err(if seen.is_empty() {
        "no pgbouncer binary (set LATCHKEY_TEST_PGBOUNCER)".to_owned()
    } else {
        format!(
            "PgBouncer {}.{} or later is needed for prepared statements in transaction mode; {}",
            OLDEST.0,
            OLDEST.1,
            seen.join(", ")
        )
    })
}

/// The PostgreSQL server and database PgBouncer pools, and the role it logs in as (whose own
/// settings may give the search path).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub role: String,
}

impl Upstream {
    /// The server, database and user of a `postgres://` URL.
    pub fn of_url(url: &str) -> Result<Self, String> {
        let options: sea_orm::sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            dbname: options.get_database().unwrap_or("postgres").to_owned(),
            role: options.get_username().to_owned(),
        })
    }
}

pub struct PgBouncer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts the PgBouncer of [`available`] in transaction mode in front of `upstream`, with
    /// `pool_size` server sessions. Clients connect as user `latchkey` to database `latchkey`.
    pub async fn start(upstream: &Upstream, pool_size: u32) -> Result<Self, String> {
        Self::start_binary(&available()?, upstream, pool_size).await
    }

    /// The same with a given binary.
    ///
    /// Its port is picked free and bound by PgBouncer a moment later; if another process
    /// takes it in between, PgBouncer exits and a fresh port is tried.
    pub async fn start_binary(
        binary: &Path,
        upstream: &Upstream,
        pool_size: u32,
    ) -> Result<Self, String> {
        for _ in 0..4 {
            if let Some(bouncer) = Self::try_start(binary, upstream, pool_size).await? {
                return Ok(bouncer);
            }
        }
        Err("pgbouncer did not start".to_owned())
    }

    async fn try_start(
        binary: &Path,
        upstream: &Upstream,
        pool_size: u32,
    ) -> Result<Option<Self>, String> {
        let Upstream {
            host,
            port,
            dbname,
            role,
        } = upstream;
        let dir = std::env::temp_dir().join(format!(
            "latchkey-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The tests' pool is smaller than the replicas' pools together, as in a deployment:
        // clients wait for a server session instead of each holding one. `query_wait_timeout` below
        // Latchkey's request timeout: with PostgreSQL down, a query waiting for a server
        // session fails after 5 s (a clear INTERNAL_SERVER_ERROR) instead of the default 120 s.
        let ini = format!(
            "[databases]\n\
             latchkey = host={host} port={port} dbname={dbname} user={role} pool_size={pool_size}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             max_prepared_statements = 200\n\
             max_client_conn = 1000\n\
             idle_transaction_timeout = 10\n\
             server_connect_timeout = 2\n\
             server_login_retry = 1\n\
             query_wait_timeout = 5\n",
            users = dir.join("users.txt").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), "\"latchkey\" \"\"\n").unwrap();
        let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut cmd = Command::new(binary);
        if running_as_root() {
            // PgBouncer refuses to run as root; it reads its files as `nobody`.
            readable_by_all(&dir);
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pgbouncer starts");
        let mut bouncer = Self {
            child,
            port: listen,
            dir,
        };
        for _ in 0..200 {
            if bouncer.child.try_wait().ok().flatten().is_some() {
                return Ok(None);
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", listen))
                .await
                .is_ok()
            {
                // The port answered: PgBouncer's, unless it lost the port and is exiting.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok(bouncer
                    .child
                    .try_wait()
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(bouncer));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("pgbouncer did not start: {}", bouncer.log()))
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("postgres://latchkey@127.0.0.1:{}/latchkey", self.port)
    }

    /// CPU seconds PgBouncer has used so far (user + system, from `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (in parentheses): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse().ok())
            .collect();
        ticks.iter().sum::<f64>() / 100.0
    }

    /// What PgBouncer logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn readable_by_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
}
