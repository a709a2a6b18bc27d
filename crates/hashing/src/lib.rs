//! argon2id password hashing, off the async runtime, bounded in concurrency and memory.
//!
//! At most `concurrency` hashes run at once (default: the core count), each on a blocking
//! thread with a 19 MiB block buffer taken from a pool and given back afterwards. Unbounded
//! hashing under load measured 10–14 GB RSS and worse throughput on this machine kind; bounded
//! with reused buffers it stays near 90 MB (measured: BENCHMARKS.md). When too many requests already wait,
//! new ones get RATE_LIMITED at once instead of queueing without end.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, PasswordHash, Salt},
};
use async_trait::async_trait;
use domain::{
    Error, Result,
    password::{NewPassword, PasswordCandidate},
    ports::{PasswordHasher, Verification},
    stored_hash::{self, Argon2Variant, Finish, NATIVE_PREFIX, Prf, Recipe, Step, WorkLimits},
};
use tokio::sync::Semaphore;

/// OWASP's argon2id parameters, the product's rule (docs/security.md): m = 19 MiB,
/// t = 2, p = 1.
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;
/// The work limits stored hashes are held to, here and at import: a stored hash asking for
/// more (memory above all) counts as a wrong password at sign-in and is rejected at import.
pub fn work_limits() -> WorkLimits {
    WorkLimits::default()
}

pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    buffers: Mutex<Vec<Vec<Block>>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// A real hash of a random password, verified when the account does not exist.
    dummy: String,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// `concurrency` hashes at once; up to `max_waiting` more wait for a turn.
    pub fn new(concurrency: usize, max_waiting: usize) -> anyhow::Result<Self> {
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES))
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
        let mut memory = vec![Block::default(); params.block_count()];
        let dummy = hash_with(&params, &random, &mut memory)?;
        let concurrency = concurrency.max(1);
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            buffers: Mutex::new(vec![memory]),
            waiting: AtomicUsize::new(0),
            max_waiting,
            dummy,
        })
    }

    /// Runs `work` on a blocking thread with a pooled block buffer, under the concurrency bound.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Params, &mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("latchkey_password_hash_rejected_total").increment(1);
            return Err(Error::RateLimited {
                retry_after_seconds: 1,
            });
        }
        // Counted out however the wait ends, even if the caller's future is dropped while it
        // waits (without this, enough abandoned waits would refuse every hash for good).
        let waiting = Waiting(self);
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        drop(waiting);
        let permit = permit.map_err(Error::internal)?;
        let this = Arc::clone(self);
        let span = tracing::Span::current();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            // The slot is held by the hash itself, so a caller that goes away cannot free it
            // while the hash still runs (the concurrency bound is the memory bound).
            let _permit = permit;
            let _entered = span.enter();
            let mut memory = this
                .buffers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default();
            let result = work(&this.params, &mut memory);
            this.buffers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(memory);
            result
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal);
        metrics::histogram!("latchkey_password_hash_seconds").record(started.elapsed());
        result
    }
}

/// Takes one off the waiting count when dropped.
struct Waiting<'a>(&'a Argon2Hasher);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

fn hash_with(params: &Params, password: &[u8], memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    let mut out = [0u8; OUTPUT_BYTES];
    compute(params, password, &salt, &mut out, memory)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params
            .try_into()
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e:?}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

