//! The upload service: receiving input bytes by sequential appends
//! (`PATCH`, one-shot `PUT`) and parallel blocks. No HTTP types here: bodies
//! arrive as byte streams.
//!
//! It is a leaf: it knows uploads by their [`UploadId`] and nothing of what
//! they are for. Its owners — `/v1` entries and tus files — open and end an
//! upload's record together with their own (one transaction in the
//! metadata store), give the layout with each call, and decide for
//! themselves what a complete upload becomes: [`Progress::all_in`] says
//! that every byte is in, and [`Uploads::complete`] hands over the
//! [`Completion`] (chaining values, root hash, digest) as a value.
//!
//! Bytes go to the upload's sparse staging file from a blocking writer task
//! that also computes each block's BLAKE3 chaining value; finished blocks are
//! handed to the [`Committer`] and acknowledged
//! once durable. All of it runs in a spawned task, so a client that goes away
//! mid-body (hyper drops the request future) still gets every whole block it
//! sent — and, for sequential appends, the partial tail — saved.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use upcache_protocol::headers::BlockHash;
use upcache_protocol::tree::{self, BlockHasher};
use upcache_protocol::{Digest, InputHash, Key, Layout, Problem, ProblemType};

mod receive;

use receive::{receive, Ended, Span};

use crate::commit::Committer;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::meta::{Meta, UploadRecord};
use crate::store::staging::Staging;

mod check;
mod direct;
mod on_demand;
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
    /// The upload record as it then was; `None` once the upload is over
    /// (its owner ended it: verified, refused or deleted).
    pub upload: Option<UploadRecord>,
    /// Bytes received contiguously from 0.
    pub offset: u64,
    /// Every byte is in: the owner is to complete the upload.
    pub all_in: bool,
}

/// The id of an upload: a `/v1` entry's key, or a tus file's random id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(pub Key);

/// What a complete upload's bytes are, as a value: the chaining value of
/// every block, the root hash they merge to, and the wire digest.
#[derive(Debug, Clone)]
pub struct Completion {
    pub cvs: Vec<[u8; 32]>,
    pub root: InputHash,
    pub digest: Digest,
}

/// The upload service. Owns the upload records (through the metadata
/// store), the staging files, the group committer, and the coordination of
/// the writers of each upload.
pub struct Uploads {
    meta: Meta,
    staging: Staging,
    committer: Committer,
    slots: Slots,
    /// A body that sends nothing for this long is ended.
    idle: Duration,
    /// A body must send at least `min_bytes` over every `rate_window`.
    rate_window: Duration,
    min_rate: u64,
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

/// The problem of a body slower than the minimum rate.
fn too_slow(min_rate: u64, window: Duration) -> Error {
    Error::problem(
        ProblemType::BodyTooSlow,
        format!(
            "the body arrived more slowly than {min_rate} per second over {} s; the request was ended",
            window.as_secs()
        ),
    )
}

/// The upload is not taking bytes (any more).
pub fn not_uploading(what: &str) -> Error {
    Error::problem(
        ProblemType::NotUploading,
        format!("the {what}, not accepting uploads"),
    )
}

impl Uploads {
    /// The upload service over the `uploads` and `cvs` trees of `meta` and
    /// the files of `staging`; starts the group committer.
    pub fn new(meta: Meta, staging: Staging, config: &Config) -> Self {
        let rate_window = Duration::from_secs(config.body_rate_window.max(1));
        Self {
            committer: Committer::start(meta.clone()),
            meta,
            staging,
            slots: Slots::default(),
            idle: Duration::from_secs(config.body_idle_timeout),
            rate_window,
            min_rate: config.body_min_rate.as_u64(),
        }
    }

    /// The record of upload `id`, if it is open.
    pub fn record(&self, id: UploadId) -> Result<Option<UploadRecord>> {
        Ok(self.meta.upload(&id.0)?)
    }

    /// Whether a request is writing to upload `id` right now.
    pub fn active(&self, id: UploadId) -> bool {
        self.slots.active(&id.0)
    }

