//! Rust SDK for upcache: hand it a file and an operation, get the result —
//! uploading only what the server is missing, in parallel, riding out dropped
//! connections and server restarts.
//!
//! ```no_run
//! # async fn example() -> Result<(), upcache_client::Error> {
//! use upcache_client::Client;
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let op = serde_json::json!({"op": "image.thumbnail", "width": 400, "height": 400, "format": "webp"});
//! let done = client.put_file("photo.jpg", &op).await?;
//! if done.hit {
//!     println!("cached: nothing uploaded");
//! }
//! done.save("thumb.webp").await?;
//! # Ok(()) }
//! ```
//!
//! The main call ([`Client::put_file`], [`Client::put_reader`]) runs these
//! steps, each also available on its own:
//!
//! 1. hash the input with BLAKE3 block by block ([`hash_file`]: memory-mapped,
//!    all cores), keeping each block's chaining value;
//! 2. derive the key and probe the server once ([`Client::create`]);
//! 3. upload only the missing blocks over [`Options::concurrency`] parallel
//!    requests, each checked by its chaining value in `Upload-Block-Hash`
//!    ([`Client::put_block_hashed`]; the server checks it without hashing
//!    the block again);
//! 4. wait for the result with reconnects ([`Client::wait`]);
//! 5. fetch it, resuming with ranges and verifying its BLAKE3
//!    ([`Done::bytes`], [`Done::save`], [`Client::download`]).
//!
//! After any failure the call re-probes and continues from the server's
//! `missing` set, so running it again after a crash also resumes. Failures
//! are retried per [`RetryPolicy`]; errors carry the server's problem
//! details and say whether retrying can help ([`Error::is_retryable`]).
//!
//! # Layout
//!
//! * [`client`] — the [`Client`] and one low-level call per protocol step.
//! * [`put`] — the main call and result download.
//! * [`hash`] — hashing files and readers.
//! * [`options`] — [`Options`] and [`RetryPolicy`].
//! * [`progress`] — progress [`Event`]s.
//! * [`error`] — the [`Error`] type.

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod hash;
pub mod options;
pub mod progress;
pub mod put;
mod retry;

pub use client::Client;
pub use error::{Error, Result};
pub use hash::hash_file;
pub use options::{Options, RetryPolicy};
pub use progress::{Event, ProgressFn};
pub use put::Done;
pub use upcache_protocol::accept;
pub use upcache_protocol::admin;
pub use upcache_protocol::token;
pub use upcache_protocol::{InputHash, Key, Operation, Problem, ProblemType, State, Status};

/// The key of `operation` applied to the file at `path` (hashes the file).
pub async fn key_of_file(
    path: impl AsRef<std::path::Path>,
    operation: &serde_json::Value,
) -> Result<Key> {
    key_of_file_accepting(path, operation, upcache_protocol::accept::ALL_IMAGES).await
}

/// [`key_of_file`] for a client that sends `accept` (which an operation
/// with `format: "auto"` is resolved with; see [`Options::accept`]).
pub async fn key_of_file_accepting(
    path: impl AsRef<std::path::Path>,
    operation: &serde_json::Value,
    accept: &str,
) -> Result<Key> {
    let op = Operation::parse(operation)?.resolve_auto(Some(accept));
    Ok(Key::derive(&hash_file(path.as_ref()).await?, &op))
}