fn compute(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> anyhow::Result<()> {
    memory.resize(params.block_count(), Block::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// Verifies in constant time; reports whether the stored parameters are older than `current`.
fn verify_with(
    current: &Params,
    password: &[u8],
    stored: &str,
    memory: &mut Vec<Block>,
) -> anyhow::Result<(bool, bool)> {
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        anyhow::bail!("stored hash is not argon2id");
    }
    let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored params: {e}"))?;
    let limits = work_limits();
    if params.m_cost() > limits.max_memory_kib {
        anyhow::bail!("stored hash asks for too much memory");
    }
    if stored_hash::cost::argon2(params.m_cost(), params.t_cost()) > f64::from(limits.max_cost) {
        anyhow::bail!("stored hash asks for more work than the budget");
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash lacks salt or output");
    };
    let mut out = vec![0u8; expected.as_bytes().len()];
    let params = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(out.len()),
    )
    .map_err(|e| anyhow::anyhow!("stored params: {e}"))?;
    compute(&params, password, salt.as_ref(), &mut out, memory)?;
    let matches = constant_time_eq(&out, expected.as_bytes());
    let outdated = params.m_cost() != current.m_cost()
        || params.t_cost() != current.t_cost()
        || params.p_cost() != current.p_cost()
        || parsed.version != Some(Version::V0x13.into());
    // Give a buffer grown for old, larger parameters back at the current size.
    memory.truncate(current.block_count());
    memory.shrink_to(current.block_count());
    Ok((matches, outdated))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a legacy recipe on `password`: does it give the stored hash? Argon2 steps use the pooled
/// block buffer (given back at the current size); the recipe's cost was bounded when parsed.
fn verify_recipe(
    current: &Params,
    password: &[u8],
    recipe: &Recipe,
    memory: &mut Vec<Block>,
) -> anyhow::Result<bool> {
    let mut value = password.to_vec();
    for step in &recipe.steps {
        value = run_step(step, &value, memory)?;
    }
    memory.truncate(current.block_count());
    memory.shrink_to(current.block_count());
    Ok(match &recipe.finish {
        Finish::Equals(expected) => constant_time_eq(&value, expected),
        // bcrypt compares in constant time itself; it reads the first 72 bytes, as every
        // bcrypt implementation does.
        Finish::Bcrypt(hash) => bcrypt::verify(&value, hash)?,
    })
}

/// One verification of `password` against `recipe`, on the calling thread, with memory of its
/// own: what the benchmark times (the server goes through [`SharedHasher`]).
pub fn verify_recipe_once(recipe: &Recipe, password: &[u8]) -> anyhow::Result<bool> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    verify_recipe(&params, password, recipe, &mut Vec::new())
}

fn run_step(step: &Step, input: &[u8], memory: &mut Vec<Block>) -> anyhow::Result<Vec<u8>> {
    if let Some(digested) = stored_hash::digest_step(step, input) {
        return Ok(digested);
    }
    Ok(match step {
        Step::SaltedDigestHex { .. } | Step::Sha256Hex => {
            anyhow::bail!("a digest step the domain did not compute")
        }
        Step::Argon2 {
            variant,
            version,
            m_kib,
            t,
            p,
            salt,
            out_len,
            hex,
        } => {
            let params = Params::new(*m_kib, *t, *p, Some(*out_len))
                .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
            let algorithm = match variant {
                Argon2Variant::D => Algorithm::Argon2d,
                Argon2Variant::I => Algorithm::Argon2i,
                Argon2Variant::Id => Algorithm::Argon2id,
            };
            let version = if *version == 0x10 {
                Version::V0x10
            } else {
                Version::V0x13
            };
            let mut out = vec![0u8; *out_len];
            memory.resize(params.block_count(), Block::default());
            Argon2::new(algorithm, version, params)
                .hash_password_into_with_memory(input, salt, &mut out, &mut memory[..])
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
            if *hex {
                hex::encode(out).into_bytes()
            } else {
                out
            }
        }
        Step::Scrypt {
            log_n,
            r,
            p,
            salt,
            out_len,
        } => {
            let params = scrypt::Params::new(*log_n, *r, *p, *out_len)
                .map_err(|e| anyhow::anyhow!("scrypt parameters: {e}"))?;
            let mut out = vec![0u8; *out_len];
            scrypt::scrypt(input, salt, &params, &mut out)
                .map_err(|e| anyhow::anyhow!("scrypt: {e}"))?;
            out
        }
        Step::Pbkdf2 {
            prf,
            iterations,
            salt,
            out_len,
        } => {
            let mut out = vec![0u8; *out_len];
            match prf {
                Prf::HmacSha256 => {
                    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(input, salt, *iterations, &mut out);
                }
                Prf::HmacSha1 => {
                    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(input, salt, *iterations, &mut out)
                }
            }
            out
        }
    })
}

/// The password forms a native hash is checked against: the NFKC form Latchkey hashes, and the
/// bytes as typed when they differ (an argon2id hash imported from a platform that hashed them
/// unnormalised).
fn forms(candidate: &PasswordCandidate) -> Vec<Vec<u8>> {
    let mut forms = vec![candidate.expose().as_bytes().to_vec()];
    if candidate.expose_typed() != candidate.expose() {
        forms.push(candidate.expose_typed().as_bytes().to_vec());
    }
    forms
}

/// The hasher as the domain's port; `Arc` because work moves to blocking threads.
#[derive(Debug, Clone)]
pub struct SharedHasher(pub Arc<Argon2Hasher>);

#[async_trait]
impl PasswordHasher for SharedHasher {
    async fn hash(&self, password: &NewPassword) -> Result<String> {
        let password = password.expose().as_bytes().to_vec();
        self.0
            .run(move |params, memory| hash_with(params, &password, memory))
            .await
    }

    async fn verify(
        &self,
        candidate: &PasswordCandidate,
        stored: Option<&str>,
    ) -> Result<Verification> {
        // An imported customer without a hash (`""`), or one whose password was voided, is
        // checked like an unknown name.
        let stored = stored.filter(|s| !s.is_empty() && *s != stored_hash::VOID_PASSWORD);
        match stored {
            Some(native) if native.starts_with(NATIVE_PREFIX) => {
                self.verify_native(candidate, Some(native)).await
            }
            None => self.verify_native(candidate, None).await,
            Some(legacy) => self.verify_legacy(candidate, legacy).await,
        }
    }
}

impl SharedHasher {
    async fn verify_native(
        &self,
        candidate: &PasswordCandidate,
        stored: Option<&str>,
    ) -> Result<Verification> {
        let forms = forms(candidate);
        let known = stored.is_some();
        let stored = stored.unwrap_or(&self.0.dummy).to_owned();
        let dummy = self.0.dummy.clone();
        // Every form is checked, matched or not: the cost depends on the input alone, never on
        // whether the account exists.
        let (matches, outdated) = self
            .0
            .run(move |params, memory| {
                let mut found = (false, false);
                for (i, password) in forms.iter().enumerate() {
                    // A stored hash that cannot be verified (corrupt, or asking for more than
                    // the limits) is a wrong password after the dummy's work: an error would
                    // tell the caller that the account exists.
                    let (m, outdated) = match verify_with(params, password, &stored, memory) {
                        Ok(checked) => checked,
                        Err(e) => {
                            tracing::warn!(error = %e, "a stored password hash cannot be verified");
                            verify_with(params, password, &dummy, memory)?;
                            (false, false)
                        }
                    };
                    if m && !found.0 {
                        // Matched as typed, not as normalised (a hash imported from a
                        // platform that did not normalise): store the normalised one.
                        found = (true, outdated || i > 0);
                    }
                }
                Ok(found)
            })
            .await?;
        if !(matches && known) {
            return Ok(Verification::Mismatch);
        }
        if outdated {
            self.upgrade(candidate).await
        } else {
            Ok(Verification::Match { rehash: None })
        }
    }

    /// Another platform's hash: checked by its own recipe; a wrong password also pays for the
    /// dummy argon2id check, so it never answers sooner than an unknown name. A stored string
    /// that cannot be used (garbage, or more work than allowed) is a wrong password, not an
    /// error: an error would tell the caller that the account exists.
    async fn verify_legacy(
        &self,
        candidate: &PasswordCandidate,
        stored: &str,
    ) -> Result<Verification> {
        let recipe = match stored_hash::parse(stored, None, &work_limits()) {
            Ok(recipe) => Some(recipe),
            Err(e) => {
                tracing::warn!(error = %e, "a stored password hash cannot be verified");
                None
            }
        };
        // The old platform hashed the bytes it was given, not our NFKC form.
        let password = candidate.expose_typed().as_bytes().to_vec();
        let forms = forms(candidate);
        let dummy = self.0.dummy.clone();
        let matches = self
            .0
            .run(move |params, memory| {
                let matches = match &recipe {
                    Some(recipe) => verify_recipe(params, &password, recipe, memory)?,
                    None => false,
                };
                if !matches {
                    // What an unknown name costs, on top.
                    for form in &forms {
                        verify_with(params, form, &dummy, memory)?;
                    }
                }
                Ok(matches)
            })
            .await?;
        if matches {
            metrics::counter!("latchkey_legacy_hash_upgraded_total").increment(1);
            self.upgrade(candidate).await
        } else {
            Ok(Verification::Mismatch)
        }
    }

    /// A match whose stored hash should be replaced: the password hashed afresh.
    async fn upgrade(&self, candidate: &PasswordCandidate) -> Result<Verification> {
        let password = candidate.expose().as_bytes().to_vec();
        let rehash = self
            .0
            .run(move |params, memory| hash_with(params, &password, memory))
            .await?;
        Ok(Verification::Match {
            rehash: Some(rehash),
        })
    }
}

#[cfg(test)]
mod tests {
    use domain::password::PasswordPolicy;

    use super::*;

    fn hasher() -> SharedHasher {
        SharedHasher(Arc::new(Argon2Hasher::new(2, 64).unwrap()))
    }

    fn pw(s: &str) -> NewPassword {
        NewPassword::parse(s, &PasswordPolicy::default(), &[], &[]).unwrap()
    }

    fn candidate(s: &str) -> PasswordCandidate {
        PasswordCandidate::parse(s).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_owasp_parameters_and_unique_salts() {
        let h = hasher();
        let a = h.hash(&pw("kx7!qzmw")).await.unwrap();
        let b = h.hash(&pw("kx7!qzmw")).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(!a.contains("kx7!qzmw"));
    }

    #[tokio::test]
    async fn verification_accepts_the_password_and_nothing_else() {
        let h = hasher();
        let stored = h.hash(&pw("kx7!qzmw-long-password")).await.unwrap();
        assert_eq!(
            h.verify(&candidate("kx7!qzmw-long-password"), Some(&stored))
                .await
                .unwrap(),
            Verification::Match { rehash: None }
        );
        for wrong in [
            "kx7!qzmw-long-passwor",
            "kx7!qzmw-long-password ",
            "KX7!QZMW-LONG-PASSWORD",
        ] {
            assert_eq!(
                h.verify(&candidate(wrong), Some(&stored)).await.unwrap(),
                Verification::Mismatch
            );
        }
    }

    #[tokio::test]
    async fn unknown_accounts_are_a_mismatch_after_real_work() {
        let h = hasher();
        assert_eq!(
            h.verify(&candidate("anything"), None).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn hashes_with_old_parameters_verify_and_come_back_upgraded() {
        let h = hasher();
        let old_params = Params::new(8 * 1024, 1, 1, Some(32)).unwrap();
        let mut memory = Vec::new();
        let old = hash_with(&old_params, b"kx7!qzmw", &mut memory).unwrap();
        assert!(old.contains("m=8192,t=1"));
        let Verification::Match { rehash: Some(new) } =
            h.verify(&candidate("kx7!qzmw"), Some(&old)).await.unwrap()
        else {
            panic!("old hash should verify and be upgraded");
        };
        assert!(new.contains("m=19456,t=2,p=1"));
        assert_eq!(
            h.verify(&candidate("kx7!qzmw"), Some(&new)).await.unwrap(),
            Verification::Match { rehash: None }
        );
    }

    #[tokio::test]
    async fn saturation_is_refused_quickly_instead_of_queued_forever() {
        let h = SharedHasher(Arc::new(Argon2Hasher::new(1, 0).unwrap()));
        let err = h.hash(&pw("kx7!qzmw")).await.unwrap_err();
        assert!(matches!(err, Error::RateLimited { .. }));
    }

    /// A caller that gives up while queued for a hashing slot (its request was dropped) must
    /// leave the queue as it found it: before, each one stayed counted as waiting, and after
    /// `LATCHKEY_HASH_QUEUE` of them every sign-in and reset was refused for good.
    #[tokio::test]
    async fn callers_that_give_up_while_queued_do_not_use_up_the_queue() {
        let h = SharedHasher(Arc::new(Argon2Hasher::new(1, 2).unwrap()));
        let busy = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(&pw("kx7!qzmw")).await })
        };
        while h.0.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            let gave_up =
                tokio::time::timeout(std::time::Duration::from_millis(1), h.hash(&pw("kx7!qzmw")))
                    .await;
            assert!(
                !matches!(gave_up, Ok(Ok(_))),
                "the only slot is taken: nobody else can hash yet"
            );
        }
        busy.await.unwrap().unwrap();
        assert_eq!(h.0.waiting.load(Ordering::Acquire), 0);
        h.hash(&pw("kx7!qzmw"))
            .await
            .expect("the queue is empty again: a new caller is served");
    }

    /// A native hash that cannot be verified (here: asking for 95 GiB) answers like a wrong
    /// password. Before, it was an error, and the caller saw INTERNAL for that account only.
    #[tokio::test]
    async fn unusable_native_hashes_are_a_wrong_password_not_an_error() {
        let h = hasher();
        for stored in [
            "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$garbage",
        ] {
            assert_eq!(
                h.verify(&candidate("x"), Some(stored)).await.unwrap(),
                Verification::Mismatch,
                "{stored}"
            );
        }
    }

    /// A stored string no format reads (corrupt, or asking for too much work) answers like a
    /// wrong password: an error would tell the caller the account exists. Before, it was an
    /// internal error.
    #[tokio::test]
    async fn unusable_legacy_hashes_are_a_wrong_password_not_an_error() {
        let h = hasher();
        for stored in [
            "not a hash",
            "$2b$31$abcdefghijklmnopqrstuu5ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQZ0ZQ",
            "pbkdf2_sha256$99000000$salt$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ] {
            assert_eq!(
                h.verify(&candidate("x"), Some(stored)).await.unwrap(),
                Verification::Mismatch,
                "{stored}"
            );
        }
        // An imported customer without a hash: "password reset required".
        assert_eq!(
            h.verify(&candidate("x"), Some("")).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        format: String,
        password: String,
        hash: String,
        valid: bool,
        note: String,
    }

    fn vectors() -> Vec<Vector> {
        #[derive(serde::Deserialize)]
        struct File {
            vectors: Vec<Vector>,
        }
        let file: File =
            serde_json::from_str(include_str!("../../../tests/vectors/legacy-hashes.json"))
                .unwrap();
        file.vectors
    }

    /// Every vector made by the reference implementations (Magento's and OpenMage's PHP,
    /// Django, argon2-cffi, passlib, PHP and npm bcrypt; `tools/legacy-hashes/`): the right
    /// password verifies and a wrong one does not; the ones marked invalid never verify.
    #[test]
    fn reference_vectors_verify_exactly_as_their_platforms_do() {
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES)).unwrap();
        let mut memory = Vec::new();
        let all = vectors();
        assert!(all.len() > 100);
        for v in &all {
            let declared = stored_hash::HashFormat::parse(&v.format).unwrap();
            let recipe = stored_hash::parse(&v.hash, Some(declared), &work_limits());
            let verifies = |password: &str, memory: &mut Vec<Block>| match &recipe {
                Ok(r) => verify_recipe(&params, password.as_bytes(), r, memory).unwrap(),
                Err(_) => false,
            };
            assert_eq!(
                verifies(&v.password, &mut memory),
                v.valid,
                "{} {}: {}",
                v.format,
                v.hash,
                v.note
            );
            if v.valid {
                let wrong = format!("{}x", v.password);
                // bcrypt reads 72 bytes: past them, an extra byte changes nothing.
                if wrong.len() <= 72 || !v.hash.contains("$2") {
                    assert!(!verifies(&wrong, &mut memory), "{}: {}", v.hash, v.note);
                }
            }
        }
        assert!(
            memory.len() <= params.block_count(),
            "the buffer is given back at size"
        );
    }

    /// Through the hasher as sign-in uses it: a legacy match comes back with an argon2id
    /// successor that verifies natively.
    #[tokio::test]
    async fn a_legacy_match_comes_back_with_an_argon2id_successor() {
        let h = hasher();
        let cheap = vectors()
            .into_iter()
            .filter(|v| v.valid && !v.hash.starts_with(NATIVE_PREFIX))
            .filter(|v| !v.password.is_empty() && !v.password.contains('\0'));
        let mut formats = std::collections::HashSet::new();
        for v in cheap {
            if !formats.insert(v.format.clone()) {
                continue;
            }
            let Verification::Match { rehash: Some(new) } = h
                .verify(&candidate(&v.password), Some(&v.hash))
                .await
                .unwrap()
            else {
                panic!("{} should verify and be upgraded", v.hash);
            };
            assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
            assert_eq!(
                h.verify(&candidate(&v.password), Some(&new)).await.unwrap(),
                Verification::Match { rehash: None }
            );
            assert_eq!(
                h.verify(&candidate(&format!("{}-", v.password)), Some(&v.hash))
                    .await
                    .unwrap(),
                Verification::Mismatch
            );
        }
        assert_eq!(formats.len(), 6, "{formats:?}");
    }

    /// An argon2id hash another platform made from unnormalised bytes verifies as typed, and
    /// comes back as Latchkey's own (made from the NFKC form), which then verifies natively.
    #[tokio::test]
    async fn an_imported_argon2id_of_unnormalised_bytes_verifies_and_is_upgraded() {
        let typed = "ｐａｓｓ１２３４";
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_BYTES)).unwrap();
        let stored = hash_with(&params, typed.as_bytes(), &mut Vec::new()).unwrap();
        let h = hasher();
        let Verification::Match { rehash: Some(new) } =
            h.verify(&candidate(typed), Some(&stored)).await.unwrap()
        else {
            panic!("the typed form should verify and be upgraded");
        };
        assert_eq!(
            h.verify(&candidate(typed), Some(&new)).await.unwrap(),
            Verification::Match { rehash: None }
        );
    }

    /// Legacy hashes were made from the bytes typed, not from Latchkey's NFKC form: a
    /// full-width password (as a Japanese keyboard types it) verifies as typed.
    #[tokio::test]
    async fn legacy_hashes_are_checked_against_the_password_as_typed() {
        use sha2::Digest as _;
        let typed = "ｐａｓｓ１２３４";
        let stored = format!(
            "{}:salt:1",
            hex::encode(sha2::Sha256::digest(format!("salt{typed}").as_bytes()))
        );
        let h = hasher();
        assert!(matches!(
            h.verify(&candidate(typed), Some(&stored)).await.unwrap(),
            Verification::Match { rehash: Some(_) }
        ));
        assert_eq!(
            h.verify(&candidate("pass1234"), Some(&stored))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }
}
