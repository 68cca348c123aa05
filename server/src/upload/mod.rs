//! Receiving input bytes: sequential appends (`PATCH`, one-shot `PUT`) and
//! parallel blocks. No HTTP types here: bodies arrive as byte streams.
//!
//! Bytes go to the upload's sparse staging file from a blocking writer task
//! that also computes each block's BLAKE3 chaining value; finished blocks are
//! handed to the [`Committer`](crate::commit::Committer) and acknowledged
//! once durable. All of it runs in a spawned task, so a client that goes away
//! mid-body (hyper drops the request future) still gets every whole block it
//! sent — and, for sequential appends, the partial tail — saved.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use upcache_protocol::headers::BlockHash;
use upcache_protocol::{Key, Layout, Problem, ProblemType, State};

mod receive;

use receive::{receive, Ended, Span};

use crate::cache::Core;
use crate::error::{Error, Result};
use crate::store::meta::{EntryRecord, FileRecord, FileState, UploadRecord};

mod check;
mod direct;
mod slots;

pub use check::{BodyCheck, ChecksumAlgorithm};
pub use slots::Slots;
use slots::{busy, Claim, Slot, TAKEOVER_WAIT};

/// How long an offset query waits for a sequential request to let go.
const SETTLE_WAIT: Duration = Duration::from_secs(3);
/// A sequential request that received nothing for this long is not about
/// to save anything more: an offset query stops waiting for it.
const SETTLE_IDLE: Duration = Duration::from_millis(250);

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

fn too_slow(config: &crate::config::Config) -> Error {
    Error::problem(
        ProblemType::BodyTooSlow,
        format!(
            "the body arrived more slowly than {} per second over {} s; the request was ended",
            config.body_min_rate.as_u64(),
            config.body_rate_window
        ),
    )
}

fn not_uploading(what: &str) -> Error {
    Error::problem(
        ProblemType::NotUploading,
        format!("the {what}, not accepting uploads"),
    )
}

/// What an upload's bytes are for. The upload service is the same for
/// both; the owner decides the layout, whether bytes are taken, and what
/// happens once the last byte is in.
pub enum Owner {
    /// A `/v1` entry: the upload id is its key.
    Entry(EntryRecord),
    /// A file upload (the tus front end): a random id, no key until hashed.
    File(FileRecord),
}

impl Owner {
    /// The block layout bytes are written with.
    pub fn layout(&self, core: &Core) -> Layout {
        match self {
            Owner::Entry(e) => core.layout(e),
            Owner::File(f) => core.file_layout(f),
        }
    }

    fn accepting(&self) -> Result<()> {
        match self {
            Owner::Entry(e) if e.state == State::Uploading => Ok(()),
            Owner::Entry(e) => Err(not_uploading(&format!("entry is {}", e.state.as_str()))),
            Owner::File(f) if f.state == FileState::Receiving && f.input.is_none() => Ok(()),
            Owner::File(_) => Err(not_uploading("upload is complete")),
        }
    }

    /// Whether every byte is in and `offset` is the end.
    fn finished(&self, offset: u64) -> bool {
        match self {
            Owner::Entry(e) => {
                matches!(e.state, State::Processing | State::Complete) && offset == e.length
            }
            Owner::File(f) => f.input.is_some() && f.length == Some(offset),
        }
    }
}

