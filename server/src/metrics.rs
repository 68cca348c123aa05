//! Counters, gauges and latency histograms exported at `/metrics` in the
//! Prometheus text format. Every name is a constant here; nothing else
//! spells one.
//!
//! A [`Histogram`] has fixed buckets and atomic counts: recording is one
//! bucket search over a short array and two relaxed `fetch_add`s, no lock
//! and no allocation, so it may sit on the hit path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Upper bounds of the latency buckets: the `le` label and nanoseconds.
/// From a microsecond (a memory hit) to two minutes (an upload to S3).
const LATENCY_BUCKETS: [(&str, u64); 24] = [
    ("0.000001", 1_000),
    ("0.000005", 5_000),
    ("0.00001", 10_000),
    ("0.000025", 25_000),
    ("0.00005", 50_000),
    ("0.0001", 100_000),
    ("0.00025", 250_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
    ("30", 30_000_000_000),
    ("60", 60_000_000_000),
    ("120", 120_000_000_000),
];

/// A latency histogram in seconds with the fixed [`LATENCY_BUCKETS`].
pub struct Histogram {
    pub name: &'static str,
    pub help: &'static str,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Nanoseconds observed in all.
    sum: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            counts: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1],
            sum: AtomicU64::new(0),
        }
    }

    /// Records one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS.partition_point(|&(_, bound)| bound < nanos);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records the time since `start`.
    pub fn since(&self, start: Instant) {
        self.observe(start.elapsed());
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Appends the histogram's exposition: cumulative `_bucket` samples,
    /// then `_sum` (seconds) and `_count`.
    fn render(&self, out: &mut String) {
        let n = self.name;
        let _ = write!(out, "# HELP {n} {}\n# TYPE {n} histogram\n", self.help);
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS.get(i).map_or("+Inf", |&(le, _)| le);
            let _ = writeln!(out, "{n}_bucket{{le=\"{le}\"}} {total}");
        }
        let sum = Duration::from_nanos(self.sum.load(Ordering::Relaxed)).as_secs_f64();
        let _ = write!(out, "{n}_sum {sum}\n{n}_count {total}\n");
    }
}

pub static MEMORY_READ_SECONDS: Histogram = Histogram::new(
    "upcache_memory_read_seconds",
    "Reads of results from the memory tier, whole: the lookup and the slice of the range asked for",
);
pub static DISK_READ_SECONDS: Histogram = Histogram::new(
    "upcache_disk_read_seconds",
    "Reads from the disk tier, to the first byte: until the blob's bytes, or its open stream for large ones, are handed back",
);
pub static REMOTE_READ_SECONDS: Histogram = Histogram::new(
    "upcache_remote_read_seconds",
    "Reads from the remote tier (S3) on a disk miss, whole: the blob fetched, checked and stored on disk (read-through fill)",
);
pub static WRITE_BEHIND_UPLOAD_SECONDS: Histogram = Histogram::new(
    "upcache_write_behind_upload_seconds",
    "Copies of a blob to the remote tier (S3) by the write-behind queue, whole, successful ones",
);

const HISTOGRAMS: &[&Histogram] = &[
    &MEMORY_READ_SECONDS,
    &DISK_READ_SECONDS,
    &REMOTE_READ_SECONDS,
    &WRITE_BEHIND_UPLOAD_SECONDS,
];

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
pub static REMOTE_GET_REQUESTS: Counter = Counter::new(
    "upcache_remote_get_requests_total",
    "GET requests of objects sent to the remote tier (S3), retries included",
);
pub static REMOTE_HEAD_REQUESTS: Counter = Counter::new(
    "upcache_remote_head_requests_total",
    "HEAD requests sent to the remote tier (S3), retries included",
);
pub static REMOTE_PUT_REQUESTS: Counter = Counter::new(
    "upcache_remote_put_requests_total",
    "PUT and POST requests sent to the remote tier (S3): objects, multipart parts and their start and end; retries included",
);
pub static REMOTE_LIST_REQUESTS: Counter = Counter::new(
    "upcache_remote_list_requests_total",
    "LIST requests sent to the remote tier (S3), retries included",
);
pub static REMOTE_DELETE_REQUESTS: Counter = Counter::new(
    "upcache_remote_delete_requests_total",
    "DELETE requests sent to the remote tier (S3), retries included",
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
    &MEMORY_HELD,
    &MEMORY_PINNED,
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
pub static MEMORY_HELD: Gauge = Gauge::new(
    "upcache_memory_held_bytes",
    "Weight of the memory tier's evictable items (their bytes plus 128 each), at most memory_cap",
);
pub static MEMORY_PINNED: Gauge = Gauge::new(
    "upcache_memory_pinned_bytes",
    "Bytes of pinned results held in memory, outside memory_cap (memory_pin_operations)",
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
    &REMOTE_GET_REQUESTS,
    &REMOTE_HEAD_REQUESTS,
    &REMOTE_PUT_REQUESTS,
    &REMOTE_LIST_REQUESTS,
    &REMOTE_DELETE_REQUESTS,
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
    for h in HISTOGRAMS {
        h.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::new("test_seconds", "A test histogram");
        h.observe(Duration::from_nanos(800)); // ≤ 1 µs
        h.observe(Duration::from_micros(1)); // on a bound: that bucket
        h.observe(Duration::from_millis(3)); // ≤ 5 ms
        h.observe(Duration::from_secs(600)); // above every bound
        let mut out = String::new();
        h.render(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# HELP test_seconds A test histogram");
        assert_eq!(lines[1], "# TYPE test_seconds histogram");
        assert_eq!(lines[2], "test_seconds_bucket{le=\"0.000001\"} 2");
        assert_eq!(lines[3], "test_seconds_bucket{le=\"0.000005\"} 2");
        assert!(out.contains("test_seconds_bucket{le=\"0.0025\"} 2\n"));
        assert!(out.contains("test_seconds_bucket{le=\"0.005\"} 3\n"));
        assert!(out.contains("test_seconds_bucket{le=\"120\"} 3\n"));
        assert_eq!(lines[lines.len() - 3], "test_seconds_bucket{le=\"+Inf\"} 4");
        let sum: f64 = lines[lines.len() - 2]
            .strip_prefix("test_seconds_sum ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 600.003_001_8).abs() < 1e-9, "{sum}");
        assert_eq!(lines[lines.len() - 1], "test_seconds_count 4");
        assert_eq!(lines.len(), 2 + LATENCY_BUCKETS.len() + 1 + 2);
        assert_eq!(h.count(), 4);
        // Buckets ascend, so that the cumulative counts mean what they say.
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0].1 < w[1].1));
        assert!(LATENCY_BUCKETS
            .iter()
            .all(|&(le, ns)| (le.parse::<f64>().unwrap() * 1e9).round() as u64 == ns));
    }

    #[test]
    fn every_histogram_is_in_the_exposition() {
        let text = render();
        for h in HISTOGRAMS {
            assert!(text.contains(&format!("# TYPE {} histogram\n", h.name)));
            assert!(text.contains(&format!("{}_bucket{{le=\"+Inf\"}}", h.name)));
        }
    }
}
