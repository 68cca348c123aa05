//! The writer task behind every upload request: streams a body into the
//! staging file at its place, hashes each block on the way, hands finished
//! blocks to the committer and waits until they are durable.
//!
//! Three stages overlap on a fast body: the request's task receives
//! frames, a blocking thread hashes them into aligned buffers
//! ([`Pipe`]), and the direct writer's queue writes full buffers out.
//! Neither blocking stage holds a thread while it has nothing to do, so a
//! body that trickles in costs a task and its buffers, not threads: many
//! slow clients cannot use up the runtime's blocking pool, which every
//! other upload and disk read needs.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use futures_util::StreamExt;
use roaring::RoaringBitmap;
use tokio::sync::{mpsc, watch};
use upcache_protocol::headers::BlockHash;
use upcache_protocol::tree::BlockHasher;
use upcache_protocol::{InputHash, Key, Layout, Problem, ProblemType};

use super::check::Running;
use super::direct::DirectWriter;
use super::on_demand::OnDemand;
use super::{BodyCheck, BodyStream, Claim, Slot, Uploads};
use crate::commit::Committed;
use crate::error::{Error, Result};
use crate::metrics;
use crate::store::meta::{BlockCommit, UploadRecord};

/// What the writer task is asked to do.
pub(super) enum Span {
    /// From an offset on; blocks in `received` are skipped. With a `check`,
    /// nothing is committed unless the whole body matches it.
    Sequential {
        received: RoaringBitmap,
        check: Option<BodyCheck>,
    },
    /// One block, checked against the client's BLAKE3 of it if given,
    /// claimed by the request before it started.
    Block {
        verify: Option<BlockHash>,
        claim: Claim,
    },
}

struct Writer {
    uploads: Arc<Uploads>,
    slot: Arc<Slot>,
    key: Key,
    epoch: u64,
    file: Arc<File>,
    /// The staged bytes' writes: direct where the filesystem allows them.
    direct: DirectWriter,
    layout: Layout,
    span: Span,
    pos: u64,
    end: u64,
    block: Option<(u64, Option<BlockHasher>)>,
    verify: Option<blake3::Hasher>,
    /// The body's checksum, and the blocks held back until it is known.
    check: Option<(Running, Vec<BlockCommit>)>,
    claims: Vec<Claim>,
    receipts: Vec<tokio::sync::oneshot::Receiver<Committed>>,
}

