//! The server's footprint, read from outside: resident memory (`VmRSS`),
//! the bytes its memory tier holds (from `/metrics`: a cache that fills to
//! `memory_cap` by design, so RSS is judged without it), open file descriptors (entries of `/proc/<pid>/fd`, and how many of them
//! are sockets), and the disk used
//! under its data directory (as `du` counts it: allocated blocks, so sparse
//! staging files count for what they hold) — the sled database (`db/`) and
//! the blob directories apart.
//!
//! Then the verdict: is the end of the run no bigger than its warm start,
//! within the stated margins?

use std::path::Path;
use std::time::Duration;

use crate::report::size;
use crate::server::{rss_anon, vm_rss};
use crate::Result;

/// The server at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Since the clients started.
    pub at: Duration,
    pub rss: u64,
    /// The anonymous part of `rss`: the rest is pages of mapped files.
    pub anon: u64,
    /// What the memory tier holds (`upcache_memory_held_bytes` plus
    /// `upcache_memory_pinned_bytes`): part of `anon`.
    pub tier: u64,
    pub fds: u64,
    /// The descriptors that are sockets: connections and the listener.
    pub sockets: u64,
    /// `du` of `<data>/db` (sled).
    pub db: u64,
    /// `du` of the whole data directory.
    pub data: u64,
    /// `du` of `<data>/inputs`, `<data>/results`, `<data>/staging`.
    pub inputs: u64,
    pub results: u64,
    pub staging: u64,
}

impl Sample {
    /// Reads `/proc/<pid>` and walks `data`; `tier` is [`memory_tier`] of
    /// the server's `/metrics`. Blocking.
    pub fn take(pid: u32, data: &Path, at: Duration, tier: u64) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let (mut fds, mut sockets) = (0, 0);
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            fds += 1;
            // A descriptor closed since the listing has no link: not counted.
            let target = fd.and_then(|fd| std::fs::read_link(fd.path()));
            if target.is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
                sockets += 1;
            }
        }
        Ok(Self {
            at,
            rss: vm_rss(&status).ok_or("no VmRSS in /proc/<pid>/status")?,
            anon: rss_anon(&status).ok_or("no RssAnon in /proc/<pid>/status")?,
            tier,
            fds,
            sockets,
            db: du(&data.join("db")),
            data: du(data),
            inputs: du(&data.join("inputs")),
            results: du(&data.join("results")),
            staging: du(&data.join("staging")),
        })
    }

    /// RSS less what the memory tier holds: the memory that must stay flat.
    pub fn rss_beyond_tier(&self) -> u64 {
        self.rss.saturating_sub(self.tier)
    }

    /// One progress line.
    pub fn line(&self, requests: u64, errors: u64, rate: f64) -> String {
        format!(
            "  {:>6.0} s  {requests:>9} requests ({rate:>5.0}/s)  {errors} errors  RSS {} (memory tier {})  fds {}  db {}  data {} (inputs {}, results {}, staging {})",
            self.at.as_secs_f64(),
            size(self.rss),
            size(self.tier),
            self.fds,
            size(self.db),
            size(self.data),
            size(self.inputs),
            size(self.results),
            size(self.staging),
        )
    }
}

/// The bytes the memory tier holds, from the text of `/metrics`: its
/// evictable items and its pinned ones. `None` if the gauges are missing.
pub fn memory_tier(exposition: &str) -> Option<u64> {
    let gauge = |name: &str| {
        exposition.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok())?
        })
    };
    let held = gauge("upcache_memory_held_bytes")?;
    let pinned = gauge("upcache_memory_pinned_bytes")?;
    Some((held + pinned) as u64)
}

/// Bytes allocated to the files under `path`; files that vanish during the
/// walk (the server deletes as it goes) count for nothing.
pub fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    own + entries
        .filter_map(|e| e.ok())
        .map(|e| du(&e.path()))
        .sum::<u64>()
}

/// What the server logged at levels `WARN` and `ERROR` (tracing's format:
/// `TIMESTAMP LEVEL target: message`).
#[derive(Debug, Default)]
pub struct LogCounts {
    pub errors: u64,
    pub warnings: u64,
    /// The first few such lines.
    pub first: Vec<String>,
}

impl LogCounts {
    /// Lines kept in [`LogCounts::first`].
    const KEEP: usize = 10;

    /// Reads the server's stderr log; a missing log counts nothing. Blocking.
    pub fn read(path: &Path) -> Self {
        use std::io::BufRead;
        let mut counts = Self::default();
        let Ok(file) = std::fs::File::open(path) else {
            return counts;
        };
        for line in std::io::BufReader::new(file).lines().map_while(|l| l.ok()) {
            let level = line.split_whitespace().nth(1).unwrap_or_default();
            match level {
                "ERROR" => counts.errors += 1,
                "WARN" => counts.warnings += 1,
                _ => continue,
            }
            if counts.first.len() < Self::KEEP {
                counts.first.push(line);
            }
        }
        counts
    }
}

/// One line of the verdict: a figure at two moments and the most the
/// second may be.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: &'static str,
    pub from: u64,
    pub to: u64,
    pub limit: u64,
    /// How the limit was set, said in the report.
    pub rule: &'static str,
    /// Bytes (printed in binary units) or a count.
    pub bytes: bool,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.to <= self.limit
    }

    pub fn line(&self) -> String {
        let f = |v: u64| if self.bytes { size(v) } else { v.to_string() };
        format!(
            "  {:<4} {:<38} {:>10} -> {:>10}   limit {:>10}  ({})",
            if self.ok() { "ok" } else { "GREW" },
            self.what,
            f(self.from),
            f(self.to),
            f(self.limit),
            self.rule
        )
    }
}

