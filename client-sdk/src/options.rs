//! Client options and the retry policy.

use std::time::Duration;

/// How failed requests are retried: exponential backoff with full jitter,
/// bounded by consecutive failures and by time without progress. Any
/// progress (a block stored, a byte of result received) resets both bounds,
/// so a long upload over a flaky network keeps going as long as it advances.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Cap of the first delay.
    pub initial_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
    /// Failures in a row (without progress in between) before giving up.
    pub max_attempts: u32,
    /// Time without progress before giving up.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(15),
            max_attempts: 12,
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            max_attempts: 0,
            ..Self::default()
        }
    }

    /// Upper bound of the delay before retry number `attempt` (0-based):
    /// `min(max_delay, initial_delay · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The delay before retry `attempt`, for a uniform `unit` in `[0, 1)`
    /// ("full jitter": spreads out clients that failed together).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Everything a [`Client`](crate::Client) can be configured with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Parallel block uploads.
    pub concurrency: usize,
    /// Block size for new uploads (a power of two); `None` lets the server choose.
    pub block_size: Option<u64>,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// An upload request whose body makes no progress for this long is abandoned.
    pub stall_timeout: Duration,
    /// Longest wait for an answer once a request is sent.
    pub response_timeout: Duration,
    /// How long one waiting request asks the server to hold (`Prefer: wait`).
    pub wait_per_request: Duration,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    /// The image formats the caller can use, as an `Accept` value, sent on
    /// `POST /v1/ops`. An operation with `format: "auto"` is resolved with it
    /// before its key is derived (the server resolves it the same way).
    pub accept: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 4,
            block_size: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            wait_per_request: Duration::from_secs(30),
            bearer_token: None,
            headers: Vec::new(),
            accept: upcache_protocol::accept::ALL_IMAGES.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schedule_doubles_then_caps() {
        let p = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        let ceilings: Vec<u64> = (0..6).map(|a| p.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1), "no overflow");
    }

    proptest! {
        #[test]
        fn delays_stay_within_their_ceiling(attempt in 0u32..100, unit in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.delay(attempt, unit);
            prop_assert!(d <= p.ceiling(attempt));
            prop_assert!(d <= p.max_delay);
        }

        #[test]
        fn ceilings_never_shrink(attempt in 0u32..60) {
            let p = RetryPolicy::default();
            prop_assert!(p.ceiling(attempt) <= p.ceiling(attempt + 1));
        }
    }
}
