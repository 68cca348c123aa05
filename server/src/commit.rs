//! Group commit of received blocks.
//!
//! A block is acknowledged only once its bytes (fdatasync of the staging
//! file) and its bit and chaining value (sled flush) are durable. One
//! committer thread takes every pending request at once, syncs each file
//! once, records all blocks in one transaction and flushes once: under
//! parallel uploads one fsync pair covers many blocks.
//!
//! A failed sync or record (a full disk, say) fails every request of the
//! group — none of those blocks is acknowledged, and none is recorded unless
//! its bytes were synced — and the thread goes on with the next group: it
//! outlives any failure, a panic included, so that uploads resume once the
//! cause is gone.

use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;
use upcache_protocol::Key;

use crate::error::{self, Error};
use crate::store::meta::{BlockCommit, Meta, MetaError};

/// Whether a commit became durable (or why not).
pub type Committed = Result<(), NotCommitted>;

/// Why a commit did not become durable; shared by every request of a group.
#[derive(Debug, Clone)]
pub struct NotCommitted {
    why: String,
    /// The disk was full: the client is told so (`507`), not "internal".
    no_space: bool,
}

impl NotCommitted {
    fn io(what: &str, e: &std::io::Error) -> Self {
        Self {
            why: format!("{what}: {e}"),
            no_space: error::is_no_space(e),
        }
    }

    fn meta(e: &MetaError) -> Self {
        Self {
            why: e.to_string(),
            no_space: e.is_no_space(),
        }
    }
}

impl From<NotCommitted> for Error {
    fn from(e: NotCommitted) -> Self {
        if e.no_space {
            error::no_space(e.why)
        } else {
            Error::Internal(e.why)
        }
    }
}

enum Request {
    Blocks {
        file: Arc<File>,
        blocks: Vec<BlockCommit>,
        done: oneshot::Sender<Committed>,
    },
    Tail {
        file: Arc<File>,
        upload: Key,
        epoch: u64,
        tail: (u64, u64),
        done: oneshot::Sender<Committed>,
    },
}

/// Handle to the committer thread.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
}

/// Most requests folded into one group.
const MAX_GROUP: usize = 512;

impl Committer {
    /// Starts the committer thread.
    pub fn start(meta: Meta) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("upcache-commit".into())
            .spawn(move || run(meta, rx))
            .expect("spawn the committer thread");
        Self { tx }
    }

    /// Queues blocks whose bytes were written to `file`; the receiver resolves
    /// once they are durable.
    pub fn blocks(
        &self,
        file: Arc<File>,
        blocks: Vec<BlockCommit>,
    ) -> oneshot::Receiver<Committed> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Blocks { file, blocks, done });
        rx
    }

    /// As [`blocks`](Self::blocks), for a commit decided on another thread
    /// once the blocks' bytes are written: answers on `done`, and fails
    /// without syncing or recording anything if `written` says the bytes
    /// could not be written.
    pub fn blocks_written(
        &self,
        file: Arc<File>,
        blocks: Vec<BlockCommit>,
        written: std::io::Result<()>,
        done: oneshot::Sender<Committed>,
    ) {
        match written {
            Ok(()) => {
                let _ = self.tx.send(Request::Blocks { file, blocks, done });
            }
            Err(e) => {
                let _ = done.send(Err(NotCommitted::io("writing staged bytes", &e)));
            }
        }
    }

    /// Queues a partial block `(block, bytes)` of a sequential upload.
    pub fn tail(
        &self,
        file: Arc<File>,
        upload: Key,
        epoch: u64,
        tail: (u64, u64),
    ) -> oneshot::Receiver<Committed> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Tail {
            file,
            upload,
            epoch,
            tail,
            done,
        });
        rx
    }
}

fn run(meta: Meta, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        // A panic fails this group's requests (their senders are dropped,
        // which their receivers see), not every later one.
        if std::panic::catch_unwind(AssertUnwindSafe(|| commit_group(&meta, group))).is_err() {
            tracing::error!("a group commit panicked; its blocks were not acknowledged");
        }
    }
}

/// Staged bytes are not read again until verification is over (the input is
/// then read by an operation, or served, usually much later). Once synced
/// they are clean, so the kernel may drop them: keeping the page cache from
/// filling with upload data lets the next blocks reuse warm pages, which is
/// much cheaper than faulting in fresh ones, and leaves memory to the rest
/// of the machine.
fn drop_cached(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only gives advice.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn commit_group(meta: &Meta, group: Vec<Request>) {
    // 1. The bytes: fdatasync each distinct file once.
    let mut synced: Vec<(*const File, Committed)> = Vec::new();
    let mut file_ok = |file: &Arc<File>| -> Committed {
        let ptr = Arc::as_ptr(file);
        if let Some((_, r)) = synced.iter().find(|(p, _)| *p == ptr) {
            return r.clone();
        }
        let r = file
            .sync_data()
            .map_err(|e| NotCommitted::io("syncing staged bytes", &e));
        if r.is_ok() {
            drop_cached(file);
        }
        synced.push((ptr, r.clone()));
        r
    };
    let mut blocks = Vec::new();
    let mut waiting = Vec::new();
    let mut tails = Vec::new();
    for req in group {
        match req {
            Request::Blocks {
                file,
                blocks: b,
                done,
            } => match file_ok(&file) {
                Ok(()) => {
                    blocks.extend(b);
                    waiting.push(done);
                }
                Err(e) => drop(done.send(Err(e))),
            },
            Request::Tail {
                file,
                upload,
                epoch,
                tail,
                done,
            } => match file_ok(&file) {
                Ok(()) => tails.push((upload, epoch, tail, done)),
                Err(e) => drop(done.send(Err(e))),
            },
        }
    }
    // 2. The bits, chaining values and tails, then one flush for all of them.
    let committed = meta
        .commit_blocks(&blocks)
        .map(drop)
        .map_err(|e| NotCommitted::meta(&e));
    let tails: Vec<_> = tails
        .into_iter()
        .map(|(upload, epoch, tail, done)| {
            (
                meta.set_tail(&upload, epoch, Some(tail))
                    .map(drop)
                    .map_err(|e| NotCommitted::meta(&e)),
                done,
            )
        })
        .collect();
    let flushed = meta.flush().map_err(|e| NotCommitted::meta(&e));
    for done in waiting {
        let _ = done.send(committed.clone().and(flushed.clone()));
    }
    for (recorded, done) in tails {
        let _ = done.send(recorded.and(flushed.clone()));
    }
}