    /// Makes every request writing to upload `id` stop (its owner ended it).
    pub fn stop(&self, id: UploadId) {
        self.slots.stop(&id.0);
    }

    /// Drops upload `id`'s staged bytes, after its owner ended it. Blocking.
    pub fn discard(&self, id: UploadId) -> Result<()> {
        self.staging.remove(&id.0)?;
        self.meta.clear_cvs(&id.0)?;
        Ok(())
    }

    /// Waits, briefly, until no sequential request is appending to `id`. A
    /// client whose connection broke asks for the offset at once, often
    /// before the server has seen the break and saved the request's tail:
    /// the answer must include that tail, or the client's next `PATCH`
    /// starts from an offset that is already stale.
    ///
    /// A request that has received nothing for a moment is not waited for:
    /// its connection is dead or stalled, and whatever it has not made
    /// durable is dropped when the client's next request takes over.
    pub async fn settle(&self, id: UploadId) {
        let Some(slot) = self.slots.existing(&id.0) else {
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

    fn uploading(&self, id: UploadId) -> Result<UploadRecord> {
        self.meta
            .upload(&id.0)?
            .ok_or_else(|| not_uploading("upload is over"))
    }

    /// Where upload `id` stands.
    pub fn progress(&self, id: UploadId, layout: &Layout) -> Result<Progress> {
        Ok(match self.meta.upload(&id.0)? {
            Some(u) => Progress {
                offset: offset(layout, &u),
                all_in: u.received.len() == layout.blocks() || offset(layout, &u) == layout.length,
                upload: Some(u),
            },
            None => Progress {
                upload: None,
                offset: 0,
                all_in: false,
            },
        })
    }

    /// Appends a body sequentially (`PATCH`, one-shot `PUT`). A newer `PATCH`
    /// for the same upload makes an older one stop and let go (a client that
    /// reconnects should not wait for its dead connection to time out). A
    /// one-shot `PUT` instead queues behind the writer in progress: when that
    /// one delivers the input, the queued ones find the upload over.
    ///
    /// With a `check`, nothing of the body is committed unless the whole
    /// body arrived and matches it (tus `Upload-Checksum`).
    ///
    /// Runs in a task of its own, so that a client that goes away mid-body
    /// still gets what it sent saved. An upload that is over is a
    /// `not-uploading` error: the owner knows whether that means done.
    pub async fn append(
        self: &Arc<Self>,
        id: UploadId,
        layout: Layout,
        start: Start,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<Progress> {
        let this = self.clone();
        tokio::spawn(async move { this.append_owned(id, layout, start, check, body).await }).await?
    }

    async fn append_owned(
        self: Arc<Self>,
        id: UploadId,
        layout: Layout,
        start: Start,
        check: Option<BodyCheck>,
        body: BodyStream,
    ) -> Result<Progress> {
        self.uploading(id)?;
        let slot = self.slots.get(&id.0);
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
        let upload = self.uploading(id)?;
        let current = offset(&layout, &upload);
        if matches!(start, Start::Whole) && current == layout.length {
            // The writer before this one delivered the input; its owner is
            // completing it. Nothing of this body is needed.
            return self.progress(id, &layout);
        }
        let (from, received) = match start {
            Start::Offset(o) if o != current => return Err(offset_mismatch(o, current)),
            Start::Offset(o) => (o, upload.received.clone()),
            Start::Whole => (0, upload.received.clone()),
        };
        let checked = check.is_some();
        let span = Span::Sequential { received, check };
        let (_, ended) = receive(
            self.clone(),
            id.0,
            layout,
            &upload,
            span,
            (from, layout.length),
            body,
        )
        .await?;
        let progress = self.progress(id, &layout)?;
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
            Ended::TooSlow => Err(too_slow(self.min_rate, self.rate_window)),
            Ended::Interrupted(why) => Err(Error::problem(
                ProblemType::BodyLengthMismatch,
                format!("the body ended early: {why}"),
            )),
            Ended::Complete => Ok(progress),
        }
    }

    /// Stores block `n`. A block already received is acknowledged without
    /// reading the body. `verify` is the client's BLAKE3 of the block
    /// (`Upload-Block-Hash`). Runs in a task of its own, like
    /// [`Uploads::append`].
    pub async fn put_block(
        self: &Arc<Self>,
        id: UploadId,
        layout: Layout,
        n: u64,
        verify: Option<BlockHash>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Progress> {
        let this = self.clone();
        tokio::spawn(async move {
            this.put_block_owned(id, layout, n, verify, length, body)
                .await
        })
        .await?
    }

    async fn put_block_owned(
        self: Arc<Self>,
        id: UploadId,
        layout: Layout,
        n: u64,
        verify: Option<BlockHash>,
        length: Option<u64>,
        body: BodyStream,
    ) -> Result<Progress> {
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
        let upload = self.uploading(id)?;
        if upload.received.contains(n as u32) {
            return self.progress(id, &layout);
        }
        let claim = self.slots.get(&id.0).take(n).await?;
        // The request that let go may have finished the block just before.
        let upload = self.uploading(id)?;
        if upload.received.contains(n as u32) {
            return self.progress(id, &layout);
        }
        let span = Span::Block { verify, claim };
        let (pos, ended) = receive(
            self.clone(),
            id.0,
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
            Ended::TooSlow => return Err(too_slow(self.min_rate, self.rate_window)),
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
        self.progress(id, &layout)
    }

    /// The completion of an upload whose every byte is in: the chaining
    /// value of every block, their root and digest. Blocks committed whole
    /// have theirs stored; the others — the tail of an upload whose length
    /// came late, every block of an assembled upload — are hashed from
    /// staging (on all cores) and stored. A one-block input's hash is its
    /// block's root hash, so that block is hashed again in any case: it was
    /// hashed as a non-root block if its length was not known yet.
    /// Blocking.
    pub fn complete(&self, id: UploadId, layout: &Layout) -> Result<Completion> {
        let count = layout.blocks();
        let mut cvs = self.meta.cv_list(&id.0, count)?;
        if count == 1 {
            cvs[0] = None;
        }
        let missing: Vec<u64> = (0..count).filter(|n| cvs[*n as usize].is_none()).collect();
        if !missing.is_empty() {
            let staging = self.staging.open_file(&id.0, layout.length)?;
            let hashed = hash_blocks(&staging, layout, &missing)?;
            self.meta.put_cvs(&id.0, &hashed)?;
            for (n, cv) in hashed {
                cvs[n as usize] = Some(cv);
            }
        }
        let cvs: Vec<[u8; 32]> = cvs
            .into_iter()
            .map(|cv| cv.expect("every block hashed"))
            .collect();
        let mut digest = Digest::new();
        for (n, cv) in cvs.iter().enumerate() {
            digest.add(n as u64, cv);
        }
        Ok(Completion {
            root: InputHash::from(tree::root(layout, &cvs)),
            digest,
            cvs,
        })
    }
}

/// Hashes blocks `blocks` of `staging` into their chaining values, on all
/// cores. Blocking.
fn hash_blocks(
    staging: &std::fs::File,
    layout: &Layout,
    blocks: &[u64],
) -> std::io::Result<Vec<(u64, [u8; 32])>> {
    use std::os::unix::fs::FileExt;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(blocks.len().max(1));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = blocks.iter().copied().skip(t).step_by(threads).collect();
                s.spawn(move || -> std::io::Result<Vec<(u64, [u8; 32])>> {
                    let mut buf = vec![0u8; layout.block_size.min(1 << 20) as usize];
                    mine.into_iter()
                        .map(|n| {
                            let range = layout.range(n);
                            let mut hasher = BlockHasher::new(layout, n);
                            let mut pos = range.start;
                            while pos < range.end {
                                let take = ((range.end - pos) as usize).min(buf.len());
                                staging.read_exact_at(&mut buf[..take], pos)?;
                                hasher.update(&buf[..take]);
                                pos += take as u64;
                            }
                            Ok((n, hasher.finish()))
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hashing thread"))
            .collect::<std::io::Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })
}
