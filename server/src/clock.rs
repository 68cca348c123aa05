//! The time the service goes by: the system clock in production, a clock a
//! test moves by hand, so that expiry and retry logic are tested without
//! waiting for them.
//!
//! Deadlines kept in records (an upload's expiry, how long a failure is
//! remembered) are wall-clock seconds from [`Clock::now`]; pauses between
//! attempts and sweeps are [`Clock::sleep`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A source of time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;

    /// Resolves once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The clock of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]); it
/// starts at the system's time.
#[derive(Debug)]
pub struct ManualClock {
    /// Milliseconds since the epoch.
    now: watch::Sender<u64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            now: watch::Sender::new(ms),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward by `d`, waking every sleep that ends by then.
    pub fn advance(&self, d: Duration) {
        self.now.send_modify(|ms| *ms += d.as_millis() as u64);
    }
}

impl ManualClock {
    /// How many sleeps are waiting for the clock to move.
    pub fn sleeping(&self) -> usize {
        self.now.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        *self.now.borrow() / 1000
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let until = *self.now.borrow() + d.as_millis() as u64;
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            if rx.wait_for(|ms| *ms >= until).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// The clock a service runs on; the system clock unless a test gives
/// another.
#[derive(Clone)]
pub struct SharedClock(pub Arc<dyn Clock>);

impl Default for SharedClock {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for SharedClock {
    type Target = dyn Clock;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleeps_when_advanced() {
        let clock = ManualClock::default();
        let start = clock.now();
        let mut sleep = clock.sleep(Duration::from_secs(60));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut sleep)
                .await
                .is_err(),
            "not before the clock moves"
        );
        clock.advance(Duration::from_secs(59));
        assert!(tokio::time::timeout(Duration::from_millis(20), &mut sleep)
            .await
            .is_err());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("woken once 60 s passed");
        assert_eq!(clock.now(), start + 60);
    }
}
