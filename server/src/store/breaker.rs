//! A circuit breaker for a remote tier.
//!
//! ```text
//!            failures in a row ≥ threshold (a slow answer is a failure)
//!   Closed ───────────────────────────────────────────────▶ Open
//!     ▲                                                      │ cooldown over
//!     │ the probe succeeds          the probe fails          ▼
//!     └──────────────────────── HalfOpen ──────────────────▶ Open
//! ```
//!
//! While the breaker is open, calls are refused at once (callers serve from
//! the local tiers and keep their writes queued); after the cooldown one
//! call at a time goes through as a probe, and its outcome closes or reopens
//! the breaker. "Not found" is an answer, not a failure.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// An answer slower than this counts as a failure.
    pub slow: Duration,
    /// How long the breaker stays open before it lets a probe through.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            slow: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }
}

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The state's name, as `/healthz` and the logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The state as a gauge value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// Leave to make one call; report its outcome with [`Breaker::record`].
#[derive(Debug)]
#[must_use = "report the call's outcome with Breaker::record"]
pub struct Permit {
    started: Instant,
}

impl Breaker {
    pub fn new(name: &'static str, settings: BreakerSettings) -> Self {
        Self {
            name,
            settings,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// The current state; an open breaker whose cooldown is over reports
    /// half-open (its next call is a probe).
    pub fn state(&self) -> BreakerState {
        match &*self.inner.lock().expect("breaker lock") {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { since } if since.elapsed() >= self.settings.cooldown => {
                BreakerState::HalfOpen
            }
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How long until an open breaker lets a probe through (zero unless open).
    pub fn retry_in(&self) -> Duration {
        match &*self.inner.lock().expect("breaker lock") {
            Inner::Open { since } => self.settings.cooldown.saturating_sub(since.elapsed()),
            Inner::HalfOpen { probing: true } => self.settings.cooldown.min(Duration::from_secs(1)),
            _ => Duration::ZERO,
        }
    }

    /// Leave for one call, or `None` while the breaker is open (or its one
    /// probe is out).
    pub fn admit(&self) -> Option<Permit> {
        let mut inner = self.inner.lock().expect("breaker lock");
        let admitted = match &mut *inner {
            Inner::Closed { .. } => true,
            Inner::Open { since } => {
                if since.elapsed() >= self.settings.cooldown {
                    *inner = Inner::HalfOpen { probing: true };
                    true
                } else {
                    false
                }
            }
            Inner::HalfOpen { probing } => !std::mem::replace(probing, true),
        };
        admitted.then(|| Permit {
            started: Instant::now(),
        })
    }

    /// Reports how the call of `permit` went: `ok` unless it failed (a slow
    /// success counts as a failure).
    pub fn record(&self, permit: Permit, ok: bool) {
        let took = permit.started.elapsed();
        let success = ok && took < self.settings.slow;
        let mut inner = self.inner.lock().expect("breaker lock");
        let before = state_of(&inner);
        match (&mut *inner, success) {
            (Inner::Closed { failures }, true) => *failures = 0,
            (Inner::Closed { failures }, false) => {
                *failures += 1;
                if *failures >= self.settings.failures {
                    *inner = Inner::Open {
                        since: Instant::now(),
                    };
                }
            }
            (Inner::HalfOpen { .. }, true) => *inner = Inner::Closed { failures: 0 },
            (Inner::HalfOpen { .. }, false) => {
                *inner = Inner::Open {
                    since: Instant::now(),
                }
            }
            // A call admitted before the breaker opened: it changes nothing.
            (Inner::Open { .. }, _) => {}
        }
        let after = state_of(&inner);
        drop(inner);
        if before != after {
            match after {
                BreakerState::Open => tracing::warn!(
                    tier = self.name,
                    "{} tier unavailable (breaker open{}); serving from local tiers, writes queued",
                    self.name,
                    if ok { ": answers too slow" } else { "" }
                ),
                BreakerState::Closed => {
                    tracing::info!(tier = self.name, "{} tier available again", self.name)
                }
                BreakerState::HalfOpen => {}
            }
        }
    }
}

fn state_of(inner: &Inner) -> BreakerState {
    match inner {
        Inner::Closed { .. } => BreakerState::Closed,
        Inner::Open { .. } => BreakerState::Open,
        Inner::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown_ms: u64) -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures: 3,
                slow: Duration::from_secs(60),
                cooldown: Duration::from_millis(cooldown_ms),
            },
        )
    }

    fn fail(b: &Breaker) {
        let p = b.admit().expect("admitted");
        b.record(p, false);
    }

    #[test]
    fn opens_after_failures_in_a_row_only() {
        let b = breaker(60_000);
        fail(&b);
        fail(&b);
        let p = b.admit().unwrap();
        b.record(p, true);
        fail(&b);
        fail(&b);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_none(), "an open breaker refuses calls");
        assert!(b.retry_in() > Duration::from_secs(50));
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_or_reopens() {
        let b = breaker(20);
        for _ in 0..3 {
            fail(&b);
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit().expect("a probe goes through");
        assert!(b.admit().is_none(), "one probe at a time");
        b.record(probe, false);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.admit().expect("a second probe");
        b.record(probe, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_some());
    }

    #[test]
    fn slow_answers_count_as_failures() {
        let b = Breaker::new(
            "test",
            BreakerSettings {
                failures: 1,
                slow: Duration::from_millis(10),
                cooldown: Duration::from_secs(60),
            },
        );
        let p = b.admit().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        b.record(p, true);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
