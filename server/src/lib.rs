//! upcache: a resumable, content-addressed operation cache for uploads.
//!
//! # Layout
//!
//! * [`config`] — the settings, layered defaults → TOML → environment → flags.
//! * [`clock`] — the time the service goes by: the system's, or one a test
//!   moves by hand.
//! * [`http`] — the HTTP/1.1 + HTTP/2 front end: serving loop, typed routes,
//!   handlers, result serving, error rendering; connections that linger when
//!   closed, answers given before a body was read, hyper's own errors turned
//!   into problem documents; API keys, scoped upload tokens and presigned
//!   result URLs ([`http::tokens`]), and the demo page. It calls methods of
//!   [`Core`] only.
//! * [`cache`] — the service, [`Core`], whose fields are private: `/v1`
//!   entries (create, verify, process once with single flight, wait,
//!   delete, recover) and tus file uploads ([`cache::files`]: hashed as they
//!   arrive, bound to their entry when complete) — the two owners of
//!   uploads; the expiry sweeper (`cache::sweep`) and admin purges
//!   (`cache::purge`); and fast hits: an index of complete results and the
//!   memory tier in front of the disk, with pins; and the redirect of large
//!   results to presigned URLs of the S3 tier (`cache::redirect`).
//! * [`inputs`] — stored inputs: the one path that publishes a complete
//!   upload's bytes as a verified input, for entries and files alike.
//! * [`upload`] — the upload service, a leaf: sequential appends and
//!   parallel blocks into staging files under an [`upload::UploadId`],
//!   hashing each block as it arrives; the newest request for a block or an
//!   offset takes over, and a body must keep a minimum rate. A body waiting
//!   for the network holds no thread, and one that stalls, or comes too
//!   slowly to fill a write buffer soon, lets its buffers go. A complete
//!   upload is handed back as a value
//!   ([`upload::Completion`]).
//! * [`commit`] — group commit: a block is acknowledged once its bytes and
//!   its bit are durable.
//! * [`notify`] — per-key wake-ups for waiting clients.
//! * [`ops`] — what operations do, the memory they need, the child
//!   processes they run in (killed at their timeout), and their admission
//!   against slots and a memory budget.
//! * [`store`] — all blob bytes behind the [`store::blob::BlobStore`] trait
//!   (the disk layout, an S3 bucket, [`store::s3`], and the bounded memory
//!   tier, [`store::memory`], implement it, all held to
//!   [`store::conformance`]), staging, input records, the sled metadata
//!   schema ([`store::meta`]) and its records ([`store::records`]), and the
//!   room sled keeps for itself on a full disk ([`store::space`]), the disk
//!   cap with its least-recently-used eviction ([`store::cap`],
//!   [`store::capped`]), the deadline index of the expiry sweeper
//!   ([`store::deadlines`]), and the tiers ([`store::tiers`]): the disk with
//!   an optional S3 tier behind it — read-through with fill-back, the
//!   durable write-behind queue ([`store::write_behind`]) and the circuit
//!   breaker ([`store::breaker`]).
//! * [`metrics`] — counters, gauges and latency histograms exported at
//!   `/metrics`.
//! * [`error`] — the domain error.
//! * [`tune_allocator`] — glibc malloc settings for the serving process (body
//!   chunks reused instead of page-faulted anew).
//!
//! Layers point one way: `http` → `cache` → `inputs` → `upload` →
//! `commit`/`ops` → `error` → `store`, with `config`, `metrics` and `notify`
//! and `clock` as leaves, and `http` never names `store`; `tests/architecture.rs`
//! holds the code to it.

pub mod cache;
pub mod clock;
pub mod commit;
pub mod config;
pub mod error;
pub mod http;
pub mod inputs;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod store;
pub mod upload;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use cache::Core;
pub use config::Config;

/// Settles glibc's allocator for serving; call it first thing in the
/// serving process, before other threads start.
///
/// An upload's body arrives in chunks of a few hundred KiB that live only
/// until they are hashed and written. By default glibc serves chunks that
/// size with a fresh `mmap` (or gives freed memory back to the system soon
/// after), so every chunk is page-faulted and zeroed anew by the kernel: on
/// a large upload that was an eighth of the server's CPU time. Above the
/// default thresholds, freed chunks are reused instead. What the server may
/// hold unused is bounded by the trim threshold per arena.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Allocations from this size on get their own `mmap` (glibc's
        /// default is 128 KiB, raised as large chunks are freed).
        const MMAP_THRESHOLD: i32 = 4 << 20;
        /// Free memory at the top of an arena kept rather than given back.
        const TRIM_THRESHOLD: i32 = 64 << 20;
        // SAFETY: mallopt only changes allocator parameters; called before
        // other threads allocate.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// Raises the soft limit on open files to the hard one, as nginx's
/// `worker_rlimit_nofile` would: every connection is a file, and the disk
/// tier keeps the files of hot blobs open. The usual soft limit (1024) is
/// a leftover of `select`; a service that meets it refuses connections.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    tracing::debug!("the open files limit stays where it was");
                }
            }
        }
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Domain(#[from] error::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if config.token_keys.is_empty() && config.token_keys_file.is_none() {
        tracing::info!(
            "no token_keys: upload tokens are signed with a random key, valid until a restart"
        );
    }
    if config.demo_enabled() && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "the demo is on: anyone reaching the server can get upload tokens at /demo/token");
    }
    let core = tokio::task::spawn_blocking(move || Core::open(config)).await??;
    core.recover().await?;
    core.start();
    let sweeper = {
        let core = core.clone();
        tokio::spawn(async move {
            let config = core.config();
            // Often enough for the shortest time to live, at most every 10 min.
            let ttls = [
                config.upload_ttl,
                config.failure_ttl,
                config.input_ttl,
                config.result_ttl,
            ];
            let shortest = ttls.into_iter().filter(|t| *t > 0).min().unwrap_or(600);
            let every = Duration::from_secs(shortest.clamp(1, 600));
            loop {
                config.clock.sleep(every).await;
                // Each tick settles a bounded batch; a full batch means more
                // are due, and the next tick follows at once.
                loop {
                    match core.sweep(cache::SWEEP_BATCH).await {
                        Ok(n) if n == cache::SWEEP_BATCH => tokio::task::yield_now().await,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "expiry sweep failed");
                            break;
                        }
                    }
                }
                metrics::SWEEPS.inc();
            }
        })
    };
    let write_behind = tokio::spawn(core.write_behind());
    http::serve(listener, core.clone(), shutdown).await?;
    sweeper.abort();
    // The queue is durable: a job cut short runs again at the next start.
    write_behind.abort();
    tokio::task::spawn_blocking(move || core.flush()).await??;
    Ok(())
}
