//! Sign-in lockout arithmetic: after `failures` consecutive wrong passwords the account is
//! locked for `duration`; the counter restarts when the lock is applied and after a success.
//!
//! Storage increments the counter atomically and asks [`LockoutPolicy::locks_at`] whether the
//! new count locks the account, so concurrent wrong guesses are all counted.

use chrono::{DateTime, Duration, Utc};

use crate::{
    Error, Result,
    password::PasswordCandidate,
    ports::{PasswordHasher, Verification},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account; 0 turns lockout off.
    pub failures: u32,
    pub duration: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            failures: 10,
            duration: Duration::minutes(10),
        }
    }
}

impl LockoutPolicy {
    /// Whether a failure count reached `count` locks the account.
    pub fn locks_at(&self, count: u32) -> bool {
        self.failures > 0 && count >= self.failures
    }

    /// When a lock applied at `now` ends.
    pub fn locked_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.duration
    }
}

/// Whether an account with `locked_until` refuses sign-in at `now`.
pub fn is_locked(locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    locked_until.is_some_and(|until| until > now)
}

/// The password check every sign-in shares (customers, admins, "current password" on change):
/// the same argon2 work whether the account exists, is locked or not, one answer for every
/// failure, and `on_mismatch` (which counts the failure) only for a wrong password on an open
/// account. Returns the upgraded hash when the stored one used old parameters.
pub(crate) async fn check_password<F, Fut>(
    hasher: &dyn PasswordHasher,
    candidate: &PasswordCandidate,
    stored: Option<(&str, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
    on_mismatch: F,
) -> Result<Option<String>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let Some((hash, locked_until)) = stored else {
        hasher.verify(candidate, None).await?;
        return Err(Error::AuthenticationFailed);
    };
    let verification = hasher.verify(candidate, Some(hash)).await?;
    if is_locked(locked_until, now) {
        return Err(Error::AuthenticationFailed);
    }
    match verification {
        Verification::Match { rehash } => Ok(rehash),
        Verification::Mismatch => {
            on_mismatch().await?;
            Err(Error::AuthenticationFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenth_consecutive_failure_locks_by_default() {
        let p = LockoutPolicy::default();
        assert!(!p.locks_at(9));
        assert!(p.locks_at(10));
        assert!(p.locks_at(11));
    }

    #[test]
    fn zero_failures_turns_lockout_off() {
        let p = LockoutPolicy {
            failures: 0,
            duration: Duration::minutes(10),
        };
        assert!(!p.locks_at(0));
        assert!(!p.locks_at(u32::MAX));
    }

    #[test]
    fn a_lock_ends_exactly_after_its_duration() {
        let p = LockoutPolicy::default();
        let now = Utc::now();
        let until = p.locked_until(now);
        assert!(is_locked(Some(until), now));
        assert!(is_locked(Some(until), until - Duration::seconds(1)));
        assert!(!is_locked(Some(until), until));
        assert!(!is_locked(None, now));
    }
}
