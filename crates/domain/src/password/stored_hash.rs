//! Stored password hashes: Latchkey's own argon2id, and the formats other shops leave behind
//! (Magento 2 and 1, bcrypt, Django, PHC argon2 and scrypt), parsed into a recipe the hasher can
//! run. The recipe says what to compute from a password and what to compare it with; its cost
//! is known before anything runs, so a hash that asks for more work than [`WorkLimits`] allows
//! is refused (at import with a reason, at sign-in as a wrong password) instead of computed.
//!
//! `docs/legacy-hashes.md` describes each format byte by byte, and where it was read from.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD},
};

/// The prefix of Latchkey's own hashes (PHC argon2id, version 0x13). Other argon2 strings
/// (argon2i, version 0x10, no version) are legacy: verified by their recipe, then upgraded.
pub const NATIVE_PREFIX: &str = "$argon2id$v=19$";

/// The families of stored hashes, as the import's `hash_format` column names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFormat {
    /// PHC `$argon2id$` / `$argon2i$` / `$argon2d$` strings (Latchkey's own included).
    Argon2,
    /// PHC `$scrypt$ln=…,r=…,p=…$salt$hash` (passlib's `.` alphabet accepted too).
    Scrypt,
    /// `$2a$`, `$2b$`, `$2y$` (Vendure, Laravel, Sylius, Devise, Spree, OpenMage).
    Bcrypt,
    /// Magento 2 `hash:salt:version[:version…]`.
    Magento2,
    /// Magento 1 / OpenMage `hex:salt` or unsalted `hex` (MD5, SHA-256 or SHA-512 of salt ‖
    /// password); OpenMage's bcrypt strings are accepted under this name too.
    Magento1,
    /// Django (Saleor): `pbkdf2_sha256$…`, `pbkdf2_sha1$…`, `argon2$…`, `bcrypt_sha256$…`,
    /// `bcrypt$…`, `scrypt$…`.
    Django,
}

impl HashFormat {
    pub const ALL: [Self; 6] = [
        Self::Argon2,
        Self::Scrypt,
        Self::Bcrypt,
        Self::Magento2,
        Self::Magento1,
        Self::Django,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Argon2 => "argon2",
            Self::Scrypt => "scrypt",
            Self::Bcrypt => "bcrypt",
            Self::Magento2 => "magento2",
            Self::Magento1 => "magento1",
            Self::Django => "django",
        }
    }

    pub fn parse(label: &str) -> Option<Self> {
        let label = label.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.as_str() == label)
    }

    /// The format a stored string is in, from its shape alone.
    pub fn detect(stored: &str) -> Option<Self> {
        if stored.starts_with("$argon2") {
            Some(Self::Argon2)
        } else if stored.starts_with("$scrypt$") {
            Some(Self::Scrypt)
        } else if stored.starts_with("$2") {
            Some(Self::Bcrypt)
        } else if [
            "pbkdf2_sha256$",
            "pbkdf2_sha1$",
            "argon2$",
            "bcrypt_sha256$",
            "bcrypt$",
            "scrypt$",
        ]
        .iter()
        .any(|p| stored.starts_with(p))
        {
            Some(Self::Django)
        } else {
            let parts: Vec<&str> = stored.split(':').collect();
            match parts.len() {
                1 | 2 if is_hex(parts[0]) && matches!(parts[0].len(), 32 | 64 | 128) => {
                    Some(Self::Magento1)
                }
                n if n >= 3 && is_hex(parts[0]) => Some(Self::Magento2),
                _ => None,
            }
        }
    }
}

/// The stored "hash" of a password voided on purpose ("this wasn't me", Require New
/// Password, a legacy password too short to keep): no password matches it, and unlike `""`
/// (imported without one) an import's `--on-conflict update` never fills it with the old
/// platform's hash, which whoever was shut out may know. Not a hash of any format (`!` is
/// Django's mark of an unusable password), so nothing ever verifies against it.
pub const VOID_PASSWORD: &str = "!void";

/// Where a customer's password stands, as the admin grid shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordState {
    /// A Latchkey argon2id hash.
    Set,
    /// A hash imported from another platform, upgraded at the next sign-in.
    Legacy,
    /// No usable hash (imported without one): only "Forgot Your Password?" gets in.
    ResetRequired,
    /// Voided on purpose ([`VOID_PASSWORD`]): only a reset gets in, and an import never
    /// restores a hash over it.
    Voided,
}

impl PasswordState {
    pub fn of(stored: &str) -> Self {
        if stored.is_empty() {
            Self::ResetRequired
        } else if stored == VOID_PASSWORD {
            Self::Voided
        } else if stored.starts_with(NATIVE_PREFIX) {
            Self::Set
        } else {
            Self::Legacy
        }
    }
}

