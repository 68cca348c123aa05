//! Work drained on the runtime's blocking threads, one drain at a time and
//! only while there is work: what an upload request hands on (its frames,
//! its writes) holds no thread while the request waits for the network.

use std::sync::{Mutex, MutexGuard};

/// Whether a drain is running, for work added on one side and taken on a
/// blocking thread on the other.
#[derive(Debug, Default)]
pub(super) struct OnDemand {
    running: Mutex<bool>,
}

impl OnDemand {
    fn running(&self) -> MutexGuard<'_, bool> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called after adding work: runs `drain` on a blocking thread of
    /// `runtime` unless a drain is running, which will find the work.
    pub fn start(&self, runtime: &tokio::runtime::Handle, drain: impl FnOnce() + Send + 'static) {
        let mut running = self.running();
        if !*running {
            *running = true;
            runtime.spawn_blocking(drain);
        }
    }

    /// Called by a drain that found no work: whether it may stop. `more`
    /// is asked once again under the lock [`start`](Self::start) takes, so
    /// work added meanwhile is either seen here or starts a new drain.
    pub fn may_stop(&self, more: impl FnOnce() -> bool) -> bool {
        let mut running = self.running();
        if more() {
            return false;
        }
        *running = false;
        true
    }

    /// The drain ended without [`may_stop`](Self::may_stop) (it panicked).
    pub fn stopped(&self) {
        *self.running() = false;
    }
}
