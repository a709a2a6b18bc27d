//! Time as a parameter: use cases ask a [`Clock`], so tests can move time instead of sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};

/// The source of "now" for every rule that depends on time.
pub trait Clock: Send + Sync {
    /// The current instant, truncated to microseconds (the precision both databases keep), so a
    /// value read back from storage compares equal to the one written.
    fn now(&self) -> DateTime<Utc>;
}

fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }
}

/// A clock that only moves when told to. Starts at the real time so tokens it stamps are also
/// valid for libraries that check expiry against the wall clock.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::starting_at(Utc::now())
    }
}

impl ManualClock {
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(truncate(at)),
        }
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = truncate(*now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::default();
        let before = clock.now();
        assert_eq!(clock.now(), before);
        clock.advance(Duration::minutes(10));
        assert_eq!(clock.now() - before, Duration::minutes(10));
    }

    #[test]
    fn system_clock_keeps_microsecond_precision_only() {
        let now = SystemClock.now();
        assert_eq!(now.timestamp_subsec_nanos() % 1000, 0);
    }
}
