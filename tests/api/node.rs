//! Third-party Node clients (`tests/node`: jose, graphql-http, Apollo Gateway): what the
//! store's other services and a storefront team would point at Latchkey. Their packages come
//! from the npm registry, pinned by `tests/node/package-lock.json`, and are installed with
//! `npm ci` the first time the tests run.

use std::{path::PathBuf, process::Command, sync::OnceLock};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// `Ok` when `node` runs and the packages are installed (installing them if needed).
pub fn available() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY.get_or_init(install).clone()
}

fn install() -> Result<(), String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node is not on PATH".into());
    }
    let dir = dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (std::fs::metadata(&installed), std::fs::metadata(&lock)) {
        (Ok(i), Ok(l)) => i.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    eprintln!("installing the Node test clients (npm ci in tests/node)");
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm ci in tests/node failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Runs `tests/node/<script>` with `args`; its exit status and standard output.
pub async fn run(script: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("node")
        .arg(dir().join(script))
        .args(args)
        .current_dir(dir())
        .output()
        .await
        .expect("node");
    if !out.stderr.is_empty() {
        eprintln!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Starts `tests/node/<script>` in the background (a gateway and its subgraph), killed on
/// drop, with its standard output piped (it says where it listens on its first line).
pub fn spawn(script: &str, env: &[(&str, String)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir().join(script))
        .current_dir(dir())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("node")
}
