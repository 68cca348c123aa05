//! Progress reporting.

use std::sync::Arc;
use std::time::Duration;

use upcache_protocol::{InputHash, Key, State};

/// Something that happened during a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Hashing the input: `done` of `total` bytes.
    Hashing { done: u64, total: u64 },
    /// The input's hash and the key are known.
    Hashed { input: InputHash, key: Key },
    /// The server said what it has.
    Probed {
        state: State,
        blocks_missing: u64,
        blocks_total: u64,
    },
    /// Upload progress: bytes put on the wire (retries included), bytes the
    /// server acknowledged as durable, and blocks done.
    Uploading {
        sent: u64,
        stored: u64,
        total: u64,
        blocks_done: u64,
        blocks_total: u64,
    },
    /// A request failed and will be retried after `delay`.
    Retrying {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// Waiting for the server to finish the operation.
    Waiting { state: State },
    /// The result is ready; `hit` says no input byte had to be sent.
    Complete { hit: bool },
}

/// Where progress goes: called from the SDK's tasks, so keep it quick.
pub type ProgressFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// A progress sink that may be absent.
#[derive(Clone, Default)]
pub(crate) struct Reporter(Option<ProgressFn>);

impl Reporter {
    pub(crate) fn new(f: Option<ProgressFn>) -> Self {
        Self(f)
    }
    pub(crate) fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(&event);
        }
    }
}
