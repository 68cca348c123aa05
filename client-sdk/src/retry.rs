//! Retry bookkeeping shared by every task of one call.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::RetryPolicy;
use crate::progress::{Event, Reporter};

/// Counts failures in a row and time since the last progress, across all
/// the tasks of one call.
pub(crate) struct Retrier {
    policy: RetryPolicy,
    state: Mutex<(u32, Instant)>,
    reporter: Reporter,
}

impl Retrier {
    pub(crate) fn new(policy: RetryPolicy, reporter: Reporter) -> Self {
        Self {
            policy,
            state: Mutex::new((0, Instant::now())),
            reporter,
        }
    }

    /// Something advanced: the failure budget starts over.
    pub(crate) fn progressed(&self) {
        *self.state.lock().expect("retrier lock") = (0, Instant::now());
    }

    /// A step failed with `error`. Returns after the backoff delay if it may
    /// be tried again; otherwise returns the error to give up with.
    pub(crate) async fn failed(&self, error: Error) -> Result<()> {
        if !error.is_retryable() {
            return Err(error);
        }
        let (attempt, elapsed) = {
            let mut s = self.state.lock().expect("retrier lock");
            s.0 += 1;
            (s.0, s.1.elapsed())
        };
        if attempt > self.policy.max_attempts || elapsed > self.policy.max_elapsed {
            return Err(Error::GaveUp {
                attempts: attempt,
                elapsed,
                last: Box::new(error),
            });
        }
        let delay: Duration = self.policy.delay(attempt - 1, rand::random::<f64>());
        self.reporter.emit(Event::Retrying {
            attempt,
            delay,
            error: error.to_string(),
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

impl Retrier {
    /// Another request holds what this one wanted to write (`upload-busy`):
    /// not a failure of this call, so it does not use up attempts — the
    /// caller moves on to other work and comes back to this later. Gives up
    /// only when nothing progressed for `max_elapsed`.
    pub(crate) async fn busy(&self, error: Error) -> Result<()> {
        let elapsed = self.state.lock().expect("retrier lock").1.elapsed();
        if elapsed > self.policy.max_elapsed {
            let attempts = self.state.lock().expect("retrier lock").0;
            return Err(Error::GaveUp {
                attempts,
                elapsed,
                last: Box::new(error),
            });
        }
        let delay = self.policy.delay(0, rand::random::<f64>());
        self.reporter.emit(Event::Retrying {
            attempt: 0,
            delay,
            error: error.to_string(),
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_attempts: 3,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn gives_up_after_the_budget_and_progress_resets_it() {
        let r = Retrier::new(fast(), Reporter::default());
        for _ in 0..3 {
            r.failed(Error::Network("x".into())).await.unwrap();
        }
        r.progressed();
        for _ in 0..3 {
            r.failed(Error::Network("x".into())).await.unwrap();
        }
        let e = r.failed(Error::Network("x".into())).await.unwrap_err();
        assert!(matches!(e, Error::GaveUp { attempts: 4, .. }), "{e}");
    }

    #[tokio::test]
    async fn busy_answers_use_up_no_attempts() {
        let r = Retrier::new(fast(), Reporter::default());
        for _ in 0..10 {
            r.busy(Error::Network("busy".into())).await.unwrap();
        }
        r.failed(Error::Network("x".into())).await.unwrap();
        let policy = RetryPolicy {
            max_elapsed: Duration::ZERO,
            ..fast()
        };
        let r = Retrier::new(policy, Reporter::default());
        std::thread::sleep(Duration::from_millis(2));
        let e = r.busy(Error::Network("busy".into())).await.unwrap_err();
        assert!(matches!(e, Error::GaveUp { .. }), "{e}");
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let r = Retrier::new(fast(), Reporter::default());
        let e = r.failed(Error::Protocol("bad".into())).await.unwrap_err();
        assert!(matches!(e, Error::Protocol(_)));
    }
}
