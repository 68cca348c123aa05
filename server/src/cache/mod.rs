//! The entry lifecycle: create, verify, process once, wait, delete, recover.
//!
//! ```text
//!   create ─▶ uploading ─(all blocks, BLAKE3 verified)─▶ processing ─▶ complete
//!                 │                                          └──────▶ failed ─(retry)─▶ processing
//!                 └─(hash mismatch)─▶ failed ─(create)─▶ uploading
//! ```
//!
//! Every transition is one sled transaction guarded by the state it expects,
//! so concurrent callers cannot both win. Processing is single flight: the
//! `running` set admits one task per key, and everyone else waits on the
//! key's [`Notifier`] entry.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use upcache_protocol::blocks::encode_ranges;
use upcache_protocol::lifecycle::Event;
use upcache_protocol::status::result_path;
use upcache_protocol::{
    CreateRequest, Digest, InputHash, InputRef, Key, Layout, Operation, Problem, ProblemType,
    ResultInfo, State, Status,
};

pub mod files;
mod hot;
mod process;
mod purge;
mod receive;
mod redirect;
mod sweep;

pub use hot::{ResultBody, READY_ENTRIES};
pub use receive::Received;
pub use redirect::Redirect;
pub use sweep::SWEEP_BATCH;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::inputs::{Inputs, Published};
use crate::metrics;
use crate::notify::Notifier;
use crate::ops::pool::{Pool, Priority};
use crate::ops::Limits;
use crate::store::blob::{BlobName, BlobStore};
use crate::store::breaker::{BreakerSettings, BreakerState};
use crate::store::cap::{CapError, DiskCap};
use crate::store::deadlines::{Class, Deadlines};
use crate::store::memory::MemoryStore;
use crate::store::meta::{BlobRef, EntryRecord, InputRecord, Meta, UploadChange};
use crate::store::records::Failure;
use crate::store::s3::S3Store;
use crate::store::tiers::RemoteTier;
use crate::upload::{self, Completion, UploadId, Uploads};

/// A complete result, as a reader gets it; what a response needs is
/// formatted once, when the view is made.
#[derive(Debug, Clone)]
pub struct ResultView {
    pub key: Key,
    /// The BLAKE3 of the result's bytes.
    pub blake3: InputHash,
    pub length: u64,
    pub content_type: String,
    /// The strong ETag: the BLAKE3 in hex, quoted.
    pub etag: String,
    /// The key in hex.
    pub key_hex: String,
    blob: BlobName,
    /// Whether the result stays in memory whatever the eviction.
    pinned: bool,
}

/// Where an entry stands for a reader of its result.
#[derive(Debug)]
pub enum Outcome {
    Ready(Arc<ResultView>),
    Failed(Problem),
    /// Not yet settled: its status.
    Pending(Box<Status>),
}

/// An upload whose every block is in, about to be verified.
struct ReceivedInFull {
    entry: EntryRecord,
    layout: Layout,
    completion: Completion,
}

/// Everything the service holds.
pub struct Core {
    config: Config,
    meta: Meta,
    inputs: Inputs,
    /// The disk tier's accounting and eviction order.
    cap: Arc<DiskCap>,
    /// When things with a time to live are next due.
    deadlines: Deadlines,
    notifier: Arc<Notifier>,
    pool: Arc<Pool>,
    /// The executable image operations run in (`upcache op-worker`).
    worker: PathBuf,
    uploads: Arc<Uploads>,
    running: Mutex<HashSet<Key>>,
    finalizing: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Small hot results' bytes ([`hot`]).
    memory: MemoryStore,
    /// Complete results by key ([`hot`]).
    ready: hot::ReadyIndex,
}

/// Removes a key from a set when dropped.
struct SetGuard<'a>(&'a Mutex<HashSet<Key>>, Key);

impl Drop for SetGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("set lock").remove(&self.1);
    }
}

fn enter<'a>(set: &'a Mutex<HashSet<Key>>, key: &Key) -> Option<SetGuard<'a>> {
    set.lock()
        .expect("set lock")
        .insert(*key)
        .then(|| SetGuard(set, *key))
}

fn not_found() -> Error {
    Error::problem(ProblemType::NotFound, "no entry under this key")
}