impl Writer {
    fn begin_block(&mut self, n: u64) -> Result<()> {
        let skip =
            matches!(&self.span, Span::Sequential { received, .. } if received.contains(n as u32));
        if skip {
            self.block = Some((n, None));
            return Ok(());
        }
        // A block request claimed its block before it started.
        if matches!(self.span, Span::Sequential { .. }) {
            let claim = self.slot.claim(n).ok_or_else(|| {
                Error::problem(
                    ProblemType::UploadBusy,
                    format!("block {n} is being written by another request"),
                )
            })?;
            self.claims.push(claim);
        }
        let mut hasher = BlockHasher::new(&self.layout, n);
        let start = self.layout.range(n).start;
        if self.pos > start {
            // Resuming after a durable partial tail: re-read it (at most one block).
            let mut tail = vec![0u8; (self.pos - start) as usize];
            self.file.read_exact_at(&mut tail, start)?;
            hasher.update(&tail);
        }
        self.block = Some((n, Some(hasher)));
        Ok(())
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        if let Some((running, _)) = self.check.as_mut() {
            running.update(bytes);
        }
        while !bytes.is_empty() {
            let n = self.layout.block_of(self.pos);
            if self.block.as_ref().map(|b| b.0) != Some(n) {
                self.begin_block(n)?;
            }
            let block_end = self.layout.range(n).end;
            let take = ((block_end - self.pos) as usize).min(bytes.len());
            let (part, rest) = bytes.split_at(take);
            if let Some((_, Some(hasher))) = self.block.as_mut() {
                hasher.update(part);
                if let Some(v) = self.verify.as_mut() {
                    v.update(part);
                }
                self.direct.write(part, self.pos)?;
                metrics::BYTES_STORED.add(take as u64);
            }
            self.pos += take as u64;
            bytes = rest;
            // A single block is committed only once its body ended cleanly (`finish`).
            if self.pos == block_end && matches!(self.span, Span::Sequential { .. }) {
                self.end_block()?;
            }
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        let Some((n, Some(hasher))) = self.block.take() else {
            return Ok(());
        };
        let cv = hasher.finish();
        let mismatch = match (&self.span, &self.verify) {
            (
                Span::Block {
                    verify: Some(BlockHash::Alone(expected)),
                    ..
                },
                Some(v),
            ) => {
                let got = InputHash::from(v.finalize());
                (got != *expected).then(|| format!("hashes to {got}, not {expected}"))
            }
            (
                Span::Block {
                    verify: Some(BlockHash::Chaining(expected)),
                    ..
                },
                _,
            ) => (cv != *expected).then(|| {
                format!(
                    "has the chaining value {}, not {}",
                    hex::encode(cv),
                    hex::encode(expected)
                )
            }),
            _ => None,
        };
        if let Some(why) = mismatch {
            return Err(Problem::new(
                ProblemType::BlockHashMismatch,
                format!("block {n} {why}; it stays missing"),
            )
            .with("block", n)
            .into());
        }
        let commit = BlockCommit {
            upload: self.key,
            epoch: self.epoch,
            block: n,
            cv,
        };
        metrics::BLOCKS_STORED.inc();
        match self.check.as_mut() {
            Some((_, held)) => held.push(commit),
            None => self.commit_when_written(vec![commit]),
        }
        Ok(())
    }

    /// Hands `blocks` to the committer once their bytes are written: the
    /// commit is queued behind the writes, and the request goes on hashing
    /// the next block instead of waiting for the device.
    fn commit_when_written(&mut self, blocks: Vec<BlockCommit>) {
        let (done, receipt) = tokio::sync::oneshot::channel();
        let (committer, file) = (self.uploads.committer.clone(), self.file.clone());
        self.direct.then(Box::new(move |written| {
            committer.blocks_written(file, blocks, written, done)
        }));
        self.receipts.push(receipt);
    }

    /// After the last byte. A sequential writer saves its partial block
    /// whether or not the body ended cleanly — unless a newer request took
    /// over, which resumes from what is durable; a block writer commits only
    /// a whole block whose body ended cleanly. Called once every write is
    /// done ([`DirectWriter::flush`]).
    fn finish(&mut self, clean: bool, superseded: bool) -> Result<()> {
        if let Some((running, held)) = self.check.take() {
            // All or nothing: a cut or mismatching body leaves no trace.
            if !clean {
                return Ok(());
            }
            let Span::Sequential {
                check: Some(check), ..
            } = &self.span
            else {
                unreachable!("only sequential spans are checked");
            };
            let got = running.finish();
            if got != check.expected {
                return Err(Problem::new(
                    ProblemType::ChecksumMismatch,
                    format!(
                        "the body's {:?} checksum is {}, not {}; nothing of it was kept",
                        check.algorithm,
                        hex::encode(&got),
                        hex::encode(&check.expected)
                    ),
                )
                .into());
            }
            if !held.is_empty() {
                self.receipts
                    .push(self.uploads.committer.blocks(self.file.clone(), held));
            }
        }
        match (&self.span, &self.block) {
            (Span::Sequential { .. }, Some((n, Some(_)))) if !superseded => {
                let len = self.pos - self.layout.range(*n).start;
                if len > 0 {
                    self.receipts.push(self.uploads.committer.tail(
                        self.file.clone(),
                        self.key,
                        self.epoch,
                        (*n, len),
                    ));
                }
                Ok(())
            }
            (Span::Block { .. }, Some(_)) if clean && self.pos == self.end => self.end_block(),
            _ => Ok(()),
        }
    }
}

/// Why the body stopped.
pub(super) enum Ended {
    Complete,
    TooLong,
    Interrupted(String),
    /// A newer request took over, or the upload ended.
    Superseded,
    /// The body arrived more slowly than `body_min_rate`.
    TooSlow,
}

/// Streams `body` into the staging file over `[start, end)` and waits until
/// what was written is durable. Runs in its own task: see the module doc.
pub(super) async fn receive(
    uploads: Arc<Uploads>,
    key: Key,
    layout: Layout,
    upload: &UploadRecord,
    span: Span,
    range: (u64, u64),
    mut body: BodyStream,
) -> Result<(u64, Ended)> {
    let (start, end) = range;
    let slot = uploads.slots.get(&key);
    let mut takeover = slot.takeover.subscribe();
    let mut cancel = slot.cancel.subscribe();
    let sequential = matches!(span, Span::Sequential { .. });
    let mut block_stop = match &span {
        Span::Block { claim, .. } => Some(claim.stop.clone()),
        Span::Sequential { .. } => None,
    };
    if sequential {
        slot.touch();
    }
    let staging = uploads.staging.clone();
    let (file, direct) = tokio::task::spawn_blocking(move || {
        let file = staging.open_file(&key, layout.length)?;
        // Without O_DIRECT (tmpfs, some network filesystems), the same
        // writes go through the page cache.
        let direct = match staging.open_direct(&key) {
            Some(direct) => direct,
            None => file.try_clone()?,
        };
        std::io::Result::Ok((file, direct))
    })
    .await??;
    let file = Arc::new(file);
    let direct = DirectWriter::new(direct, file.clone(), tokio::runtime::Handle::current());
    // Only a hash of the block alone needs a second hasher; a chaining
    // value is checked against the one computed anyway.
    let verify = matches!(
        span,
        Span::Block {
            verify: Some(BlockHash::Alone(_)),
            ..
        }
    )
    .then(blake3::Hasher::new);
    let check = match &span {
        Span::Sequential { check: Some(c), .. } => Some((Running::new(c.algorithm), Vec::new())),
        _ => None,
    };
    let writer = Writer {
        uploads: uploads.clone(),
        slot: slot.clone(),
        key,
        epoch: upload.epoch,
        file,
        direct,
        layout,
        span,
        pos: start,
        end,
        block: None,
        verify,
        check,
        claims: Vec::new(),
        receipts: Vec::new(),
    };
    // A few frames in flight keep the writer busy without buffering much per request.
    let (tx, frames) = mpsc::channel::<Frame>(4);
    let pipe = Arc::new(Pipe {
        sink: Mutex::new(Sink {
            writer,
            frames,
            result: Ok(()),
        }),
        on_demand: OnDemand::default(),
        failed: AtomicBool::new(false),
    });
    let idle = uploads.idle;
    // A body must keep up a minimum rate over each window, or it could hold
    // its block or its upload with a byte every second or two.
    let rate_window = uploads.rate_window;
    let min_bytes = uploads.min_rate * rate_window.as_secs();
    let mut window =
        tokio::time::interval_at(tokio::time::Instant::now() + rate_window, rate_window);
    let mut window_bytes = 0u64;
    let mut remaining = end - start;
    // When the body stalls or comes too slowly to fill a buffer soon, its
    // buffered bytes are written out and the buffers let go.
    let mut pace = tokio::time::interval_at(tokio::time::Instant::now() + PARK, PARK);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pace_bytes = 0usize;
    let mut parked = true;
    let ended = loop {
        tokio::select! {
            biased;
            _ = cancel.changed() => break Ended::Superseded,
            _ = takeover.changed(), if sequential => break Ended::Superseded,
            _ = wait_stop(&mut block_stop) => break Ended::Superseded,
            _ = window.tick(), if min_bytes > 0 => {
                if window_bytes < min_bytes {
                    break Ended::TooSlow;
                }
                window_bytes = 0;
            }
            _ = pace.tick() => {
                if !parked && pace_bytes < SLOW {
                    parked = true;
                    if tx.send(Frame::Park).await.is_err() {
                        break Ended::Complete; // cannot happen: the sink holds the receiver
                    }
                    pipe.run();
                }
                pace_bytes = 0;
            }
            frame = tokio::time::timeout(idle, body.next()) => match frame {
                Err(_) => break Ended::Interrupted("the body stalled".into()),
                Ok(None) => break Ended::Complete,
                Ok(Some(Err(e))) => break Ended::Interrupted(e.to_string()),
                Ok(Some(Ok(mut bytes))) => {
                    if sequential {
                        slot.touch();
                    }
                    window_bytes += bytes.len() as u64;
                    let too_long = bytes.len() as u64 > remaining;
                    if too_long {
                        bytes.truncate(remaining as usize);
                    }
                    remaining -= bytes.len() as u64;
                    if !bytes.is_empty() {
                        let bytes_len = bytes.len();
                        if tx.send(Frame::Bytes(bytes)).await.is_err() {
                            break Ended::Complete; // cannot happen: the sink holds the receiver
                        }
                        pipe.run();
                        pace_bytes += bytes_len;
                        parked = false;
                    }
                    if pipe.failed.load(Ordering::Acquire) {
                        break Ended::Complete; // the writer failed; its error is reported below
                    }
                    if too_long {
                        break Ended::TooLong;
                    }
                }
            }
        }
    };
    drop(tx);
    let clean = matches!(ended, Ended::Complete);
    let superseded = matches!(ended, Ended::Superseded);
    // The last frames, every write done, then the commits queued: on a
    // blocking thread, after any still running for this request.
    let (pos, receipts, claims, written) = tokio::task::spawn_blocking(move || {
        let mut sink = pipe.lock_sink();
        sink.drain();
        let sink = &mut *sink;
        let flushed = sink.writer.direct.flush();
        let written = match (std::mem::replace(&mut sink.result, Ok(())), flushed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(())) => sink.writer.finish(clean, superseded),
        };
        let w = &mut sink.writer;
        (
            w.pos,
            std::mem::take(&mut w.receipts),
            std::mem::take(&mut w.claims),
            written,
        )
    })
    .await?;
    for receipt in receipts {
        let committed = receipt
            .await
            .map_err(|_| Error::Internal("the committer stopped".into()))?;
        committed?;
    }
    drop(claims);
    written?;
    Ok((pos, ended))
}

