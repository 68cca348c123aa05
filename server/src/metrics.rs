//! Counters and gauges exported at `/metrics` in the Prometheus text
//! format. Every name is a constant here; nothing else spells one.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Gauge {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }
    pub fn set(&self, v: u64) {
        self.value.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static HTTP_REQUESTS: Counter =
    Counter::new("upcache_http_requests_total", "HTTP requests received");
pub static OPERATIONS_STARTED: Counter =
    Counter::new("upcache_operations_started_total", "Operations started");
pub static OPERATIONS_COMPLETED: Counter = Counter::new(
    "upcache_operations_completed_total",
    "Operations that produced a result",
);
pub static OPERATIONS_FAILED: Counter =
    Counter::new("upcache_operations_failed_total", "Operations that failed");
pub static BLOCKS_STORED: Counter =
    Counter::new("upcache_blocks_stored_total", "Blocks made durable");
pub static BYTES_STORED: Counter = Counter::new(
    "upcache_bytes_stored_total",
    "Input bytes written to staging",
);
pub static INPUTS_VERIFIED: Counter = Counter::new(
    "upcache_inputs_verified_total",
    "Inputs whose whole BLAKE3 matched",
);
pub static INPUTS_REJECTED: Counter = Counter::new(
    "upcache_inputs_rejected_total",
    "Inputs whose whole BLAKE3 did not match",
);
pub static HITS: Counter = Counter::new(
    "upcache_hits_total",
    "Creates and one-shot PUTs that needed no upload (result or input already stored)",
);
pub static LOOKUPS: Counter = Counter::new(
    "upcache_lookups_total",
    "Creates and one-shot PUTs: the hit ratio is upcache_hits_total over this",
);
pub static UPLOAD_BYTES_AVOIDED: Counter = Counter::new(
    "upcache_upload_bytes_avoided_total",
    "Input bytes clients did not upload because the result or the input was already stored",
);
pub static TOKENS_MINTED: Counter = Counter::new(
    "upcache_tokens_minted_total",
    "Upload tokens and presigned result URLs minted (POST /v1/tokens, POST /demo/token)",
);
pub static TOKEN_REQUESTS: Counter = Counter::new(
    "upcache_token_requests_total",
    "Requests let through by an upload token or a presigned result URL",
);
pub static TOKEN_REFUSALS: Counter = Counter::new(
    "upcache_token_refusals_total",
    "Requests refused for their upload token or presigned URL (invalid, expired, out of scope, not allowed)",
);

pub static SWEEPS: Counter = Counter::new(
    "upcache_expiry_sweeps_total",
    "Ticks of the expiry sweeper (idle uploads, unused inputs and results, failures)",
);
pub static UPLOADS_EXPIRED: Counter = Counter::new(
    "upcache_uploads_expired_total",
    "Uploads (/v1 and tus) deleted for sitting idle longer than upload_ttl",
);

pub static REMOTE_HITS: Counter = Counter::new(
    "upcache_remote_hits_total",
    "Reads the local tier missed and the remote tier (S3) answered",
);
pub static REMOTE_MISSES: Counter = Counter::new(
    "upcache_remote_misses_total",
    "Reads that neither the local nor the remote tier had",
);
pub static REMOTE_BYTES_READ: Counter = Counter::new(
    "upcache_remote_bytes_read_total",
    "Bytes read from the remote tier",
);
pub static FILL_BACKS: Counter = Counter::new(
    "upcache_fill_backs_total",
    "Blobs copied from the remote tier into the local one on a read",
);
pub static WRITE_BEHIND_DONE: Counter = Counter::new(
    "upcache_write_behind_uploads_total",
    "Blobs copied up to the remote tier by the write-behind queue",
);
pub static WRITE_BEHIND_FAILURES: Counter = Counter::new(
    "upcache_write_behind_failures_total",
    "Write-behind jobs that failed and stay queued",
);
pub static WRITE_BEHIND_DEPTH: Gauge = Gauge::new(
    "upcache_write_behind_depth",
    "Jobs in the write-behind queue to the remote tier",
);
pub static WRITE_BEHIND_AGE: Gauge = Gauge::new(
    "upcache_write_behind_oldest_seconds",
    "Seconds the oldest job of the write-behind queue has waited",
);
pub static REMOTE_BREAKER_STATE: Gauge = Gauge::new(
    "upcache_remote_breaker_state",
    "The remote tier's circuit breaker: 0 closed, 1 open, 2 half-open",
);

const GAUGES: &[&Gauge] = &[
    &DISK_USED,
    &DISK_RESERVED,
    &WRITE_BEHIND_DEPTH,
    &WRITE_BEHIND_AGE,
    &REMOTE_BREAKER_STATE,
];
pub static DISK_EVICTIONS: Counter = Counter::new(
    "upcache_disk_evictions_total",
    "Inputs and results evicted from disk to stay under disk_cap",
);
pub static DISK_EVICTED_BYTES: Counter = Counter::new(
    "upcache_disk_evicted_bytes_total",
    "Bytes of inputs and results evicted from disk",
);
pub static DISK_CAP_REFUSALS: Counter = Counter::new(
    "upcache_disk_cap_refusals_total",
    "Reservations refused because disk_cap left no room (507 disk-cap-exceeded, or an operation postponed)",
);
pub static DISK_USED: Gauge = Gauge::new(
    "upcache_disk_used_bytes",
    "Bytes of stored inputs and results on disk",
);
pub static DISK_RESERVED: Gauge = Gauge::new(
    "upcache_disk_reserved_bytes",
    "Bytes reserved for uploads in progress and operation outputs being written",
);
pub static INPUTS_EXPIRED: Counter = Counter::new(
    "upcache_inputs_expired_total",
    "Stored inputs deleted for going unused longer than input_ttl",
);
pub static RESULTS_EXPIRED: Counter = Counter::new(
    "upcache_results_expired_total",
    "Completed results deleted for going unused longer than result_ttl",
);
pub static FAILURES_EXPIRED: Counter = Counter::new(
    "upcache_failures_expired_total",
    "Failed entries forgotten once failure_ttl passed",
);
pub static SWEEP_ITEMS: Counter = Counter::new(
    "upcache_sweep_items_total",
    "Deadlines the expiry sweeper looked at (each tick looks at a bounded number)",
);
pub static PURGED_ENTRIES: Counter = Counter::new(
    "upcache_purged_entries_total",
    "Entries removed by the admin purge endpoint",
);
pub static MEMORY_HITS: Counter = Counter::new(
    "upcache_memory_hits_total",
    "Result reads answered from the memory tier",
);
pub static MEMORY_MISSES: Counter = Counter::new(
    "upcache_memory_misses_total",
    "Result reads the memory tier could not answer (served from disk)",
);
pub static MEMORY_SERVED_BYTES: Counter = Counter::new(
    "upcache_memory_served_bytes_total",
    "Bytes of results served from the memory tier",
);
pub static MEMORY_FILLS: Counter = Counter::new(
    "upcache_memory_fills_total",
    "Results put in the memory tier: when produced, and filled back on a disk hit",
);
pub static MEMORY_FILLBACKS: Counter = Counter::new(
    "upcache_memory_fillbacks_total",
    "Results filled back into the memory tier after a disk hit",
);
pub static MEMORY_EVICTIONS: Counter = Counter::new(
    "upcache_memory_evictions_total",
    "Items the memory tier evicted to stay within memory_cap",
);

pub static RESULT_REDIRECTS: Counter = Counter::new(
    "upcache_result_redirects_total",
    "Result downloads answered with a 307 to a presigned S3 URL (s3.redirect_above)",
);

const ALL: &[&Counter] = &[
    &HTTP_REQUESTS,
    &OPERATIONS_STARTED,
    &OPERATIONS_COMPLETED,
    &OPERATIONS_FAILED,
    &BLOCKS_STORED,
    &BYTES_STORED,
    &INPUTS_VERIFIED,
    &INPUTS_REJECTED,
    &HITS,
    &LOOKUPS,
    &UPLOAD_BYTES_AVOIDED,
    &SWEEPS,
    &UPLOADS_EXPIRED,
    &TOKENS_MINTED,
    &TOKEN_REQUESTS,
    &TOKEN_REFUSALS,
    &REMOTE_HITS,
    &REMOTE_MISSES,
    &REMOTE_BYTES_READ,
    &FILL_BACKS,
    &WRITE_BEHIND_DONE,
    &WRITE_BEHIND_FAILURES,
    &DISK_EVICTIONS,
    &DISK_EVICTED_BYTES,
    &DISK_CAP_REFUSALS,
    &INPUTS_EXPIRED,
    &RESULTS_EXPIRED,
    &FAILURES_EXPIRED,
    &SWEEP_ITEMS,
    &PURGED_ENTRIES,
    &MEMORY_HITS,
    &MEMORY_MISSES,
    &MEMORY_SERVED_BYTES,
    &MEMORY_FILLS,
    &MEMORY_FILLBACKS,
    &MEMORY_EVICTIONS,
    &RESULT_REDIRECTS,
];

/// The Prometheus text exposition of every counter.
pub fn render() -> String {
    let mut out = String::new();
    for c in ALL {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} counter\n{} {}\n",
            c.name,
            c.help,
            c.name,
            c.name,
            c.get()
        ));
    }
    for g in GAUGES {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n{} {}\n",
            g.name,
            g.help,
            g.name,
            g.name,
            g.get()
        ));
    }
    out
}