impl Core {
    /// Opens the data directory and starts the committer and the worker pool.
    pub fn open(config: Config) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data)?;
        let meta = Meta::open(
            &config.data.join("db"),
            config.db_cache.as_u64(),
            config.clock.clone(),
        )?;
        let remote = match &config.s3 {
            None => None,
            Some(s3) => {
                // Blocking here (Core::open runs on a blocking thread).
                let store = tokio::runtime::Handle::current()
                    .block_on(S3Store::from_config(s3))
                    .map_err(|e| Error::Internal(format!("the S3 tier: {e}")))?;
                tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, "S3 tier on");
                let remote = RemoteTier {
                    store: Arc::new(store),
                    breaker: BreakerSettings {
                        failures: s3.breaker_failures,
                        slow: Duration::from_secs(s3.breaker_slow),
                        cooldown: Duration::from_secs(s3.breaker_cooldown),
                    },
                    concurrency: s3.write_behind_concurrency,
                };
                Some((remote, meta.write_behind()?))
            }
        };
        let cap = DiskCap::open(
            &meta,
            config.disk_cap.map(|c| c.as_u64()),
            config.clock.clone(),
        )?;
        let deadlines = Deadlines::open(&meta)?;
        let inputs = Inputs::open(&config.data, cap.clone(), config.clock.clone(), remote)?;
        // With a remote tier, a blob whose copy there is not confirmed yet
        // (its put still queued) is the only copy: never evicted.
        // (The predicate holds the queue alone: the tiers hold the cap.)
        if let Some(queue) = inputs.blobs().remote_queue() {
            cap.set_may_evict(Arc::new(move |name| !queue.put_pending(name)));
        }
        migrate_input_records(&meta, &inputs)?;
        let rewritten = meta.migrate_entries()?;
        if rewritten > 0 {
            tracing::info!(
                entries = rewritten,
                "entry records rewritten in the current format"
            );
        }
        Ok(Arc::new(Self {
            uploads: Arc::new(Uploads::new(
                meta.clone(),
                inputs.staging().clone(),
                &config,
            )),
            pool: Pool::new(config.pool_size, config.pool_memory.as_u64()),
            worker: match &config.worker {
                Some(w) => w.clone(),
                None => worker_executable()?,
            },
            notifier: Arc::default(),
            running: Mutex::default(),
            finalizing: Mutex::default(),
            memory: MemoryStore::new(config.memory_cap.as_u64(), config.memory_max_item.as_u64()),
            ready: hot::ReadyIndex::new(),
            meta,
            inputs,
            cap,
            deadlines,
            config,
        }))
    }

    /// Starts the disk tier's background work: the evictor (told of what it
    /// evicts, so that entries whose result went are forgotten), the writer
    /// of the use order, and — once, for a data directory of an earlier
    /// release — the adoption of blobs the order does not know yet.
    pub fn start(self: &Arc<Self>) {
        let core = Arc::downgrade(self);
        self.cap.set_on_evicted(Arc::new(move |name| {
            let Some(core) = core.upgrade() else { return };
            tokio::task::spawn_blocking(move || core.forget_evicted(name));
        }));
        let disk = self.inputs.disk().clone();
        self.cap.start(disk.clone());
        let cap = self.cap.clone();
        tokio::spawn(async move {
            match cap.adopt(&disk).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(blobs = n, "existing blobs added to the disk order"),
                Err(e) => {
                    tracing::warn!(error = %e, "adding existing blobs to the disk order failed")
                }
            }
        });
    }

    /// Blocking: forgets what pointed at an evicted blob — the entry whose
    /// result it was, the record of an input. Entries whose result is an
    /// evicted input (identity) are forgotten when next asked for.
    fn forget_evicted(&self, name: BlobName) {
        if self.inputs.blobs().has_remote() {
            // The remote tier still holds it (only confirmed copies are
            // evicted): a read fills the disk back.
            return;
        }
        let done = match name {
            BlobName::Result(key) => (|| -> Result<()> {
                let owned = self
                    .meta
                    .entry(&key)?
                    .and_then(|e| e.result)
                    .is_some_and(|r| r.blob == BlobRef::Result);
                if owned {
                    let removed = self.meta.remove(&key)?;
                    self.forget_result(&key, removed.as_ref());
                    self.notifier.notify(&key);
                }
                Ok(())
            })(),
            BlobName::Input(hash) => self.inputs.forget(&hash),
        };
        if let Err(e) = done {
            tracing::warn!(blob = %name, error = %e, "forgetting an evicted blob failed");
        }
    }

    /// Resumes what the durable state says was under way: uploads whose last
    /// block landed just before a crash are verified, processing is re-queued.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        let mut verify = Vec::new();
        for item in self.meta.entries() {
            let (key, entry) = item?;
            self.restore_deadline(&key, &entry)?;
            match entry.state {
                State::Processing => self.schedule(key, Priority::Background),
                State::Uploading => {
                    self.cap.restore_upload(key, entry.length);
                    let done = self
                        .meta
                        .upload(&key)?
                        .is_some_and(|u| u.received.len() == self.layout(&entry).blocks());
                    if done {
                        verify.push(key);
                    }
                }
                _ => {}
            }
        }
        for key in verify {
            self.finalize(key).await?;
        }
        self.recover_files().await
    }

    /// The settings the service runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes every metadata change durable (at shutdown). Blocking.
    pub fn flush(&self) -> Result<()> {
        self.cap.flush_touches()?;
        Ok(self.meta.flush()?)
    }

    /// The block layout of an entry.
    /// Copies what the local tier holds up to the remote tier, as long as
    /// the service runs (nothing to do without a remote tier).
    pub fn write_behind(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.inputs
            .blobs()
            .clone()
            .run_write_behind(std::future::pending())
    }

    /// How the service is: `None` when all is well, else what is degraded
    /// (it keeps serving from its local tiers meanwhile).
    pub fn degraded(&self) -> Option<String> {
        let h = self.inputs.blobs().remote_health()?;
        (h.breaker != BreakerState::Closed || h.queue_age > 60).then(|| {
            format!(
                "remote tier: breaker {}; {} writes queued, the oldest for {} s",
                h.breaker, h.queue_depth, h.queue_age
            )
        })
    }

    pub fn layout(&self, entry: &EntryRecord) -> Layout {
        Layout {
            length: entry.length,
            block_size: entry.block_size,
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.config.image_max_pixels,
            max_image_input: self.config.image_max_input.as_u64(),
        }
    }

    /// Refuses an operation the limits rule out whatever its input.
    pub fn check_operation(&self, op: &Operation) -> Result<()> {
        crate::ops::check(op, &self.limits()).map_err(Error::from)
    }

    /// The entry under `key`.
    pub fn entry(&self, key: &Key) -> Result<EntryRecord> {
        self.meta.entry(key)?.ok_or_else(not_found)
    }

    /// The status document of an entry.
    pub fn status(&self, key: &Key) -> Result<Status> {
        let entry = self.entry(key)?;
        self.status_of(key, &entry)
    }

    /// The status document of `entry`, with its upload's progress while
    /// it is uploading.
    fn status_of(&self, key: &Key, entry: &EntryRecord) -> Result<Status> {
        let upload = match entry.state {
            State::Uploading => self.uploads.record(UploadId(*key))?,
            _ => None,
        };
        let layout = self.layout(entry);
        let total = layout.blocks();
        let (received, missing, offset, digest) = match &upload {
            Some(u) => (
                u.received.len(),
                encode_ranges((0..total).filter(|n| !u.received.contains(*n as u32))),
                upload::offset(&layout, u),
                u.digest.to_hex(),
            ),
            None if entry.state == State::Uploading => {
                (0, encode_ranges(0..total), 0, Digest::new().to_hex())
            }
            None => (
                total,
                String::new(),
                entry.length,
                entry.digest.clone().unwrap_or_default(),
            ),
        };
        Ok(Status {
            key: *key,
            state: entry.state,
            input: InputRef {
                blake3: entry.input,
                length: entry.length,
            },
            operation: serde_json::from_str(&entry.operation).unwrap_or_default(),
            block_size: entry.block_size,
            blocks_total: total,
            blocks_received: received,
            missing,
            offset,
            digest,
            result: entry.result.as_ref().map(|r| ResultInfo {
                url: result_path(key),
                length: r.length,
                content_type: r.content_type.clone(),
                blake3: r.blake3,
            }),
            error: entry.error.as_ref().map(Failure::to_problem),
        })
    }

    /// Where `key` stands for a reader of its result, once it is complete
    /// or failed — or when `wait` is over.
    pub async fn outcome(&self, key: &Key, wait: Duration) -> Result<Outcome> {
        if let Some(view) = self.ready.get(key) {
            return Ok(Outcome::Ready(view));
        }
        let generation = self.ready.generation();
        let entry = match self.meta.entry(key)? {
            Some(e) => e,
            None => self.adopt(key).await?.ok_or_else(not_found)?,
        };
        let entry = match entry.state {
            State::Complete | State::Failed => entry,
            _ => self
                .wait(key, wait)
                .await?
                .ok_or_else(|| Error::problem(ProblemType::NotFound, "the entry was deleted"))?,
        };
        Ok(match entry.state {
            State::Complete => Outcome::Ready(self.view_of(key, &entry, generation)?),
            State::Failed => Outcome::Failed(failure(&entry)),
            _ => Outcome::Pending(Box::new(self.status_of(key, &entry)?)),
        })
    }

    /// The entry of `key` as the remote tier describes it: a result in the
    /// bucket that this node's database does not know (another node's, or
    /// this node's before its data directory was lost) is recorded as
    /// complete. `None` without a remote tier, without such a result, or
    /// while the remote tier is unavailable.
    async fn adopt(&self, key: &Key) -> Result<Option<EntryRecord>> {
        if !self.inputs.blobs().has_remote() {
            return Ok(None);
        }
        let head = match self
            .inputs
            .blobs()
            .remote_head(BlobName::Result(*key))
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(key = %key, error = %e, "the remote tier could not say whether it has the result");
                return Ok(None);
            }
        };
        let Some(meta) = head.and_then(|h| h.meta) else {
            return Ok(None);
        };
        let Some(of) = &meta.result else {
            return Ok(None);
        };
        // The object's name must be the key of what it says it was made of.
        match Operation::from_json(&of.operation) {
            Ok(op) if Key::derive(&of.input, &op) == *key => {}
            _ => {
                tracing::warn!(key = %key, "a result object whose metadata does not match its name; ignored");
                return Ok(None);
            }
        }
        // A link (an identity result) stands for its input's bytes.
        let (blake3, length, blob) = if of.is_input {
            (of.input, of.input_length, BlobRef::Input)
        } else {
            (meta.blake3, meta.length, BlobRef::Result)
        };
        let result = crate::store::meta::ResultRecord {
            blake3,
            length,
            content_type: meta.content_type.clone(),
            blob,
        };
        let entry = EntryRecord {
            result: Some(result),
            ..EntryRecord::new(
                State::Complete,
                of.input,
                of.input_length,
                of.operation.clone(),
                self.config.default_block_size.as_u64(),
            )
        };
        let (entry, _) = self.meta.create(key, &entry, false)?;
        tracing::info!(key = %key, "result found in the remote tier: entry recorded as complete");
        Ok(Some(entry))
    }

    /// Records `key`'s entry from the remote tier when this node does not
    /// know it (see [`Core::adopt`]), so that invalidating a result another
    /// node made, or one made here before the data directory was lost,
    /// reaches the bucket too.
    pub(crate) async fn adopt_unknown(&self, key: &Key) -> Result<()> {
        if self.inputs.blobs().has_remote() && self.meta.entry(key)?.is_none() {
            self.adopt(key).await?;
        }
        Ok(())
    }

    /// Forgets a complete entry whose result blob is gone.
    fn forget_gone(&self, key: &Key) -> Result<()> {
        let removed = self.meta.remove(key)?;
        self.forget_result(key, removed.as_ref());
        if removed.is_some() {
            tracing::info!(key = %key, "entry forgotten: its result is no longer stored");
        }
        self.notifier.notify(key);
        Ok(())
    }

    /// Whether a complete entry's result is still stored; a hit notes the
    /// use, so the result moves to the front of the eviction order.
    async fn result_stored(&self, key: &Key, entry: &EntryRecord) -> Result<bool> {
        let Some(r) = &entry.result else {
            return Ok(true);
        };
        let name = match r.blob {
            BlobRef::Input => BlobName::Input(entry.input),
            BlobRef::Result => BlobName::Result(*key),
        };
        let stored = match self.inputs.blobs().head(name).await {
            Ok(head) => head.is_some(),
            // Not local, and the remote tier cannot say: not known to be gone.
            Err(e) if crate::store::blob::is_unavailable(&e) => true,
            Err(e) => return Err(e.into()),
        };
        if !stored {
            return Ok(false);
        }
        self.cap.touch(name);
        Ok(true)
    }

    /// A stored input, if its file and its record are really there.
    pub(crate) fn stored_input(&self, hash: &InputHash) -> Result<Option<InputRecord>> {
        self.inputs.stored(hash)
    }

    /// Looks up or creates the entry of `(input, operation)`. Returns the key,
    /// the entry's status and whether this call created (or restarted) it.
    /// Counts a hit when nothing has to be uploaded.
    pub async fn create(
        self: &Arc<Self>,
        req: &CreateRequest,
        op: &Operation,
    ) -> Result<(Key, Status, bool)> {
        let (key, entry, created) = self.lookup_or_create(req, op).await?;
        metrics::LOOKUPS.inc();
        if entry.state != State::Uploading {
            metrics::HITS.inc();
            metrics::UPLOAD_BYTES_AVOIDED.add(entry.length);
        }
        Ok((key, self.status_of(&key, &entry)?, created))
    }

    pub(crate) async fn lookup_or_create(
        self: &Arc<Self>,
        req: &CreateRequest,
        op: &Operation,
    ) -> Result<(Key, EntryRecord, bool)> {
        let InputRef {
            blake3: input,
            length,
        } = req.input;
        let max = self.config.max_input_size.as_u64();
        if length > max {
            return Err(Problem::new(
                ProblemType::InputTooLarge,
                format!("the input has {length} bytes; the limit is {max}"),
            )
            .with("limit", max)
            .into());
        }
        let block_size = req
            .block_size
            .unwrap_or(self.config.default_block_size.as_u64());
        Layout::new(length, block_size, self.config.max_blocks)
            .map_err(|e| Error::problem(ProblemType::InvalidBlockSize, e.to_string()))?;
        self.check_operation(op)?;
        let key = Key::derive(&input, op);
        let mut stored = self.stored_input(&input)?;
        if stored.is_none() {
            // Another node's upload, or this node's evicted one.
            stored = self.inputs.remote_record(&input).await?;
        }
        if let Some(rec) = stored.filter(|r| r.length != length) {
            return Err(length_mismatch(length, rec.length));
        }
        let known = match self.meta.entry(&key)? {
            Some(e) => Some(e),
            None => self.adopt(&key).await?,
        };
        if let Some(existing) = known {
            if existing.length != length {
                return Err(length_mismatch(length, existing.length));
            }
            if existing.state != State::Complete || self.result_stored(&key, &existing).await? {
                return self.retry_if_due(key, existing, stored).await;
            }
            // Its result was evicted: the entry starts over.
            self.forget_gone(&key)?;
        }
        if stored.is_none() && length > 0 {
            // Room for the upload, before anything is written.
            self.cap
                .reserve_upload(key, length)
                .await
                .map_err(cap_problem)?;
        }
        let entry = match stored {
            Some(rec) => EntryRecord {
                digest: Some(hex::encode(rec.digest)),
                ..EntryRecord::new(
                    State::Processing,
                    input,
                    length,
                    op.canonical().into(),
                    rec.block_size,
                )
            },
            None => EntryRecord::new(
                State::Uploading,
                input,
                length,
                op.canonical().into(),
                block_size,
            ),
        };
        let (entry, created) = match self
            .meta
            .create(&key, &entry, entry.state == State::Uploading)
        {
            Ok(done) => done,
            Err(e) => {
                self.cap.release_upload(&key);
                return Err(e.into());
            }
        };
        if created && entry.state == State::Processing {
            self.schedule(key, Priority::Interactive);
        }
        if created && entry.state == State::Uploading {
            let due = self.config.clock.now() + self.config.upload_ttl;
            self.deadlines.set(Class::Upload, key.as_bytes(), due)?;
        }
        if created && entry.state == State::Uploading && length == 0 {
            self.finalize(key).await?;
            return Ok((key, self.entry(&key)?, true));
        }
        Ok((key, entry, created))
    }

    /// A failed entry is retried by a create once its failure has been
    /// remembered for `failure_ttl` — at once if the upload itself was bad.
    async fn retry_if_due(
        self: &Arc<Self>,
        key: Key,
        existing: EntryRecord,
        stored: Option<InputRecord>,
    ) -> Result<(Key, EntryRecord, bool)> {
        if existing.state == State::Uploading {
            if let Some(rec) = stored {
                // The input arrived by another way (another operation's upload,
                // a tus upload): this upload is not needed any more.
                return self.skip_upload(key, rec).await;
            }
        }
        let bad_upload =
            existing.error.as_ref().map(|f| f.kind) == Some(ProblemType::InputHashMismatch);
        let due =
            self.config.clock.now().saturating_sub(existing.updated) >= self.config.failure_ttl;
        if existing.state == State::Uploading {
            let layout = self.layout(&existing);
            if self
                .meta
                .upload(&key)?
                .is_some_and(|u| u.received.len() == layout.blocks())
            {
                // Every block is in but verification never ran (a crash in between).
                self.finalize(key).await?;
                return Ok((key, self.entry(&key)?, false));
            }
        }
        if existing.state != State::Failed || !(bad_upload || due) {
            return Ok((key, existing, false));
        }
        let event = Event::Retry {
            input_stored: stored.is_some(),
        };
        let (change, digest) = match stored {
            Some(rec) => (UploadChange::Keep, Some(hex::encode(rec.digest))),
            None => (UploadChange::Start, None),
        };
        if change == UploadChange::Start && existing.length > 0 {
            self.cap
                .reserve_upload(key, existing.length)
                .await
                .map_err(cap_problem)?;
            let due = self.config.clock.now() + self.config.upload_ttl;
            self.deadlines.set(Class::Upload, key.as_bytes(), due)?;
        }
        let updated = self.meta.update(&key, change, |e| {
            e.state.on(event).map(|state| EntryRecord {
                state,
                error: None,
                result: None,
                digest: digest.clone(),
                ..e.clone()
            })
        })?;
        let Some((entry, changed)) = updated else {
            return Err(not_found());
        };
        if changed && entry.state == State::Processing {
            self.schedule(key, Priority::Interactive);
        }
        Ok((key, entry, changed))
    }

    /// Moves an uploading entry whose input is now stored on to processing,
    /// and stops its upload.
    async fn skip_upload(
        self: &Arc<Self>,
        key: Key,
        rec: InputRecord,
    ) -> Result<(Key, EntryRecord, bool)> {
        let digest = Some(hex::encode(rec.digest));
        let updated = self.meta.update(&key, UploadChange::End, |e| {
            e.state.on(Event::InputVerified).map(|state| EntryRecord {
                state,
                digest: digest.clone(),
                ..e.clone()
            })
        })?;
        let Some((entry, changed)) = updated else {
            return Err(not_found());
        };
        if changed {
            self.uploads.stop(UploadId(key));
            self.cap.release_upload(&key);
            let core = self.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                core.inputs.staging().remove(&key)?;
                core.meta.clear_cvs(&key)?;
                Ok(())
            })
            .await??;
            self.schedule(key, Priority::Interactive);
        }
        Ok((key, entry, changed))
    }

    /// Verifies a fully received upload by merging its blocks' chaining
    /// values, publishes the input and starts processing — or fails the entry
    /// if the bytes do not hash to the claimed input hash.
    ///
    /// Concurrent callers for one key take turns; the later ones find the
    /// work done, so every caller returns only once the entry has left
    /// `uploading`.
    pub async fn finalize(self: &Arc<Self>, key: Key) -> Result<()> {
        let core = self.clone();
        let verified = self
            .in_turn(key, async move { core.verify_and_publish(key).await })
            .await?;
        self.uploads.stop(UploadId(key));
        match verified {
            Some(true) => self.schedule(key, Priority::Interactive),
            Some(false) => self.notifier.notify(&key),
            None => {}
        }
        Ok(())
    }

    /// Runs `work` in the finalizing turn of upload `id`: concurrent
    /// finalizers of one upload take turns.
    pub(crate) async fn in_turn<T>(
        &self,
        id: Key,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let lock = self
            .finalizing
            .lock()
            .expect("finalizing lock")
            .entry(id)
            .or_default()
            .clone();
        let turn = lock.lock().await;
        let out = work.await;
        drop(turn);
        let mut map = self.finalizing.lock().expect("finalizing lock");
        if Arc::strong_count(&lock) == 2 {
            map.remove(&id);
        }
        out
    }

    /// Verifies and publishes a fully received upload and records the
    /// outcome on its entry: `None` if there was nothing to do, else whether
    /// the bytes were the input.
    async fn verify_and_publish(self: &Arc<Self>, key: Key) -> Result<Option<bool>> {
        let core = self.clone();
        let ready = tokio::task::spawn_blocking(move || core.received_in_full(&key)).await??;
        let Some(ReceivedInFull {
            entry,
            layout,
            completion,
        }) = ready
        else {
            return Ok(None);
        };
        let published = self
            .inputs
            .publish(key, layout, completion, entry.input)
            .await;
        // Published (and counted as used) or gone: the room reserved for
        // the upload is given back either way.
        self.cap.release_upload(&key);
        let published = published?;
        if let Published::Stored { hash, .. } = &published {
            self.input_used(hash)?;
        }
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.record_verification(&key, &published)).await?
    }

    /// Blocking: an uploading entry whose every block is in, its layout and
    /// the upload's completion.
    fn received_in_full(&self, key: &Key) -> Result<Option<ReceivedInFull>> {
        let Some(entry) = self.meta.entry(key)? else {
            return Ok(None);
        };
        let layout = self.layout(&entry);
        let Some(upload) = self.uploads.record(UploadId(*key))? else {
            return Ok(None);
        };
        if entry.state != State::Uploading || upload.received.len() != layout.blocks() {
            return Ok(None);
        }
        let completion = self.uploads.complete(UploadId(*key), &layout)?;
        Ok(Some(ReceivedInFull {
            entry,
            layout,
            completion,
        }))
    }

    /// Blocking: moves the entry on after publication, to processing or to
    /// failed.
    fn record_verification(&self, key: &Key, published: &Published) -> Result<Option<bool>> {
        let stored = matches!(published, Published::Stored { .. });
        let event = if stored {
            Event::InputVerified
        } else {
            Event::InputRejected
        };
        self.meta.update(key, UploadChange::End, |e| {
            e.state.on(event).map(|state| match published {
                Published::Stored { record, .. } => EntryRecord {
                    state,
                    digest: Some(hex::encode(record.digest)),
                    ..e.clone()
                },
                Published::Rejected { root } => EntryRecord {
                    state,
                    error: Some(Failure {
                        kind: ProblemType::InputHashMismatch,
                        detail: format!("the uploaded bytes hash to {root}, not {}; nothing was stored; create the entry again to re-upload", e.input),
                        members: Default::default(),
                    }),
                    ..e.clone()
                },
            })
        })?;
        self.meta.clear_cvs(key)?;
        if !stored {
            let due = self.config.clock.now() + self.config.failure_ttl;
            self.deadlines.set(Class::Failed, key.as_bytes(), due)?;
        }
        self.meta.flush()?;
        Ok(Some(stored))
    }

    /// Waits until the entry is complete or failed, at most `wait`. Returns
    /// the entry as it is then; `None` if there is (no longer) an entry.
    pub async fn wait(&self, key: &Key, wait: Duration) -> Result<Option<EntryRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribe before reading the state, so no wake-up is lost.
        let mut sub = self.notifier.subscribe(*key);
        loop {
            let entry = self.meta.entry(key)?;
            match &entry {
                Some(e) if !e.state.is_settled() => {}
                _ => return Ok(entry),
            }
            if tokio::time::timeout_at(deadline, sub.changed())
                .await
                .is_err()
            {
                return Ok(entry);
            }
        }
    }

    /// Cancels an upload or invalidates a result. The stored input stays:
    /// other operations may use it.
    pub async fn delete(self: &Arc<Self>, key: Key) -> Result<()> {
        self.adopt_unknown(&key).await?;
        self.delete_entry(key)
            .await?
            .map(drop)
            .ok_or_else(not_found)
    }

    /// [`Core::delete`]: the removed entry, if there was one.
    pub(crate) async fn delete_entry(self: &Arc<Self>, key: Key) -> Result<Option<EntryRecord>> {
        self.uploads.stop(UploadId(key));
        self.cap.release_upload(&key);
        let core = self.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<Option<EntryRecord>> {
            let removed = core.meta.remove(&key)?;
            if let Some(e) = &removed {
                if e.state == State::Uploading {
                    core.inputs.staging().remove(&key)?;
                }
                core.meta.set_pinned(&key, false)?;
                core.meta.flush()?;
            }
            Ok(removed)
        })
        .await??;
        self.forget_result(&key, removed.as_ref());
        // A result of its own, or (with a remote tier) the link to its input there.
        let blob = removed
            .as_ref()
            .and_then(|e| e.result.as_ref())
            .map(|r| r.blob);
        if blob == Some(BlobRef::Result)
            || (blob == Some(BlobRef::Input) && self.inputs.blobs().has_remote())
        {
            self.inputs.blobs().delete(BlobName::Result(key)).await?;
            self.forget_result(&key, removed.as_ref());
        }
        self.notifier.notify(&key);
        Ok(removed)
    }

    /// Notes a use of a stored input: its time to live starts again.
    pub(crate) fn input_used(&self, hash: &InputHash) -> Result<()> {
        if self.config.input_ttl > 0 {
            let due = self.config.clock.now() + self.config.input_ttl;
            self.deadlines.set(Class::Input, hash.as_bytes(), due)?;
        }
        Ok(())
    }
}

