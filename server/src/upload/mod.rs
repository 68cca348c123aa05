//! Receiving input bytes: sequential appends (`PATCH`, one-shot `PUT`) and
//! parallel blocks. No HTTP types here: bodies arrive as byte streams.
//!
//! Bytes go to the upload's sparse staging file from a blocking writer task
//! that also computes each block's BLAKE3 chaining value; finished blocks are
//! handed to the [`Committer`](crate::commit::Committer) and acknowledged
//! once durable. All of it runs in a spawned task, so a client that goes away
//! mid-body (hyper drops the request future) still gets every whole block it
//! sent — and, for sequential appends, the partial tail — saved.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use upcache_protocol::{InputHash, Key, Layout, Problem, ProblemType, State};

mod receive;

use receive::{receive, Ended, Span};

use crate::cache::Core;
use crate::error::{Error, Result};
use crate::store::meta::UploadRecord;

/// How long a new sequential request waits for an older one to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// In-memory coordination of the writers of each upload.
#[derive(Default)]
pub struct Slots {
    map: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// One upload's writers: at most one sequential writer, and a claim per
/// block being written so that no two requests write the same block at once.
pub struct Slot {
    sequential: tokio::sync::Mutex<()>,
    /// Bumped when a newer sequential request takes over.
    takeover: watch::Sender<u64>,
    /// Bumped when the upload ends (verified, failed or deleted): every writer stops.
    cancel: watch::Sender<u64>,
    busy: Mutex<HashSet<u64>>,
}

/// A claimed block; released on drop.
pub struct Claim {
    slot: Arc<Slot>,
    block: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.slot
            .busy
            .lock()
            .expect("slot lock")
            .remove(&self.block);
    }
}

impl Slot {
    fn claim(self: &Arc<Self>, block: u64) -> Option<Claim> {
        self.busy
            .lock()
            .expect("slot lock")
            .insert(block)
            .then(|| Claim {
                slot: self.clone(),
                block,
            })
    }
}

impl Slots {
    fn get(&self, key: &Key) -> Arc<Slot> {
        let mut map = self.map.lock().expect("slots lock");
        map.entry(*key)
            .or_insert_with(|| {
                Arc::new(Slot {
                    sequential: tokio::sync::Mutex::new(()),
                    takeover: watch::channel(0).0,
                    cancel: watch::channel(0).0,
                    busy: Mutex::default(),
                })
            })
            .clone()
    }

    /// Asks every writer of `key` to stop, and forgets the slot.
    pub fn stop(&self, key: &Key) {
        if let Some(slot) = self.map.lock().expect("slots lock").remove(key) {
            slot.cancel.send_modify(|g| *g += 1);
        }
    }

    /// Whether a request is writing to `key` right now.
    pub fn active(&self, key: &Key) -> bool {
        self.map
            .lock()
            .expect("slots lock")
            .get(key)
            .is_some_and(|s| Arc::strong_count(s) > 1)
    }
}

/// An upload body as the domain sees it: chunks of bytes, or the I/O error
/// that ended it (the HTTP layer adapts request bodies to this).
pub type BodyStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Bytes received contiguously from 0: the whole blocks at the start, plus a
/// durable partial tail of the next block.
pub fn offset(layout: &Layout, upload: &UploadRecord) -> u64 {
    let prefix = upload.prefix();
    let mut off = prefix * layout.block_size;
    if let Some((block, len)) = upload.tail {
        if block == prefix {
            off += len;
        }
    }
    off.min(layout.length)
}

/// Where a sequential append starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// At `Upload-Offset`, which must equal the current offset.
    Offset(u64),
    /// The whole input from byte 0 (one-shot `PUT`); received blocks are skipped.
    Whole,
}

/// What a request left behind.
#[derive(Debug)]
pub struct Progress {
    pub upload: UploadRecord,
    pub offset: u64,
    pub complete: bool,
}

/// `Upload-Offset` does not match the bytes received.
pub fn offset_mismatch(given: u64, current: u64) -> Error {
    Problem::new(
        ProblemType::OffsetMismatch,
        format!("Upload-Offset is {given}, but {current} bytes are received"),
    )
    .with("offset", current)
    .into()
}

fn not_uploading(state: State) -> Error {
    Error::problem(
        ProblemType::NotUploading,
        format!("the entry is {}, not accepting uploads", state.as_str()),
    )
}

impl Core {
    fn uploading(&self, key: &Key) -> Result<(Layout, UploadRecord)> {
        let entry = self
            .meta
            .entry(key)?
            .ok_or_else(|| Error::problem(ProblemType::NotFound, "no entry under this key"))?;
        if entry.state != State::Uploading {
            return Err(not_uploading(entry.state));
        }
        let upload = self
            .meta
            .upload(key)?
            .ok_or_else(|| not_uploading(entry.state))?;
        Ok((self.layout(&entry), upload))
    }

    async fn progress(self: &Arc<Self>, key: &Key, layout: &Layout) -> Result<Progress> {
        let upload = match self.meta.upload(key)? {
            Some(u) if u.received.len() == layout.blocks() => {
                self.finalize(*key).await?;
                None
            }
            other => other,
        };
        let Some(upload) = upload else {
            // Verified (by this request's last block or a concurrent one) — or refused.
            let entry = self.entry(key)?;
            if entry.state == State::Failed {
                return Err(crate::cache::failure(&entry).into());
            }
            let done = matches!(entry.state, State::Processing | State::Complete);
            let offset = if done { layout.length } else { 0 };
            return Ok(Progress {
                upload: UploadRecord::default(),
                offset,
                complete: done,
            });
        };
        Ok(Progress {
            offset: offset(layout, &upload),
            complete: false,
            upload,
        })
    }