/// A request's writer and the frames on their way to it. Frames are
/// hashed and written by a blocking thread only while there are some
/// ([`Pipe::run`]): a request waiting for its body holds no thread, however
/// slowly the body comes, while a fast one is hashed on one thread as the
/// next bytes are received on another.
struct Pipe {
    sink: Mutex<Sink>,
    on_demand: OnDemand,
    /// The writer failed: the body need not be read further.
    failed: AtomicBool,
}

/// What the request's task hands the sink.
enum Frame {
    Bytes(Bytes),
    /// The body has stalled or is slow: write out what is buffered, let the
    /// buffers go.
    Park,
}

/// How often a body's pace is looked at: one that has sent less than
/// [`SLOW`] bytes since the last look is parked ([`Frame::Park`]).
const PARK: std::time::Duration = std::time::Duration::from_secs(1);
/// A buffer's worth: a body that sends less in a [`PARK`] interval is not
/// worth a buffer held for it (see `direct::Aligned`).
const SLOW: usize = super::direct::CAPACITY;

struct Sink {
    writer: Writer,
    frames: mpsc::Receiver<Frame>,
    /// The writer's first error; later frames are dropped.
    result: Result<()>,
}

impl Pipe {
    fn lock_sink(&self) -> MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure a blocking thread drains the frames: called after each send.
    fn run(self: &Arc<Self>) {
        let pipe = self.clone();
        self.on_demand
            .start(&tokio::runtime::Handle::current(), move || {
                let drained =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipe.drain()));
                if drained.is_err() {
                    pipe.broke();
                }
            });
    }

    /// After a drain panicked: the request fails, and its task, which may
    /// be waiting to send a frame, is let go instead of waiting forever.
    fn broke(&self) {
        let mut sink = self.lock_sink();
        sink.result = Err(Error::Internal(
            "the upload's writer stopped unexpectedly".into(),
        ));
        sink.frames.close();
        self.failed.store(true, Ordering::Release);
        self.on_demand.stopped();
    }

    fn drain(&self) {
        let mut sink = self.lock_sink();
        loop {
            sink.drain();
            if sink.result.is_err() {
                self.failed.store(true, Ordering::Release);
            }
            if self.on_demand.may_stop(|| !sink.frames.is_empty()) {
                return;
            }
        }
    }
}

impl Sink {
    /// Takes the frames there are.
    fn drain(&mut self) {
        while let Ok(frame) = self.frames.try_recv() {
            self.take(frame);
        }
    }

    fn take(&mut self, frame: Frame) {
        if self.result.is_err() {
            return;
        }
        match frame {
            Frame::Bytes(bytes) => {
                self.writer.direct.ready(bytes.len());
                self.result = self.writer.write(&bytes);
            }
            Frame::Park => {
                self.result = self.writer.direct.flush().map_err(Error::from);
                self.writer.direct.release();
            }
        }
    }
}

/// Resolves once the holder of a block is asked to let go; never without a block claim.
async fn wait_stop(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
