//! The legacy hash budget: each kind of imported hash, at the parameters real platforms use
//! and at the edge of the limits, timed on this machine as a multiple of one native argon2id
//! verification measured in the same run, beside the estimate the server decides with
//! (`Recipe::cost`) and whether the server accepts it.

use std::time::Instant;

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use domain::stored_hash::{self, WorkLimits};

/// Median seconds of `runs` verifications of `stored` (a wrong password: the whole recipe runs).
fn time(stored: &str, runs: usize) -> anyhow::Result<f64> {
    let lifted = WorkLimits {
        max_memory_kib: u32::MAX,
        max_cost: u32::MAX,
        max_argon2_passes: u32::MAX,
        max_bcrypt_cost: 31,
        max_pbkdf2_iterations: u32::MAX,
        max_chain: usize::MAX,
    };
    let recipe =
        stored_hash::parse(stored, None, &lifted).map_err(|e| anyhow::anyhow!("{stored}: {e}"))?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        latchkey::hashing::verify_recipe_once(&recipe, b"not-the-password")?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

pub fn run(quick: bool) -> anyhow::Result<()> {
    let salt = b64(b"saltsaltsaltsalt");
    let out = b64(&[7u8; 32]);
    let django_out = |len: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; len]);
    let argon2 = |m: u32, t: u32| format!("$argon2id$v=19$m={m},t={t},p=1${salt}${out}");
    let scrypt = |ln: u8, r: u32, p: u32| format!("$scrypt$ln={ln},r={r},p={p}${salt}${out}");
    let pbkdf2 = |prf: &str, i: u32| {
        let len = if prf == "sha1" { 20 } else { 32 };
        format!("pbkdf2_{prf}${i}$salt${}", django_out(len))
    };
    let bcrypt =
        |cost: u32| format!("$2b${cost:02}$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZO");
    // Magento 2: sha256 then libsodium argon2id13 (64 MiB, 2 passes), chained.
    // (versions 1:2:2:2: one sha256 step, then three argon2id steps.)
    let magento_chain = format!(
        "{}:{}:1:2:2:2",
        "a".repeat(64),
        "abcdefghabcdefghabcdefghabcdefgh"
    );
    let mut cases: Vec<(&str, String)> = vec![
        ("argon2id 19 MiB t=2 (native)", argon2(19 * 1024, 2)),
        (
            "argon2id 64 MiB t=2 (Magento 2 sodium)",
            argon2(64 * 1024, 2),
        ),
        ("argon2id 256 MiB t=2", argon2(256 * 1024, 2)),
        ("argon2id 256 MiB t=4", argon2(256 * 1024, 4)),
        ("scrypt ln=14 r=8 p=1 (16 MiB)", scrypt(14, 8, 1)),
        ("scrypt ln=17 r=8 p=1 (128 MiB)", scrypt(17, 8, 1)),
        ("scrypt ln=1 r=1 p=2000", scrypt(1, 1, 2000)),
        ("scrypt ln=14 r=8 p=64", scrypt(14, 8, 64)),
        (
            "pbkdf2_sha256 1,000,000 (Django 5.2)",
            pbkdf2("sha256", 1_000_000),
        ),
        (
            "pbkdf2_sha256 1,200,000 (Django 6.0)",
            pbkdf2("sha256", 1_200_000),
        ),
        ("pbkdf2_sha1 1,000,000", pbkdf2("sha1", 1_000_000)),
        ("bcrypt cost 10", bcrypt(10)),
        ("bcrypt cost 12", bcrypt(12)),
        ("bcrypt cost 13", bcrypt(13)),
        ("bcrypt cost 14", bcrypt(14)),
        (
            "Magento 2 chain sha256 → 3 × argon2id 64 MiB",
            magento_chain,
        ),
    ];
    if quick {
        cases.retain(|(name, _)| !name.contains("p=64") && !name.contains("p=2000"));
    }
    let runs = if quick { 1 } else { 3 };
    let native = time(&cases[0].1, runs * 3)?;
    println!(
        "== legacy hash budget: one native argon2id verification = {:.1} ms; budget {}× native",
        native * 1e3,
        WorkLimits::default().max_cost
    );
    println!(
        "{:<46} {:>10} {:>10} {:>10}  server",
        "recipe", "ms", "measured×", "estimate×"
    );
    for (name, stored) in &cases {
        let limits = latchkey::hashing::work_limits();
        let lifted = WorkLimits {
            max_cost: u32::MAX,
            max_memory_kib: u32::MAX,
            ..limits
        };
        let estimate = stored_hash::parse(stored, None, &lifted)
            .map(|r| r.cost())
            .unwrap_or(f64::NAN);
        let verdict = match stored_hash::parse(stored, None, &limits) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("refused ({e})"),
        };
        let seconds = time(stored, runs)?;
        println!(
            "{name:<46} {:>10.1} {:>10.2} {:>10.2}  {verdict}",
            seconds * 1e3,
            seconds / native,
            estimate
        );
    }
    Ok(())
}
