//! What the figures were measured on, and the reference rates they compare with.
//!
//! The disk baselines write pseudo-random bytes into the work directory —
//! the filesystem the server writes to — and time them up to a durable
//! `fdatasync`, as the server's acknowledgements are. BLAKE3 on one core and
//! the first touch of fresh memory (each new page-cache page) are the other
//! costs every received byte pays.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::input::Xorshift;
use crate::Result;

/// The machine and the filesystem under the work directory.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: u64,
    pub kernel: String,
    /// `source on mount point type fstype` of the work directory.
    pub filesystem: String,
}

impl Machine {
    /// Reads `/proc`; fields it cannot read say `unknown`.
    /// Prints the lines of a report's header that say where it ran: the
    /// machine, its load before the run, and the work dir's filesystem.
    pub fn print(&self, work: &Path) {
        println!(
            "  machine   {} CPUs ({}), {} RAM, Linux {}",
            self.cpus,
            self.cpu_model,
            crate::report::size(self.memory),
            self.kernel
        );
        println!(
            "  load avg  {} (1, 5, 15 min, before the run)",
            load_average()
        );
        println!("  work dir  {} — {}", work.display(), self.filesystem);
    }

    pub fn describe(work_dir: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let filesystem = std::fs::canonicalize(work_dir)
            .ok()
            .and_then(|dir| mount_of(&read("/proc/self/mounts"), &dir))
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            filesystem,
        }
    }
}

/// The mount (longest mount point containing `dir`) as `source on target type fstype`.
fn mount_of(mounts: &str, dir: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (source, target, fstype) = (f.first()?, f.get(1)?.replace("\\040", " "), f.get(2)?);
            dir.starts_with(&target)
                .then(|| (target.len(), format!("{source} on {target} type {fstype}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, m)| m)
}

/// Writes `size` bytes to a new file in `dir` in `chunk`-byte writes,
/// fdatasyncing after every `sync_every` bytes and at the end; returns the
/// time from the first write to the last sync. The file is removed. Blocking.
pub fn disk_write(dir: &Path, size: u64, chunk: usize, sync_every: u64) -> Result<Duration> {
    let path = dir.join("disk-baseline");
    let mut buf = vec![0u8; chunk];
    Xorshift::new(0xd15c).fill(&mut buf);
    let mut file = File::create(&path)?;
    let started = Instant::now();
    let (mut written, mut unsynced) = (0u64, 0u64);
    while written < size {
        let n = (size - written).min(chunk as u64) as usize;
        // A different first word per chunk: no two chunks are alike.
        buf[..8].copy_from_slice(&written.to_le_bytes());
        file.write_all(&buf[..n])?;
        written += n as u64;
        unsynced += n as u64;
        if unsynced >= sync_every {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    file.sync_data()?;
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(took)
}

/// Busy and total CPU ticks of the whole machine so far (`/proc/stat`).
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    busy: u64,
    total: u64,
}

impl CpuTicks {
    /// Now; zero if `/proc/stat` cannot be read.
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Self {
            busy: total - idle,
            total,
        }
    }

    /// The share of all CPUs busy since `earlier`, 0 to 1.
    pub fn busy_since(&self, earlier: &Self) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Pause before each timed phase, after a `sync`: the previous phase's
/// write-back and freed memory settle, so phases do not inherit each other's
/// state. How busy the machine was meanwhile tells whether something else was
/// running (the benchmark and its servers are idle then).
pub const SETTLE: Duration = Duration::from_secs(2);

/// `sync`, then [`SETTLE`]; returns the share of the CPUs that other work
/// kept busy during the pause, 0 to 1.
pub async fn settle() -> Result<f64> {
    let busy = tokio::task::spawn_blocking(|| {
        // SAFETY: sync(2) has no preconditions.
        unsafe { libc::sync() };
        let before = CpuTicks::now();
        std::thread::sleep(SETTLE);
        CpuTicks::now().busy_since(&before)
    })
    .await?;
    Ok(busy)
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows here.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Time to touch `size` bytes of fresh anonymous memory, one write per page:
/// what every new page-cache page costs before a byte is copied into it. On
/// most machines this is the kernel zeroing pages; in a VM whose host
/// reclaims freed guest memory (free page reporting, ballooning) each first
/// touch is also a fault in the host, and it can dominate.
pub fn first_touch(size: u64) -> Duration {
    // Zeroed allocations this large are fresh mappings: no page exists yet.
    let mut buf = vec![0u8; size as usize];
    let started = Instant::now();
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1;
    }
    let took = started.elapsed();
    std::hint::black_box(&buf);
    took
}

/// Time BLAKE3 takes on one core for `size` bytes, fed in `piece`-byte
/// updates (as the server feeds it network reads).
pub fn blake3_one_core(size: u64, piece: usize) -> Duration {
    let mut buf = vec![0u8; 8 << 20];
    Xorshift::new(0xb1a4e3).fill(&mut buf);
    let started = Instant::now();
    let mut hasher = blake3::Hasher::new();
    let mut left = size;
    while left > 0 {
        for p in buf.chunks(piece) {
            let n = (p.len() as u64).min(left) as usize;
            hasher.update(&p[..n]);
            left -= n as u64;
            if left == 0 {
                break;
            }
        }
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n/dev/vdb /srv/my\\040data xfs rw 0 0\n";
        assert_eq!(
            mount_of(mounts, Path::new("/work/x")).unwrap(),
            "/dev/vda on / type ext4"
        );
        assert_eq!(
            mount_of(mounts, Path::new("/dev/shm/a")).unwrap(),
            "tmpfs on /dev/shm type tmpfs"
        );
        assert_eq!(
            mount_of(mounts, Path::new("/srv/my data/b")).unwrap(),
            "/dev/vdb on /srv/my data type xfs"
        );
        assert_eq!(
            mount_of(mounts, Path::new("/srv/my")).unwrap(),
            "/dev/vda on / type ext4"
        );
    }
}