const MIB: u64 = 1 << 20;

/// The flatness checks: `warm` and `end` are taken under load (after the
/// warm-up, and when the clients stop starting work); `before` on the fresh
/// server and `idle` once every client has finished.
pub fn checks(before: &Sample, warm: &Sample, end: &Sample, idle: &Sample) -> Vec<Check> {
    let grown = |from: u64, pct: u64, plus: u64| from + from * pct / 100 + plus;
    vec![
        // The memory tier fills towards memory_cap by design (bounded,
        // checked by the server's own tests); the rest must not grow.
        Check {
            what: "RSS less the memory tier, under load",
            from: warm.rss_beyond_tier(),
            to: end.rss_beyond_tier(),
            limit: grown(warm.rss_beyond_tier(), 25, 16 * MIB),
            rule: "warm + 25% + 16 MiB",
            bytes: true,
        },
        Check {
            what: "open fds, under load",
            from: warm.fds,
            to: end.fds,
            limit: grown(warm.fds, 25, 16),
            rule: "warm + 25% + 16",
            bytes: false,
        },
        // Files may stay open once idle (the server keeps the files of hot
        // blobs open, a bounded number); connections may not.
        Check {
            what: "open sockets, idle (fresh -> drained)",
            from: before.sockets,
            to: idle.sockets,
            limit: before.sockets + 8,
            rule: "fresh server + 8",
            bytes: false,
        },
        Check {
            what: "sled db/",
            from: warm.db,
            to: end.db,
            limit: grown(warm.db, 50, 16 * MIB),
            rule: "warm + 50% + 16 MiB",
            bytes: true,
        },
        Check {
            what: "results/",
            from: warm.results,
            to: end.results,
            limit: grown(warm.results, 50, 16 * MIB),
            rule: "warm + 50% + 16 MiB",
            bytes: true,
        },
        Check {
            what: "staging/, idle (fresh -> drained)",
            from: before.staging,
            to: idle.staging,
            limit: before.staging + MIB,
            rule: "fresh server + 1 MiB",
            bytes: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn du_counts_allocated_blocks_not_lengths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("full"), vec![1u8; 64 << 10]).unwrap();
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x"), vec![1u8; 64 << 10]).unwrap();
        let total = du(dir.path());
        assert!(total >= 128 << 10, "{total}");
        assert!(
            total < 1 << 20,
            "a sparse file counts what it holds: {total}"
        );
        assert_eq!(du(&dir.path().join("missing")), 0);
    }

    #[test]
    fn warnings_and_errors_of_the_log_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        std::fs::write(
            &log,
            "2026-01-01T00:00:00Z  INFO upcache: listening\n\
             2026-01-01T00:00:01Z  WARN upcache::http: slow\n\
             2026-01-01T00:00:02Z ERROR upcache::cache: broken\n\
             a line that says ERROR later\n",
        )
        .unwrap();
        let c = LogCounts::read(&log);
        assert_eq!((c.errors, c.warnings, c.first.len()), (1, 1, 2));
        assert_eq!(LogCounts::read(&dir.path().join("none")).errors, 0);
    }

    #[test]
    fn the_memory_tier_is_read_from_the_exposition() {
        let text = "# HELP upcache_memory_held_bytes Weight\n\
                    # TYPE upcache_memory_held_bytes gauge\n\
                    upcache_memory_held_bytes 1048576\n\
                    upcache_memory_held_bytes_total 7\n\
                    upcache_memory_pinned_bytes 4096\n";
        assert_eq!(memory_tier(text), Some((1 << 20) + 4096));
        assert_eq!(memory_tier("upcache_memory_held_bytes 1\n"), None);
    }

    #[test]
    fn a_full_memory_tier_is_not_growth() {
        let warm = Sample {
            rss: 100 * MIB,
            tier: 10 * MIB,
            ..Sample::default()
        };
        let mut end = warm;
        end.rss = 340 * MIB;
        end.tier = 250 * MIB;
        assert!(checks(&warm, &warm, &end, &warm)[0].ok());
        end.tier = 100 * MIB;
        assert!(!checks(&warm, &warm, &end, &warm)[0].ok());
    }

    #[test]
    fn growth_beyond_the_margin_fails() {
        let warm = Sample {
            rss: 100 * MIB,
            fds: 200,
            ..Sample::default()
        };
        let mut end = warm;
        end.rss = 140 * MIB;
        let c = checks(&warm, &warm, &end, &warm);
        assert!(c[0].ok(), "{}", c[0].line());
        end.rss = 150 * MIB;
        end.fds = 300;
        let c = checks(&warm, &warm, &end, &warm);
        assert!(!c[0].ok() && !c[1].ok());
        // Files left open once idle are not connections left open.
        let mut idle = warm;
        idle.fds = 500;
        assert!(checks(&warm, &warm, &warm, &idle)[2].ok());
        idle.sockets = warm.sockets + 9;
        assert!(!checks(&warm, &warm, &warm, &idle)[2].ok());
        assert!(c[0].line().starts_with("  GREW"), "{}", c[0].line());
    }
}