/// The most work one stored hash may ask of a verification. Memory is the bound that matters
/// (the hasher runs a bounded number at once, each within this much); the others bound CPU,
/// one parameter at a time and, with `max_cost`, the recipe as a whole (chains included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    pub max_memory_kib: u32,
    /// The whole recipe's work, in native verifications (see [`Recipe::cost`]): a guess
    /// against an imported hash may cost at most this many times a guess against a Latchkey
    /// hash.
    pub max_cost: u32,
    pub max_argon2_passes: u32,
    pub max_bcrypt_cost: u32,
    pub max_pbkdf2_iterations: u32,
    /// Magento 2 version chains (`…:0:1:2`).
    pub max_chain: usize,
}

impl Default for WorkLimits {
    fn default() -> Self {
        Self {
            max_memory_kib: 256 * 1024,
            max_cost: 40,
            max_argon2_passes: 16,
            max_bcrypt_cost: 14,
            max_pbkdf2_iterations: 2_000_000,
            max_chain: 4,
        }
    }
}

/// Why a stored string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("unknown hash format")]
    Unknown,
    #[error("malformed {0} hash: {1}")]
    Malformed(&'static str, &'static str),
    #[error("{0} hash asks for more work than allowed: {1}")]
    TooCostly(&'static str, String),
    #[error("hash is not in the declared format {0}")]
    NotDeclared(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Variant {
    D,
    I,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    Md5,
    Sha256,
    Sha512,
}

/// PBKDF2's pseudo-random function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    HmacSha1,
    HmacSha256,
}

/// One transformation of the password (or of the previous step's output).
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// `digest(salt ‖ input)`, as lower-case hex text.
    SaltedDigestHex { digest: Digest, salt: Vec<u8> },
    /// Raw argon2 output of `input`; as lower-case hex text when `hex`.
    Argon2 {
        variant: Argon2Variant,
        /// 0x10 or 0x13.
        version: u32,
        m_kib: u32,
        t: u32,
        p: u32,
        salt: Vec<u8>,
        out_len: usize,
        hex: bool,
    },
    /// Raw scrypt output of `input`.
    Scrypt {
        log_n: u8,
        r: u32,
        p: u32,
        salt: Vec<u8>,
        out_len: usize,
    },
    /// Raw PBKDF2 output of `input`.
    Pbkdf2 {
        prf: Prf,
        iterations: u32,
        salt: Vec<u8>,
        out_len: usize,
    },
    /// SHA-256 of `input`, as lower-case hex text (Django's `bcrypt_sha256` pre-hash).
    Sha256Hex,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Salts are not secret, but nothing about a stored hash needs to reach a log.
        f.write_str(match self {
            Self::SaltedDigestHex { .. } => "SaltedDigestHex",
            Self::Argon2 { .. } => "Argon2",
            Self::Scrypt { .. } => "Scrypt",
            Self::Pbkdf2 { .. } => "Pbkdf2",
            Self::Sha256Hex => "Sha256Hex",
        })
    }
}

/// What a verification ends with.
#[derive(Clone, PartialEq, Eq)]
pub enum Finish {
    /// The last step's output equals these bytes (compared in constant time).
    Equals(Vec<u8>),
    /// The last step's output (or the password) verifies against this bcrypt string.
    Bcrypt(String),
}

/// A parsed stored hash: steps from the password, then a comparison.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipe {
    pub format: HashFormat,
    pub steps: Vec<Step>,
    pub finish: Finish,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe")
            .field("format", &self.format)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Recipe {
    /// The most memory one step needs, in KiB.
    pub fn memory_kib(&self) -> u64 {
        self.steps.iter().map(step_memory_kib).max().unwrap_or(0)
    }

    /// The work of one verification, in native verifications (argon2id, m = 19 MiB, t = 2,
    /// p = 1): every step in turn, then the bcrypt comparison if there is one. An estimate
    /// from the parameters alone, calibrated against measured times (BENCHMARKS.md, "Legacy
    /// hash budget"), so it is known before any work is done.
    pub fn cost(&self) -> f64 {
        let finish = match &self.finish {
            Finish::Bcrypt(hash) => bcrypt_cost(hash).map_or(f64::INFINITY, cost::bcrypt),
            Finish::Equals(_) => 0.0,
        };
        self.steps.iter().map(step_cost).sum::<f64>() + finish
    }
}

