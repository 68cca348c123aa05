//! Benchmarks of upcache. They print figures to read side by side with the
//! machine's own reference rates; they assert nothing about speed.
//!
//! # Layout
//!
//! * [`ingest`] — the ingest benchmark: one input uploaded as a single `PATCH`
//!   with curl, and as parallel blocks over several HTTP/1.1 streams.
//! * [`sdk`] — the SDK benchmark: the SDK's main call (`upcache put`) at
//!   several stream counts next to one `PATCH` with curl, with the client's
//!   CPU time and peak RSS.
//! * [`tus`] — the tus benchmark: upcache's tus endpoint (`/files/`) next to
//!   `@tus/server` with `@tus/file-store` (Node), with tus-js-client and curl.
//! * [`images`] — the image benchmark: thumbnails of a large JPEG and PNG as
//!   WebP, AVIF and JPEG, upcache against `vipsthumbnail`, time and bytes.
//! * [`soak`] — the soak test: many clients mixing every kind of request
//!   for a long time; errors must be 0 and the server's RSS, fds and sled
//!   database flat once warm.
//! * [`server`] — a fresh `upcache serve` process per scenario (own data
//!   directory, port 0), and its peak RSS and CPU time read from `/proc`.
//! * [`input`] — pseudo-random input files and their BLAKE3, made before any timing.
//! * [`process`] — a client run as its own process and measured alone:
//!   wall time, CPU seconds and peak RSS (`wait4`, through a small trampoline).
//! * [`client`] — the `/v1` calls around a timed upload: create, status, and a
//!   check of the stored result that never holds the input in memory.
//! * [`machine`] — what the figures were measured on, and the reference rates they
//!   compare with: write + fdatasync on the disk, first touch of fresh memory,
//!   BLAKE3 on one core.
//! * [`report`] — sizes, rates and the result table.
//!
//! Every benchmark is a binary in `src/bin/` that parses its flags and calls
//! a `run` function here; the modules above are shared between benchmarks.

pub mod cli;
pub mod client;
pub mod images;
pub mod ingest;
pub mod input;
pub mod machine;
pub mod process;
pub mod report;
pub mod sdk;
pub mod server;
pub mod soak;
pub mod tus;

use std::path::PathBuf;

/// Errors of a benchmark run: each says what failed; the run stops at the first.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The workspace root (this crate lives in `<root>/benches`).
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace)
/// or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir), // join keeps an absolute path as is
        None => workspace().join("target"),
    }
}

/// What every benchmark checks before it measures anything, and the work
/// directory it measures in: the input size and block size are usable, the
/// `upcache` binary and curl run. The directory (inside `work_dir`, named
/// after `name`) is removed when dropped — at the end, on an error, or when
/// the run is interrupted.
pub async fn prepare(
    name: &str,
    size: u64,
    block_size: u64,
    upcache_bin: &std::path::Path,
    curl: &std::path::Path,
    work_dir: &std::path::Path,
) -> Result<tempfile::TempDir> {
    if size == 0 {
        return Err("--size must be above zero".into());
    }
    upcache_protocol::Layout::new(size, block_size, u64::MAX)
        .map_err(|e| format!("--block-size: {e}"))?;
    if !upcache_bin.is_file() {
        return Err(format!(
            "no upcache binary at {} (cargo build --release -p upcache)",
            upcache_bin.display()
        )
        .into());
    }
    ingest::check_curl(curl).await?;
    std::fs::create_dir_all(work_dir)?;
    Ok(tempfile::Builder::new()
        .prefix(&format!("upcache-{name}-"))
        .tempdir_in(work_dir)?)
}
