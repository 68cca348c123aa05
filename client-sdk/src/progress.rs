//! Progress reporting.

use std::sync::Arc;
use std::time::Duration;

use upcache_protocol::{InputHash, Key, State};

/// Something that happened during a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Hashing the input: `done` of `total` bytes.
    Hashing {
        /// Bytes hashed so far.
        done: u64,
        /// Bytes of the input.
        total: u64,
    },
    /// The input's hash and the key are known.
    Hashed {
        /// BLAKE3 of the input.
        input: InputHash,
        /// The key of the input and the operation.
        key: Key,
    },
    /// The server said what it has.
    Probed {
        /// The entry's state.
        state: State,
        /// Blocks the server still needs.
        blocks_missing: u64,
        /// Blocks of the input.
        blocks_total: u64,
    },
    /// Upload progress: bytes put on the wire (retries included), bytes the
    /// server acknowledged as durable, and blocks done.
    Uploading {
        /// Body bytes put on the wire, retries included.
        sent: u64,
        /// Bytes the server acknowledged as durable.
        stored: u64,
        /// Bytes of the input.
        total: u64,
        /// Blocks the server holds.
        blocks_done: u64,
        /// Blocks of the input.
        blocks_total: u64,
    },
    /// A request failed and will be retried after `delay`.
    Retrying {
        /// Failures in a row so far.
        attempt: u32,
        /// Time until the next attempt.
        delay: Duration,
        /// What failed.
        error: String,
    },
    /// Waiting for the server to finish the operation.
    Waiting {
        /// The entry's state.
        state: State,
    },
    /// The result is ready; `hit` says no input byte had to be sent.
    Complete {
        /// Whether no input byte had to be sent.
        hit: bool,
    },
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
