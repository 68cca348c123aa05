//! Counters exported at `/metrics` in the Prometheus text format. Every name
//! is a constant here; nothing else spells one.

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
    "Sweeps for idle uploads that are due to expire",
);
pub static UPLOADS_EXPIRED: Counter = Counter::new(
    "upcache_uploads_expired_total",
    "Uploads (/v1 and tus) deleted for sitting idle longer than upload_ttl",
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
    &SWEEPS,
    &UPLOADS_EXPIRED,
    &TOKENS_MINTED,
    &TOKEN_REQUESTS,
    &TOKEN_REFUSALS,
    &MEMORY_HITS,
    &MEMORY_MISSES,
    &MEMORY_SERVED_BYTES,
    &MEMORY_FILLS,
    &MEMORY_FILLBACKS,
    &MEMORY_EVICTIONS,
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
    out
}
