//! A PgBouncer in transaction mode in front of the bench's PostgreSQL database, for the
//! "through PgBouncer vs direct" row: the binary comes from `--pgbouncer` (`.ci/pgbouncer.sh`
//! prints one).

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use tokio::process::{Child, Command};

pub struct PgBouncer {
    child: Child,
    pub url: String,
}

impl PgBouncer {
    /// CPU seconds PgBouncer has used so far (user + system, from `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse().ok())
            .collect();
        ticks.iter().sum::<f64>() / 100.0
    }
}

/// Starts `binary` in `dir` in front of `url`'s server and database, with `pool_size` server
/// sessions, listening on `listen`.
pub async fn start(
    binary: &Path,
    dir: &Path,
    url: &str,
    pool_size: u32,
    listen: SocketAddr,
) -> anyhow::Result<PgBouncer> {
    let upstream: sea_orm::sqlx::postgres::PgConnectOptions = url.parse()?;
    let ini = format!(
        "[databases]\n\
         latchkey = host={host} port={port} dbname={db} user={user} pool_size={pool_size}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {listen_port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {users}\n\
         pool_mode = transaction\n\
         max_prepared_statements = 200\n\
         max_client_conn = 1000\n\
         idle_transaction_timeout = 10\n\
         query_wait_timeout = 10\n",
        host = upstream.get_host(),
        port = upstream.get_port(),
        db = upstream.get_database().unwrap_or("postgres"),
        user = upstream.get_username(),
        listen_port = listen.port(),
        users = dir.join("pgbouncer-users.txt").display(),
    );
    std::fs::write(dir.join("pgbouncer.ini"), ini)?;
    std::fs::write(dir.join("pgbouncer-users.txt"), "\"latchkey\" \"\"\n")?;
    let mut cmd = Command::new(binary);
    // PgBouncer refuses to run as root; then it reads its files as `nobody`.
    if std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["pgbouncer.ini", "pgbouncer-users.txt"] {
            std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        cmd.args(["-u", "nobody"]);
    }
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(PgBouncer {
                child,
                url: format!("postgres://latchkey@{listen}/latchkey"),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("pgbouncer did not start")
}