/// The answer to a reservation the disk cap refused.
pub(crate) fn cap_problem(e: CapError) -> Error {
    match e {
        CapError::TooLarge { need, cap } => Problem::new(
            ProblemType::DiskCapExceeded,
            format!("the upload needs {need} bytes; the cache's disk cap is {cap} bytes"),
        )
        .with("cap", cap)
        .with("length", need)
        .into(),
        CapError::NoRoom { need, cap, .. } => Problem::new(
            ProblemType::DiskCapExceeded,
            format!(
                "no room for {need} more bytes under the cache's disk cap of {cap} bytes: \
                 what it holds is in use; retry later"
            ),
        )
        .with("cap", cap)
        .with("length", need)
        .into(),
        CapError::Meta(e) => e.into(),
    }
}

/// The executable image operations run in: this one. On Linux it is named
/// through `/proc/self/exe`, which stays valid when the file on disk is
/// replaced or removed (a package upgrade under a running server).
fn worker_executable() -> std::io::Result<PathBuf> {
    let own = PathBuf::from("/proc/self/exe");
    if own.exists() {
        return Ok(own);
    }
    std::env::current_exe()
}

/// Moves the input records of a data directory written by an earlier
/// release out of the metadata database, beside the inputs. Each record is
/// durable beside its input before the old tree is dropped, so a crash
/// half-way is finished by the next start.
fn migrate_input_records(meta: &Meta, inputs: &Inputs) -> Result<()> {
    let legacy = meta.legacy_inputs()?;
    if legacy.is_empty() {
        return Ok(());
    }
    for (hash, rec) in &legacy {
        if inputs.has_local(hash) {
            inputs.record(hash, rec)?;
        }
    }
    meta.forget_legacy_inputs()?;
    tracing::info!(
        inputs = legacy.len(),
        "moved input records beside the inputs"
    );
    Ok(())
}