    /// Appends a body sequentially (`PATCH`, one-shot `PUT`). A newer `PATCH`
    /// for the same upload makes an older one stop and let go (a client that
    /// reconnects should not wait for its dead connection to time out). A
    /// one-shot `PUT` instead queues behind the writer in progress: when that
    /// one delivers the input, the queued ones answer without reading a byte.
    pub async fn append(
        self: &Arc<Self>,
        key: Key,
        start: Start,
        body: BodyStream,
    ) -> Result<Progress> {
        let core = self.clone();
        tokio::spawn(async move { core.append_owned(key, start, body).await }).await?
    }

    async fn append_owned(
        self: Arc<Self>,
        key: Key,
        start: Start,
        body: BodyStream,
    ) -> Result<Progress> {
        let entry = self.entry(&key)?;
        let done = |core: &Self| match start {
            // A retried last PATCH whose answer was lost: the bytes are all here.
            Start::Offset(o) => core.finished(&key, o),
            Start::Whole => core.finished(&key, entry.length),
        };
        if !done(&self) {
            self.uploading(&key)?;
        }
        let slot = self.uploads.get(&key);
        let _sequential = match (slot.sequential.try_lock(), start) {
            (Ok(guard), _) => guard,
            (Err(_), Start::Whole) => slot.sequential.lock().await,
            (Err(_), Start::Offset(_)) => {
                slot.takeover.send_modify(|g| *g += 1);
                tokio::time::timeout(TAKEOVER_WAIT, slot.sequential.lock())
                    .await
                    .map_err(|_| {
                        Error::problem(
                            ProblemType::UploadBusy,
                            "another request is still appending to this upload",
                        )
                    })?
            }
        };
        let (layout, upload) = match self.uploading(&key) {
            Err(_) if done(&self) => return self.progress(&key, &self.layout(&entry)).await,
            other => other?,
        };
        let current = offset(&layout, &upload);
        let (from, span) = match start {
            Start::Offset(o) if o != current => return Err(offset_mismatch(o, current)),
            Start::Offset(o) => (
                o,
                Span::Sequential {
                    received: upload.received.clone(),
                },
            ),
            Start::Whole => (
                0,
                Span::Sequential {
                    received: upload.received.clone(),
                },
            ),
        };
        let (_, ended) = receive(
            self.clone(),
            key,
            layout,
            &upload,
            span,
            (from, layout.length),
            body,
        )
        .await?;
        let progress = self.progress(&key, &layout).await?;
        match ended {
            Ended::TooLong => Err(Problem::new(
                ProblemType::BodyLengthMismatch,
                format!("the body runs past the input's length of {} bytes; the bytes up to it were kept", layout.length),
            )
            .with("offset", progress.offset)
            .into()),
            Ended::Superseded => Err(Error::problem(ProblemType::UploadBusy, "a newer request took over this upload")),
            Ended::Interrupted(why) => Err(Error::problem(ProblemType::BodyLengthMismatch, format!("the body ended early: {why}"))),
            Ended::Complete => Ok(progress),
        }
    }

    /// Whether the entry's input is fully received and `offset` is its end.
    fn finished(&self, key: &Key, offset: u64) -> bool {
        matches!(self.meta.entry(key), Ok(Some(e))
            if matches!(e.state, State::Processing | State::Complete) && offset == e.length)
    }

    /// Stores block `n`. A block already received is acknowledged without
    /// reading the body — also after the upload is complete, so that a
    /// client retrying a block whose answer it lost gets a success.
    /// `verify` is the client's BLAKE3 of the block.
    pub async fn put_block(
        self: &Arc<Self>,
        key: Key,
        n: u64,
        verify: Option<InputHash>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Progress> {
        let core = self.clone();
        // Spawned: finishing the upload must not depend on the client staying.
        tokio::spawn(async move { core.put_block_owned(key, n, verify, length, body).await })
            .await?
    }

    async fn put_block_owned(
        self: Arc<Self>,
        key: Key,
        n: u64,
        verify: Option<InputHash>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Progress> {
        let entry = self.entry(&key)?;
        let layout = self.layout(&entry);
        if n >= layout.blocks() {
            return Err(Error::problem(
                ProblemType::InvalidBlock,
                format!(
                    "block {n} does not exist: the input has {} blocks (0 to {})",
                    layout.blocks(),
                    layout.blocks().saturating_sub(1)
                ),
            ));
        }
        let range = layout.range(n);
        let want = range.end - range.start;
        if length.is_some_and(|l| l != want) {
            return Err(Error::problem(
                ProblemType::BlockLengthMismatch,
                format!(
                    "block {n} has {want} bytes, the request announces {}",
                    length.unwrap_or(0)
                ),
            ));
        }
        if self.finished(&key, entry.length) {
            return self.progress(&key, &layout).await;
        }
        let (_, upload) = self.uploading(&key)?;
        if upload.received.contains(n as u32) {
            return self.progress(&key, &layout).await;
        }
        let span = Span::Block { verify };
        let (pos, ended) = receive(
            self.clone(),
            key,
            layout,
            &upload,
            span,
            (range.start, range.end),
            body,
        )
        .await?;
        if pos != range.end || !matches!(ended, Ended::Complete) {
            return Err(Error::problem(
                ProblemType::BlockLengthMismatch,
                format!(
                    "block {n} has {want} bytes; the body {}",
                    if matches!(ended, Ended::TooLong) {
                        "was longer"
                    } else {
                        "was shorter"
                    }
                ),
            ));
        }
        self.progress(&key, &layout).await
    }
}