/// What each kind of work costs, in native verifications. The ratios were measured on the
/// reference machine (2 cores, x86-64; `latchkey-bench hash-budget` prints each measured beside
/// these estimates) and rounded up: the estimate may overstate a recipe's work, never
/// understate it by much.
pub mod cost {
    const MIB_KIB: f64 = 1024.0;
    /// One native verification: argon2id over 19 MiB, two passes.
    const NATIVE_KIB: f64 = 19.0 * MIB_KIB;
    const NATIVE_KIB_PASSES: f64 = NATIVE_KIB * 2.0;
    /// Memory beyond the native 19 MiB is slower per KiB (cache and TLB misses, fresh pages):
    /// measured 2.1–2.4 times per KiB-pass at 64 and 256 MiB.
    const LARGE_MEMORY_FACTOR: f64 = 2.5;
    /// scrypt: ROMix over 16 MiB (`128 · r · N`) measured 1.95 native verifications; above
    /// 16 MiB it slows as argon2 does (128 MiB measured 20).
    const SCRYPT_KIB_PER_NATIVE: f64 = 8.0 * MIB_KIB;
    const SCRYPT_FAST_KIB: f64 = 16.0 * MIB_KIB;
    const SCRYPT_LARGE_FACTOR: f64 = 1.3;
    /// PBKDF2 iterations (per output block) that cost one native verification (measured
    /// 139,000 and 162,000).
    const PBKDF2_SHA256_PER_NATIVE: f64 = 130_000.0;
    const PBKDF2_SHA1_PER_NATIVE: f64 = 150_000.0;
    /// bcrypt rounds (`2^cost`) that cost one native verification (measured 287).
    const BCRYPT_ROUNDS_PER_NATIVE: f64 = 256.0;

    /// argon2 (any variant, any lane count: the lanes run one after another) over `m_kib`
    /// KiB, `t` passes.
    pub fn argon2(m_kib: u32, t: u32) -> f64 {
        let m = f64::from(m_kib);
        let weighted = m.min(NATIVE_KIB) + LARGE_MEMORY_FACTOR * (m - NATIVE_KIB).max(0.0);
        weighted * f64::from(t) / NATIVE_KIB_PASSES
    }

    /// scrypt with `N = 2^log_n`: ROMix runs `p` times over `128 · r · N` bytes.
    pub fn scrypt(log_n: u8, r: u32, p: u32) -> f64 {
        let v_kib = 128.0 * f64::from(r) * 2f64.powi(i32::from(log_n)) / 1024.0;
        let weighted =
            v_kib.min(SCRYPT_FAST_KIB) + SCRYPT_LARGE_FACTOR * (v_kib - SCRYPT_FAST_KIB).max(0.0);
        f64::from(p) * weighted / SCRYPT_KIB_PER_NATIVE
    }

    /// PBKDF2 giving `out_len` bytes: `iterations` per block of the PRF's output size.
    pub fn pbkdf2(prf: super::Prf, iterations: u32, out_len: usize) -> f64 {
        let (block, per_native) = match prf {
            super::Prf::HmacSha256 => (32, PBKDF2_SHA256_PER_NATIVE),
            super::Prf::HmacSha1 => (20, PBKDF2_SHA1_PER_NATIVE),
        };
        let blocks = out_len.div_ceil(block).max(1) as f64;
        f64::from(iterations) * blocks / per_native
    }

    /// bcrypt at `cost` (`2^cost` rounds).
    pub fn bcrypt(cost: u32) -> f64 {
        2f64.powi(i32::try_from(cost).unwrap_or(i32::MAX)) / BCRYPT_ROUNDS_PER_NATIVE
    }
}

/// The output of a digest step (`SaltedDigestHex`, `Sha256Hex`) on `input`; `None` for the
/// costly kinds, which the hasher runs on its own threads.
pub fn digest_step(step: &Step, input: &[u8]) -> Option<Vec<u8>> {
    use md5::Digest as _;
    Some(match step {
        Step::SaltedDigestHex { digest, salt } => {
            let mut data = Vec::with_capacity(salt.len() + input.len());
            data.extend_from_slice(salt);
            data.extend_from_slice(input);
            match digest {
                Digest::Md5 => hex::encode(md5::Md5::digest(&data)).into_bytes(),
                Digest::Sha256 => hex::encode(sha2::Sha256::digest(&data)).into_bytes(),
                Digest::Sha512 => hex::encode(sha2::Sha512::digest(&data)).into_bytes(),
            }
        }
        Step::Sha256Hex => hex::encode(sha2::Sha256::digest(input)).into_bytes(),
        Step::Argon2 { .. } | Step::Scrypt { .. } | Step::Pbkdf2 { .. } => return None,
    })
}

impl Recipe {
    /// Whether the recipe is the hash of the empty password, for recipes made of digests
    /// alone (Magento 1, Magento 2's `0` and `1`): free to find out, so the import finds out.
    /// `None` for recipes whose check costs real work.
    pub fn is_of_empty_password(&self) -> Option<bool> {
        let Finish::Equals(expected) = &self.finish else {
            return None;
        };
        let mut value = Vec::new();
        for step in &self.steps {
            value = digest_step(step, &value)?;
        }
        Some(value.len() == expected.len() && value.iter().zip(expected).all(|(a, b)| a == b))
    }
}