impl Core {
    /// Waits, briefly, until no sequential request is appending to `id`. A
    /// client whose connection broke asks for the offset at once, often
    /// before the server has seen the break and saved the request's tail:
    /// the answer must include that tail, or the client's next `PATCH`
    /// starts from an offset that is already stale.
    ///
    /// A request that has received nothing for a moment is not waited for:
    /// its connection is dead or stalled, and whatever it has not made
    /// durable is dropped when the client's next request takes over.
    pub async fn settle(&self, id: &Key) {
        let Some(slot) = self.uploads.existing(id) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let idle = slot.idle();
            let now = tokio::time::Instant::now();
            if idle >= SETTLE_IDLE || now >= deadline {
                return;
            }
            let wait = (SETTLE_IDLE - idle).min(deadline - now);
            if tokio::time::timeout(wait, slot.sequential.lock())
                .await
                .is_ok()
            {
                return;
            }
        }
    }

    /// The owner of upload `id`.
    pub fn owner(&self, id: &Key) -> Result<Owner> {
        if let Some(entry) = self.meta.entry(id)? {
            return Ok(Owner::Entry(entry));
        }
        match self.meta.file(id)? {
            Some(f) => Ok(Owner::File(f)),
            None => Err(Error::problem(
                ProblemType::NotFound,
                "no entry or upload under this id",
            )),
        }
    }

    fn uploading(&self, key: &Key) -> Result<(Layout, UploadRecord)> {
        let owner = self.owner(key)?;
        owner.accepting()?;
        let upload = self
            .meta
            .upload(key)?
            .ok_or_else(|| not_uploading("upload is over"))?;
        Ok((owner.layout(self), upload))
    }

    async fn progress(self: &Arc<Self>, key: &Key, layout: &Layout) -> Result<Progress> {
        let upload = match self.meta.upload(key)? {
            Some(u)
                if u.received.len() == layout.blocks() || offset(layout, &u) == layout.length =>
            {
                self.finalize(*key).await?;
                self.meta.upload(key)?
            }
            other => other,
        };
        let Some(upload) = upload else {
            // Verified (by this request's last block or a concurrent one) — or refused.
            let (done, length) = match self.owner(key)? {
                Owner::Entry(entry) => {
                    if entry.state == State::Failed {
                        return Err(crate::cache::failure(&entry).into());
                    }
                    let done = matches!(entry.state, State::Processing | State::Complete);
                    (done, entry.length)
                }
                Owner::File(f) => (f.input.is_some(), f.length.unwrap_or(0)),
            };
            return Ok(Progress {
                upload: UploadRecord::default(),
                offset: if done { length } else { 0 },
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
    ///
    /// With a `check`, nothing of the body is committed unless the whole
    /// body arrived and matches it (tus `Upload-Checksum`).
    pub async fn append(
        self: &Arc<Self>,
        key: Key,
        start: Start,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<Progress> {
        let core = self.clone();
        tokio::spawn(async move { core.append_owned(key, start, check, body).await }).await?
    }

    async fn append_owned(
        self: Arc<Self>,
        key: Key,
        start: Start,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<Progress> {
        let length = self.owner(&key)?.layout(&self).length;
        let done = |core: &Self| match start {
            // A retried last PATCH whose answer was lost: the bytes are all here.
            Start::Offset(o) => core.finished(&key, o),
            Start::Whole => core.finished(&key, length),
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
            Err(_) if done(&self) => {
                let layout = self.owner(&key)?.layout(&self);
                return self.progress(&key, &layout).await;
            }
            other => other?,
        };
        let current = offset(&layout, &upload);
        let (from, received) = match start {
            Start::Offset(o) if o != current => return Err(offset_mismatch(o, current)),
            Start::Offset(o) => (o, upload.received.clone()),
            Start::Whole => (0, upload.received.clone()),
        };
        let checked = check.is_some();
        let span = Span::Sequential { received, check };
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
                if checked {
                    ProblemType::UploadLengthExceeded
                } else {
                    ProblemType::BodyLengthMismatch
                },
                format!(
                    "the body runs past the input's length of {} bytes; {}",
                    layout.length,
                    if checked {
                        "nothing of it was kept"
                    } else {
                        "the bytes up to it were kept"
                    }
                ),
            )
            .with("offset", progress.offset)
            .into()),
            Ended::Superseded => Err(Error::problem(
                ProblemType::UploadBusy,
                "a newer request took over this upload",
            )),
            Ended::TooSlow => Err(too_slow(&self.config)),
            Ended::Interrupted(why) => Err(Error::problem(
                ProblemType::BodyLengthMismatch,
                format!("the body ended early: {why}"),
            )),
            Ended::Complete => Ok(progress),
        }
    }

    /// Whether the upload's bytes are all in and `offset` is their end.
    fn finished(&self, key: &Key, offset: u64) -> bool {
        self.owner(key).is_ok_and(|o| o.finished(offset))
    }

    /// Stores block `n`. A block already received is acknowledged without
    /// reading the body — also after the upload is complete, so that a
    /// client retrying a block whose answer it lost gets a success.
    /// `verify` is the client's BLAKE3 of the block (`Upload-Block-Hash`).
    pub async fn put_block(
        self: &Arc<Self>,
        key: Key,
        n: u64,
        verify: Option<BlockHash>,
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
        verify: Option<BlockHash>,
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
        let claim = self.uploads.get(&key).take(n).await?;
        // The request that let go may have finished the block just before.
        let (_, upload) = self.uploading(&key)?;
        if upload.received.contains(n as u32) {
            return self.progress(&key, &layout).await;
        }
        let span = Span::Block { verify, claim };
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
        match ended {
            Ended::Superseded => {
                return Err(busy(format!(
                    "a newer request for block {n} took over; this one's bytes were dropped"
                )))
            }
            Ended::TooSlow => return Err(too_slow(&self.config)),
            _ => {}
        }
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
