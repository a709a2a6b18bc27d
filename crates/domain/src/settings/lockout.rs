//! Sign-in lockout arithmetic: after `failures` consecutive wrong passwords the account is
//! locked for `duration`; the counter restarts when the lock is applied and after a success.
//!
//! Storage increments the counter atomically and asks [`LockoutPolicy::locks_at`] whether the
//! new count locks the account, so concurrent wrong guesses are all counted. The same budget is
//! reserved per sign-in name before hashing (`sign_in`), so a burst cannot outrun the count.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account; at least 1 (lockout cannot be turned off:
    /// it is the per-account limit on password guesses).
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
        count >= self.failures.max(1)
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
    fn zero_failures_cannot_turn_lockout_off() {
        let p = LockoutPolicy {
            failures: 0,
            duration: Duration::minutes(10),
        };
        assert!(!p.locks_at(0));
        assert!(p.locks_at(1));
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
