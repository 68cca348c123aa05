//! Driving the server through the Rust SDK (`upcache-client`), the way an
//! application does: options sized for fast tests, input files, and a
//! recorder of progress events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use upcache_client::{Event, Options, ProgressFn, RetryPolicy};
use upcache_protocol::blocks::{parse_ranges, Layout};
use upcache_protocol::Status;

/// The block size the SDK tests upload with.
pub const BLOCK: u64 = 64 * 1024;

/// Options for tests: 64 KiB blocks over 4 streams, retries within
/// milliseconds (still enough of them to ride out every planned fault), and
/// short timeouts so that a stalled request is abandoned quickly.
pub fn fast_options() -> Options {
    Options {
        concurrency: 4,
        block_size: Some(BLOCK),
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
        },
        stall_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(5),
        wait_per_request: Duration::from_secs(5),
        ..Options::default()
    }
}

/// A retry policy that gives up after `attempts` quick retries.
pub fn quick_give_up(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_attempts: attempts,
        max_elapsed: Duration::from_secs(30),
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn input_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the input file");
    path
}

/// Bytes of the blocks an entry still misses, per its status.
pub fn missing_bytes(status: &Status) -> u64 {
    let layout = Layout {
        length: status.input.length,
        block_size: status.block_size,
    };
    parse_ranges(&status.missing)
        .expect("a valid missing set")
        .into_iter()
        .flat_map(|(a, b)| a..=b)
        .map(|n| layout.block_len(n))
        .sum()
}

/// Records every progress event of a call.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// The callback to hand to the SDK.
    pub fn sink(&self) -> ProgressFn {
        let events = self.0.clone();
        Arc::new(move |e: &Event| events.lock().unwrap().push(e.clone()))
    }

    /// The events so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The error texts of the `Retrying` events.
    pub fn retried_errors(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Retrying { error, .. } => Some(error),
                _ => None,
            })
            .collect()
    }
}