fn step_cost(step: &Step) -> f64 {
    match step {
        Step::Argon2 { m_kib, t, .. } => cost::argon2(*m_kib, *t),
        Step::Scrypt { log_n, r, p, .. } => cost::scrypt(*log_n, *r, *p),
        Step::Pbkdf2 {
            prf,
            iterations,
            out_len,
            ..
        } => cost::pbkdf2(*prf, *iterations, *out_len),
        // A digest of a few hundred bytes: nothing beside the others.
        Step::SaltedDigestHex { .. } | Step::Sha256Hex => 0.0,
    }
}

fn step_memory_kib(step: &Step) -> u64 {
    match step {
        Step::Argon2 { m_kib, .. } => u64::from(*m_kib),
        // scrypt: 128 · r · (N + p) bytes: the N-block table, and p blocks of B besides (a
        // huge p alone asks for gigabytes).
        Step::Scrypt { log_n, r, p, .. } => {
            let n = 1u64.checked_shl(u32::from(*log_n)).unwrap_or(u64::MAX);
            128u64
                .saturating_mul(u64::from(*r))
                .saturating_mul(n.saturating_add(u64::from(*p)))
                >> 10
        }
        _ => 0,
    }
}

/// Parses `stored`, in `declared` format when given (else detected), within `limits`.
pub fn parse(
    stored: &str,
    declared: Option<HashFormat>,
    limits: &WorkLimits,
) -> Result<Recipe, HashError> {
    let detected = HashFormat::detect(stored).ok_or(HashError::Unknown)?;
    // OpenMage writes bcrypt strings; exported as "magento1", they are bcrypt.
    let compatible = |declared| {
        declared == detected || (declared == HashFormat::Magento1 && detected == HashFormat::Bcrypt)
    };
    if let Some(declared) = declared
        && !compatible(declared)
    {
        return Err(HashError::NotDeclared(declared.as_str()));
    }
    let recipe = match detected {
        HashFormat::Argon2 | HashFormat::Scrypt => {
            let (step, expected) = if detected == HashFormat::Argon2 {
                phc_argon2(stored)?
            } else {
                phc_scrypt(stored)?
            };
            Recipe {
                format: detected,
                steps: vec![step],
                finish: Finish::Equals(expected),
            }
        }
        HashFormat::Bcrypt => Recipe {
            format: detected,
            steps: Vec::new(),
            finish: Finish::Bcrypt(bcrypt(stored)?),
        },
        HashFormat::Django => django(stored)?,
        HashFormat::Magento1 => magento1(stored)?,
        HashFormat::Magento2 => magento2(stored)?,
    };
    check_limits(&recipe, limits)?;
    Ok(recipe)
}

