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
//!   uploads; and fast hits: an index of complete results and the memory
//!   tier in front of the disk, with pins.
//! * [`inputs`] — stored inputs: the one path that publishes a complete
//!   upload's bytes as a verified input, for entries and files alike.
//! * [`upload`] — the upload service, a leaf: sequential appends and
//!   parallel blocks into staging files under an [`upload::UploadId`],
//!   hashing each block as it arrives; the newest request for a block or an
//!   offset takes over, and a body must keep a minimum rate. A complete
//!   upload is handed back as a value ([`upload::Completion`]).
//! * [`commit`] — group commit: a block is acknowledged once its bytes and
//!   its bit are durable.
//! * [`notify`] — per-key wake-ups for waiting clients.
//! * [`ops`] — what operations do, the memory they need, the child
//!   processes they run in (killed at their timeout), and their admission
//!   against slots and a memory budget.
//! * [`store`] — all blob bytes behind the [`store::blob::BlobStore`] trait
//!   (the disk layout is its first implementation and the bounded memory
//!   tier, [`store::memory`], another, both held to
//!   [`store::conformance`]), staging, input records, the sled metadata
//!   schema ([`store::meta`]) and its records ([`store::records`]), and the
//!   room sled keeps for itself on a full disk ([`store::space`]).
//! * [`metrics`] — counters exported at `/metrics`.
//! * [`error`] — the domain error.
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
    let sweeper = {
        let core = core.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(core.config().upload_ttl.clamp(1, 600));
            loop {
                core.config().clock.sleep(every).await;
                if let Err(e) = core.expire_uploads().await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
                if let Err(e) = core.expire_files().await {
                    tracing::warn!(error = %e, "expiry sweep of file uploads failed");
                }
                metrics::SWEEPS.inc();
            }
        })
    };
    http::serve(listener, core.clone(), shutdown).await?;
    sweeper.abort();
    tokio::task::spawn_blocking(move || core.flush()).await??;
    Ok(())
}