/// The problem a failed entry answers with.
pub fn failure(entry: &EntryRecord) -> Problem {
    entry
        .error
        .as_ref()
        .map(Failure::to_problem)
        .unwrap_or_else(|| Problem::new(ProblemType::OperationFailed, "the operation failed"))
}

fn length_mismatch(given: u64, known: u64) -> Error {
    Problem::new(
        ProblemType::LengthMismatch,
        format!("the input is known with a length of {known} bytes, not {given}"),
    )
    .with("length", known)
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_records_of_an_earlier_release_move_beside_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let (kept, lost) = (InputHash::of(b"kept"), InputHash::of(b"lost"));
        let rec = InputRecord {
            length: 4,
            block_size: 1 << 23,
            digest: [7; 32],
        };
        {
            // A data directory as earlier releases left it: records in sled.
            let meta = Meta::open(&data.join("db"), 1 << 20, Default::default()).unwrap();
            std::fs::create_dir_all(data.join("inputs")).unwrap();
            std::fs::write(data.join("inputs").join(kept.to_hex()), b"kept").unwrap();
            meta.put_legacy_input(&kept, &rec).unwrap();
            meta.put_legacy_input(&lost, &rec).unwrap(); // its file is gone
            meta.flush().unwrap();
        }
        let config = Config {
            data: data.clone(),
            ..Config::default()
        };
        let core = crate::store::meta::reopen(|| Core::open(config.clone()));
        assert_eq!(core.stored_input(&kept).unwrap(), Some(rec));
        assert_eq!(core.stored_input(&lost).unwrap(), None);
        assert!(core.meta.legacy_inputs().unwrap().is_empty());
        // A record without its input is no stored input either.
        std::fs::remove_file(data.join("inputs").join(kept.to_hex())).unwrap();
        assert_eq!(core.stored_input(&kept).unwrap(), None);
    }
}