fn check_limits(recipe: &Recipe, limits: &WorkLimits) -> Result<(), HashError> {
    let name = recipe.format.as_str();
    if recipe.memory_kib() > u64::from(limits.max_memory_kib) {
        return Err(HashError::TooCostly(
            name,
            format!(
                "{} KiB of memory, at most {} allowed",
                recipe.memory_kib(),
                limits.max_memory_kib
            ),
        ));
    }
    let cost = recipe.cost();
    // NaN (never, but a cost that cannot be compared is not within the budget) is refused too.
    if cost.is_nan() || cost > f64::from(limits.max_cost) {
        return Err(HashError::TooCostly(
            name,
            format!(
                "{cost:.1} times the work of a native hash, at most {} allowed",
                limits.max_cost
            ),
        ));
    }
    if recipe.steps.len() > limits.max_chain {
        return Err(HashError::TooCostly(
            name,
            format!("{} steps, at most {}", recipe.steps.len(), limits.max_chain),
        ));
    }
    for step in &recipe.steps {
        match step {
            Step::Argon2 { t, .. } if *t > limits.max_argon2_passes => {
                return Err(HashError::TooCostly(
                    name,
                    format!("{t} passes, at most {}", limits.max_argon2_passes),
                ));
            }
            Step::Pbkdf2 { iterations, .. } if *iterations > limits.max_pbkdf2_iterations => {
                return Err(HashError::TooCostly(
                    name,
                    format!(
                        "{iterations} iterations, at most {}",
                        limits.max_pbkdf2_iterations
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Finish::Bcrypt(hash) = &recipe.finish {
        let cost = bcrypt_cost(hash).unwrap_or(u32::MAX);
        if cost > limits.max_bcrypt_cost {
            return Err(HashError::TooCostly(
                name,
                format!("cost {cost}, at most {}", limits.max_bcrypt_cost),
            ));
        }
    }
    Ok(())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Magento writes and compares lower-case hex only: an upper-case one never verified there.
fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// PHC base64: standard alphabet without padding; passlib's variant writes `.` for `+`.
fn phc_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.replace('.', "+");
    STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// `k=v,k=v` parameters.
fn phc_params(s: &str) -> Option<Vec<(&str, u64)>> {
    s.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.parse().ok()?))
        })
        .collect()
}

fn param(params: &[(&str, u64)], key: &str) -> Option<u64> {
    params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `$argon2id$v=19$m=…,t=…,p=…$salt$hash` (the `v=` part is optional: 0x10 without it).
fn phc_argon2(stored: &str) -> Result<(Step, Vec<u8>), HashError> {
    const F: &str = "argon2";
    let bad = |why| HashError::Malformed(F, why);
    let mut parts = stored.split('$');
    if parts.next() != Some("") {
        return Err(bad("does not start with $"));
    }
    let variant = match parts.next() {
        Some("argon2id") => Argon2Variant::Id,
        Some("argon2i") => Argon2Variant::I,
        Some("argon2d") => Argon2Variant::D,
        _ => return Err(bad("unknown variant")),
    };
    let rest: Vec<&str> = parts.collect();
    let (version, rest) = match rest.first() {
        Some(v) if v.starts_with("v=") => (
            v[2..].parse::<u32>().map_err(|_| bad("bad version"))?,
            &rest[1..],
        ),
        _ => (0x10, &rest[..]),
    };
    if !matches!(version, 0x10 | 0x13) {
        return Err(bad("unknown version"));
    }
    let [params, salt, hash] = rest else {
        return Err(bad("expected parameters, salt and hash"));
    };
    let params = phc_params(params).ok_or(bad("bad parameters"))?;
    let get = |k| {
        param(&params, k)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(bad("missing parameter"))
    };
    let (m_kib, t, p) = (get("m")?, get("t")?, get("p")?);
    let salt = phc_b64(salt).ok_or(bad("salt is not base64"))?;
    let hash = phc_b64(hash).ok_or(bad("hash is not base64"))?;
    // The argon2 specification's bounds.
    if !(1..=0xFF_FFFF).contains(&p) || m_kib < 8 * p || t < 1 {
        return Err(bad("parameters out of range"));
    }
    if salt.len() < 8 || hash.len() < 4 || hash.len() > 1024 {
        return Err(bad("salt or hash length out of range"));
    }
    Ok((
        Step::Argon2 {
            variant,
            version,
            m_kib,
            t,
            p,
            salt,
            out_len: hash.len(),
            hex: false,
        },
        hash,
    ))
}

/// `$scrypt$ln=…,r=…,p=…$salt$hash`.
fn phc_scrypt(stored: &str) -> Result<(Step, Vec<u8>), HashError> {
    const F: &str = "scrypt";
    let bad = |why| HashError::Malformed(F, why);
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", "scrypt", params, salt, hash] = parts.as_slice() else {
        return Err(bad("expected $scrypt$params$salt$hash"));
    };
    let params = phc_params(params).ok_or(bad("bad parameters"))?;
    let log_n = param(&params, "ln")
        .and_then(|v| u8::try_from(v).ok())
        .ok_or(bad("missing ln"))?;
    let r = param(&params, "r")
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(bad("missing r"))?;
    let p = param(&params, "p")
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(bad("missing p"))?;
    if !(1..64).contains(&log_n) || r == 0 || p == 0 || u64::from(r) * u64::from(p) >= 1 << 30 {
        return Err(bad("parameters out of range"));
    }
    let salt = phc_b64(salt).ok_or(bad("salt is not base64"))?;
    let hash = phc_b64(hash).ok_or(bad("hash is not base64"))?;
    if hash.len() < 10 || hash.len() > 64 {
        return Err(bad("hash length out of range"));
    }
    Ok((
        Step::Scrypt {
            log_n,
            r,
            p,
            salt,
            out_len: hash.len(),
        },
        hash,
    ))
}

/// `$2a$`/`$2b$`/`$2y$` + two-digit cost + 53 characters of bcrypt base64.
fn bcrypt(stored: &str) -> Result<String, HashError> {
    let bad = |why| HashError::Malformed("bcrypt", why);
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", prefix, cost, rest] = parts.as_slice() else {
        return Err(bad("expected $2b$cost$salthash"));
    };
    if !matches!(*prefix, "2a" | "2b" | "2y") {
        // `$2x$` marks PHP's old sign-extension bug: those hashes cannot be checked correctly.
        return Err(bad("unsupported variant"));
    }
    let cost: u32 = cost.parse().map_err(|_| bad("bad cost"))?;
    if !(4..=31).contains(&cost) || rest.len() != 53 {
        return Err(bad("bad cost or length"));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(bad("not bcrypt base64"));
    }
    Ok(stored.to_owned())
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// Django's `algorithm$…` strings.
fn django(stored: &str) -> Result<Recipe, HashError> {
    const F: &str = "django";
    let bad = |why| HashError::Malformed(F, why);
    let format = HashFormat::Django;
    let pbkdf2 = [
        ("pbkdf2_sha256$", Prf::HmacSha256, 32),
        ("pbkdf2_sha1$", Prf::HmacSha1, 20),
    ]
    .into_iter()
    .find_map(|(prefix, prf, len)| Some((stored.strip_prefix(prefix)?, prf, len)));
    if let Some((rest, prf, len)) = pbkdf2 {
        let parts: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, hash] = parts.as_slice() else {
            return Err(bad("expected pbkdf2_…$iterations$salt$hash"));
        };
        let iterations: u32 = iterations.parse().map_err(|_| bad("bad iterations"))?;
        let expected = STANDARD
            .decode(hash)
            .map_err(|_| bad("hash is not base64"))?;
        if iterations == 0 || salt.is_empty() || expected.len() != len {
            return Err(bad("bad iterations, salt or hash length"));
        }
        return Ok(Recipe {
            format,
            steps: vec![Step::Pbkdf2 {
                prf,
                iterations,
                salt: salt.as_bytes().to_vec(),
                out_len: expected.len(),
            }],
            finish: Finish::Equals(expected),
        });
    }
    if let Some(phc) = stored.strip_prefix("argon2") {
        let (step, expected) = phc_argon2(phc)?;
        return Ok(Recipe {
            format,
            steps: vec![step],
            finish: Finish::Equals(expected),
        });
    }
    if let Some(hash) = stored.strip_prefix("bcrypt_sha256$") {
        return Ok(Recipe {
            format,
            steps: vec![Step::Sha256Hex],
            finish: Finish::Bcrypt(bcrypt(hash)?),
        });
    }
    if let Some(rest) = stored.strip_prefix("scrypt$") {
        // `scrypt$N$salt$r$p$hash`: N written out, the salt string's bytes, a 64-byte key.
        let parts: Vec<&str> = rest.split('$').collect();
        let [n, salt, r, p, hash] = parts.as_slice() else {
            return Err(bad("expected scrypt$N$salt$r$p$hash"));
        };
        let n: u64 = n.parse().map_err(|_| bad("bad N"))?;
        let r: u32 = r.parse().map_err(|_| bad("bad r"))?;
        let p: u32 = p.parse().map_err(|_| bad("bad p"))?;
        if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 || salt.is_empty() {
            return Err(bad("parameters out of range"));
        }
        let expected = STANDARD
            .decode(hash)
            .map_err(|_| bad("hash is not base64"))?;
        if expected.len() < 10 || expected.len() > 64 {
            return Err(bad("hash length out of range"));
        }
        return Ok(Recipe {
            format,
            steps: vec![Step::Scrypt {
                log_n: n.trailing_zeros() as u8,
                r,
                p,
                salt: salt.as_bytes().to_vec(),
                out_len: expected.len(),
            }],
            finish: Finish::Equals(expected),
        });
    }
    if let Some(hash) = stored.strip_prefix("bcrypt$") {
        return Ok(Recipe {
            format,
            steps: Vec::new(),
            finish: Finish::Bcrypt(bcrypt(hash)?),
        });
    }
    Err(bad("unknown algorithm"))
}

/// `md5hex:salt`, `sha256hex:salt` (the digest of salt ‖ password), or an unsalted `md5hex`.
fn magento1(stored: &str) -> Result<Recipe, HashError> {
    let bad = |why| HashError::Malformed("magento1", why);
    let (hash, salt) = stored.split_once(':').unwrap_or((stored, ""));
    let digest = match hash.len() {
        32 => Digest::Md5,
        64 => Digest::Sha256,
        128 => Digest::Sha512,
        _ => return Err(bad("hash is not MD5, SHA-256 or SHA-512 hex")),
    };
    if !is_lower_hex(hash) {
        return Err(bad("upper-case hex (Magento compares lower-case only)"));
    }
    Ok(Recipe {
        format: HashFormat::Magento1,
        steps: vec![Step::SaltedDigestHex {
            digest,
            salt: salt.as_bytes().to_vec(),
        }],
        finish: Finish::Equals(hash.as_bytes().to_vec()),
    })
}

/// Magento 2: `hash:salt:version[:version…]` (split at the first two colons, then the
/// versions at every colon). Every version is applied in turn to the salt and the previous
/// step's hex, the first to the password; the last gives the stored hash (lower-case hex).
fn magento2(stored: &str) -> Result<Recipe, HashError> {
    let bad = |why| HashError::Malformed("magento2", why);
    let mut parts = stored.splitn(3, ':');
    let (Some(hash), Some(salt), Some(versions)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected hash:salt:version"));
    };
    if !is_lower_hex(hash) {
        return Err(bad("the hash is not lower-case hex"));
    }
    let salt = salt.as_bytes();
    let mut steps = Vec::new();
    for version in versions.split(':') {
        steps.push(magento2_step(version, salt).ok_or(bad("unknown version"))?);
    }
    Ok(Recipe {
        format: HashFormat::Magento2,
        steps,
        finish: Finish::Equals(hash.as_bytes().to_vec()),
    })
}

/// libsodium's `crypto_pwhash` salt length; Magento pads or cuts its salt to it.
const SODIUM_SALT_BYTES: usize = 16;

fn magento2_step(version: &str, salt: &[u8]) -> Option<Step> {
    // PHP's `str_pad($salt, 16, $salt)` then a cut to 16: a short salt repeats itself; an
    // empty one makes PHP throw, so no argon2 version verifies with it.
    let sodium_salt = || {
        (!salt.is_empty()).then(|| {
            salt.iter()
                .copied()
                .cycle()
                .take(SODIUM_SALT_BYTES)
                .collect::<Vec<u8>>()
        })
    };
    match version {
        "0" => Some(Step::SaltedDigestHex {
            digest: Digest::Md5,
            salt: salt.to_vec(),
        }),
        "1" => Some(Step::SaltedDigestHex {
            digest: Digest::Sha256,
            salt: salt.to_vec(),
        }),
        // Argon2id13 with libsodium's "interactive" limits: 2 passes, 64 MiB.
        "2" => Some(Step::Argon2 {
            variant: Argon2Variant::Id,
            version: 0x13,
            m_kib: 64 * 1024,
            t: 2,
            p: 1,
            salt: sodium_salt()?,
            out_len: 32,
            hex: true,
        }),
        // `3_<length>_<opslimit>_<memlimit bytes>`: Argon2id13 with explicit parameters.
        v => {
            let fields: Vec<&str> = v.split('_').collect();
            let ["3", len, ops, mem] = fields.as_slice() else {
                return None;
            };
            let out_len: usize = len.parse().ok()?;
            let t: u32 = ops.parse().ok()?;
            let mem: u64 = mem.parse().ok()?;
            if !(16..=64).contains(&out_len) || t == 0 || mem < 8 * 1024 {
                return None;
            }
            Some(Step::Argon2 {
                variant: Argon2Variant::Id,
                version: 0x13,
                m_kib: u32::try_from(mem / 1024).ok()?,
                t,
                p: 1,
                salt: sodium_salt()?,
                out_len,
                hex: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> WorkLimits {
        WorkLimits::default()
    }

    #[test]
    fn formats_are_detected_from_their_shape() {
        let cases = [
            (
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                HashFormat::Argon2,
            ),
            (
                "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
                HashFormat::Scrypt,
            ),
            (
                "$2y$10$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQ",
                HashFormat::Bcrypt,
            ),
            ("pbkdf2_sha256$870000$salt$aGFzaA==", HashFormat::Django),
            (
                "5f4dcc3b5aa765d61d8327deb882cf99:salt:1",
                HashFormat::Magento2,
            ),
            (
                "5f4dcc3b5aa765d61d8327deb882cf99:salt",
                HashFormat::Magento1,
            ),
            ("5f4dcc3b5aa765d61d8327deb882cf99", HashFormat::Magento1),
        ];
        for (stored, format) in cases {
            assert_eq!(HashFormat::detect(stored), Some(format), "{stored}");
        }
        for unknown in ["", "plaintext", "$1$md5crypt$x", "zz:salt:1", "abc:salt"] {
            assert_eq!(HashFormat::detect(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn password_states_follow_the_stored_string() {
        assert_eq!(PasswordState::of(""), PasswordState::ResetRequired);
        assert_eq!(PasswordState::of(VOID_PASSWORD), PasswordState::Voided);
        assert_eq!(
            PasswordState::of("$argon2id$v=19$m=19456,t=2,p=1$x$y"),
            PasswordState::Set
        );
        assert_eq!(
            PasswordState::of("$2y$10$abcdefghijklmnopqrstuu"),
            PasswordState::Legacy
        );
    }

    #[test]
    fn a_declared_format_must_match_the_string() {
        assert_eq!(
            parse(
                "5f4dcc3b5aa765d61d8327deb882cf99:salt",
                Some(HashFormat::Bcrypt),
                &limits()
            ),
            Err(HashError::NotDeclared("bcrypt"))
        );
    }

    #[test]
    fn hashes_asking_for_too_much_work_are_refused_before_any_is_done() {
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            parse(huge, None, &limits()),
            Err(HashError::TooCostly("argon2", _))
        ));
        let scrypt = "$scrypt$ln=24,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            parse(scrypt, None, &limits()),
            Err(HashError::TooCostly("scrypt", _))
        ));
        let pbkdf2 = "pbkdf2_sha256$99000000$salt$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        assert!(matches!(
            parse(pbkdf2, None, &limits()),
            Err(HashError::TooCostly("django", _))
        ));
        let bcrypt = "$2b$20$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQ";
        assert!(matches!(
            parse(bcrypt, None, &limits()),
            Err(HashError::TooCostly("bcrypt", _))
        ));
        let chain = "5f4dcc3b5aa765d61d8327deb882cf99:salt:0:1:0:1:0";
        assert!(matches!(
            parse(chain, None, &limits()),
            Err(HashError::TooCostly("magento2", _))
        ));
    }

    /// The work of the whole recipe is bounded, not only each parameter: scrypt's `p` (a 64 GiB
    /// allocation once crashed the server), chains of steps each within the limits, and the
    /// memory scrypt's `p` blocks take beside its table.
    #[test]
    fn the_whole_recipe_is_held_to_the_budget() {
        let refused = |stored: &str, why: &str| {
            let parsed = parse(stored, None, &limits());
            assert!(
                matches!(&parsed, Err(HashError::TooCostly(_, reason)) if reason.contains(why)),
                "{stored}: {parsed:?}"
            );
        };
        // 128 · 1 · (2 + 536870912) bytes: 64 GiB.
        refused(
            "$scrypt$ln=1,r=1,p=536870912$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "KiB of memory",
        );
        // Each pass within the memory limit, 2,000 of them.
        refused(
            "$scrypt$ln=14,r=8,p=2000$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "times the work",
        );
        refused(
            "$scrypt$ln=14,r=8,p=64$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "times the work",
        );
        // Four argon2id steps of 256 MiB: each within the limits, ten seconds together.
        let big = "3_32_2_268435456";
        refused(
            &format!(
                "{}:{}:{big}:{big}:{big}:{big}",
                "a".repeat(64),
                "s".repeat(32)
            ),
            "times the work",
        );
        refused(
            "$argon2id$v=19$m=262144,t=4,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "times the work",
        );
        refused(
            "$2b$14$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZO",
            "times the work",
        );
        // What real platforms write by default stays within it.
        for accepted in [
            "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=262144,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=17,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "pbkdf2_sha256$1200000$salt$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "$2b$13$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZO",
            "5f4dcc3b5aa765d61d8327deb882cf995f4dcc3b5aa765d61d8327deb882cf99:abcd:1:2",
        ] {
            let recipe = parse(accepted, None, &limits());
            assert!(recipe.is_ok(), "{accepted}: {recipe:?}");
        }
        // The estimate grows with every parameter and every step.
        let cost = |stored: &str| {
            let lifted = WorkLimits {
                max_cost: u32::MAX,
                max_memory_kib: u32::MAX,
                ..limits()
            };
            parse(stored, None, &lifted).unwrap().cost()
        };
        let native = cost("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA");
        assert!((native - 1.0).abs() < 1e-9, "{native}");
        assert!(
            cost("$scrypt$ln=14,r=8,p=2$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
                > cost("$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA")
        );
        let one = cost(&format!("{}:{}:{big}", "a".repeat(64), "s".repeat(32)));
        let four = cost(&format!(
            "{}:{}:{big}:{big}:{big}:{big}",
            "a".repeat(64),
            "s".repeat(32)
        ));
        assert!((four - 4.0 * one).abs() < 1e-9, "{one} {four}");
    }

    #[test]
    fn malformed_strings_are_refused_with_a_reason() {
        for bad in [
            "$argon2id$v=19$m=19456,t=2$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$2x$10$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQ",
            "$2b$10$short",
            "pbkdf2_sha256$x$salt$aGFzaA==",
            "5f4dcc3b5aa765d61d8327deb882cf99:salt:9",
        ] {
            assert!(
                matches!(parse(bad, None, &limits()), Err(HashError::Malformed(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn magento2_chains_apply_every_version_in_turn() {
        let r = parse(
            "5f4dcc3b5aa765d61d8327deb882cf995f4dcc3b5aa765d61d8327deb882cf99:abcd:1:2",
            None,
            &limits(),
        )
        .unwrap();
        assert_eq!(r.steps.len(), 2);
        assert!(matches!(
            &r.steps[1],
            Step::Argon2 { m_kib: 65536, t: 2, out_len: 32, hex: true, salt, .. } if salt.len() == 16
        ));
    }
}
