//! Fast hits: what a result request needs, held in memory.
//!
//! * the **ready index** — completed results by key (length, content type,
//!   BLAKE3 and its ETag, where the bytes are, whether pinned), so a hit
//!   asks sled nothing. A complete entry changes only by being deleted, so
//!   an indexed view stays true until [`Core::delete`] forgets it. The
//!   index is filled by readers; a reader that looked in sled before a
//!   delete must not put back what the delete removed, so fills carry the
//!   index's generation from before their sled read, and a delete moves it
//!   on. Bounded by entries ([`READY_ENTRIES`]); a view forgotten is read
//!   from sled again.
//! * the **memory tier** ([`crate::store::memory`]) — the bytes of small
//!   results, filled when a result is produced and on a disk hit
//!   (fill-back), served as one shared buffer.
//! * **pins** — results kept in memory whatever the eviction: those of the
//!   operations named in `memory_pin_operations`, and keys pinned one by one
//!   ([`Core::pin`], durable in sled).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use upcache_protocol::{Key, Operation, State};

use super::{Core, ResultView};
use crate::error::{Error, Result};
use crate::metrics;
use crate::store::blob::{read_all, BlobName, BlobStore, ByteStream};
use crate::store::meta::{BlobRef, EntryRecord};

/// Completed results the ready index keeps (a few hundred bytes each).
pub const READY_ENTRIES: usize = 100_000;

/// Completed results by key, kept in step with deletes.
pub(crate) struct ReadyIndex {
    views: quick_cache::sync::Cache<Key, Arc<ResultView>>,
    /// Moved on by every invalidation; guards fills against a delete that
    /// came between their sled read and their insert.
    generation: Mutex<u64>,
}

impl ReadyIndex {
    pub fn new() -> Self {
        Self {
            views: quick_cache::sync::Cache::new(READY_ENTRIES),
            generation: Mutex::new(0),
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<ResultView>> {
        self.views.get(key)
    }

    /// The generation to pass to [`ReadyIndex::fill`]; read it before the
    /// record the view is made from.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().expect("ready index lock")
    }

    /// Indexes `view` unless an invalidation came since `generation`.
    pub fn fill(&self, generation: u64, view: Arc<ResultView>) {
        let now = self.generation.lock().expect("ready index lock");
        if *now == generation {
            self.views.insert(view.key, view);
        }
    }

    /// Runs `insert` unless an invalidation came since `generation`.
    pub fn guarded(&self, generation: u64, insert: impl FnOnce() -> bool) -> bool {
        let now = self.generation.lock().expect("ready index lock");
        *now == generation && insert()
    }

    /// Forgets `key`, and keeps fills begun before from putting it back.
    pub fn invalidate(&self, key: &Key) {
        let mut now = self.generation.lock().expect("ready index lock");
        *now += 1;
        self.views.remove(key);
    }
}

/// The bytes of a result as read for a response.
pub enum ResultBody {
    /// Held in memory: the range asked for, in one buffer.
    Bytes(Bytes),
    /// Read from a store as it is sent.
    Stream(ByteStream),
}

impl Core {
    /// The view of a complete entry's result from the ready index, with no
    /// sled read; `None` if it is not indexed (it may still be complete).
    pub fn ready(&self, key: &Key) -> Option<Arc<ResultView>> {
        self.ready.get(key)
    }

    /// Builds the view of `entry`'s result (complete) and indexes it.
    /// `generation` was read before `entry`.
    pub(super) fn view_of(
        &self,
        key: &Key,
        entry: &EntryRecord,
        generation: u64,
    ) -> Result<Arc<ResultView>> {
        let r = entry
            .result
            .as_ref()
            .ok_or_else(|| Error::Internal("complete entry without a result".into()))?;
        let view = Arc::new(ResultView {
            key: *key,
            blake3: r.blake3,
            length: r.length,
            etag: format!("\"{}\"", r.blake3),
            key_hex: key.to_hex(),
            content_type: r.content_type.clone(),
            blob: match r.blob {
                BlobRef::Input => BlobName::Input(entry.input),
                BlobRef::Result => BlobName::Result(*key),
            },
            pinned: self.pinned(key, entry)?,
        });
        if entry.state == State::Complete {
            self.ready.fill(generation, view.clone());
        }
        Ok(view)
    }

    /// Whether `entry`'s result is pinned: by its operation's name, or by key.
    fn pinned(&self, key: &Key, entry: &EntryRecord) -> Result<bool> {
        let by_op = !self.config.memory_pin_operations.is_empty()
            && Operation::from_json(&entry.operation).is_ok_and(|op| {
                self.config
                    .memory_pin_operations
                    .iter()
                    .any(|n| n == op.name())
            });
        Ok(by_op || self.meta.pinned(key)?)
    }

    /// The bytes of a result, all or `range`: from the memory tier if it
    /// holds them, else from disk — filling the memory tier on the way
    /// when the whole result is small enough (or pinned).
    pub async fn read_result(
        &self,
        result: &ResultView,
        range: Option<Range<u64>>,
    ) -> Result<ResultBody> {
        let range = range.unwrap_or(0..result.length);
        // A use of the result, wherever it is served from: a result hot in
        // memory must not become the disk's least recently used.
        self.cap.touch(result.blob);
        if self.memory.enabled() {
            let started = std::time::Instant::now();
            if let Some(bytes) = self.memory.lookup(&result.blob) {
                if bytes.len() as u64 == result.length && range.end <= result.length {
                    let bytes = bytes.slice(range.start as usize..range.end as usize);
                    metrics::MEMORY_READ_SECONDS.since(started);
                    metrics::MEMORY_HITS.inc();
                    metrics::MEMORY_SERVED_BYTES.add(range.end - range.start);
                    return Ok(ResultBody::Bytes(bytes));
                }
            }
            metrics::MEMORY_MISSES.inc();
            if result.pinned {
                self.memory.pin(result.blob);
            }
            if self.memory.admits(&result.blob, result.length) {
                if let Some(bytes) = self.fill(result).await? {
                    metrics::MEMORY_FILLBACKS.inc();
                    return Ok(ResultBody::Bytes(
                        bytes.slice(range.start as usize..range.end as usize),
                    ));
                }
            }
        }
        let count = range.end - range.start;
        let Some(mut stream) = self.inputs.blobs().get(result.blob, Some(range)).await? else {
            return Err(self.gone(result));
        };
        // A range the store read whole (a small one, or a mapped one) goes
        // out as one buffer, so that the head and the body leave in one
        // write rather than two.
        Ok(match stream.next().await.transpose()? {
            None => ResultBody::Bytes(Bytes::new()),
            Some(whole) if whole.len() as u64 == count => ResultBody::Bytes(whole),
            Some(first) => ResultBody::Stream(Box::pin(
                futures_util::stream::once(async move { Ok(first) }).chain(stream),
            )),
        })
    }

    /// The error for a result whose bytes are no longer stored (evicted or
    /// expired since its entry was read): the entry is forgotten, so that
    /// creating it again recomputes it.
    fn gone(&self, result: &ResultView) -> Error {
        if let Err(e) = self.forget_gone(&result.key) {
            return e;
        }
        Error::problem(
            upcache_protocol::ProblemType::NotFound,
            "the result was evicted from the cache; create the entry again to recompute it",
        )
    }

    /// Reads a whole result from disk into the memory tier; its bytes, or
    /// `None` if they are not what the entry says.
    async fn fill(&self, result: &ResultView) -> Result<Option<Bytes>> {
        let generation = self.ready.generation();
        let Some(stream) = self.inputs.blobs().get(result.blob, None).await? else {
            return Err(self.gone(result));
        };
        let bytes = Bytes::from(read_all(stream).await?);
        if bytes.len() as u64 != result.length {
            return Ok(None);
        }
        // A delete since the read began may have removed these bytes from
        // memory; they must not come back.
        if self.ready.guarded(generation, || {
            self.memory.insert(result.blob, bytes.clone())
        }) {
            metrics::MEMORY_FILLS.inc();
        }
        Ok(Some(bytes))
    }

    /// Puts a result just produced in the memory tier, if it is small
    /// enough or pinned.
    pub(super) async fn fill_produced(&self, key: &Key) -> Result<()> {
        if !self.memory.enabled() {
            return Ok(());
        }
        let generation = self.ready.generation();
        let Some(entry) = self.meta.entry(key)? else {
            return Ok(());
        };
        if entry.state != State::Complete {
            return Ok(());
        }
        let view = self.view_of(key, &entry, generation)?;
        if view.pinned {
            self.memory.pin(view.blob);
        }
        if self.memory.admits(&view.blob, view.length) {
            self.fill(&view).await?;
        }
        Ok(())
    }

    /// Pins the result of `key` in the memory tier (durably: a restart
    /// keeps the pin, and the result returns to memory at its first read).
    /// Whether the pin is new. The entry must exist.
    pub async fn pin(self: &Arc<Self>, key: Key) -> Result<bool> {
        self.set_pin(key, true).await
    }

    /// Lets the result of `key` be evicted again. Whether it was pinned.
    pub async fn unpin(self: &Arc<Self>, key: Key) -> Result<bool> {
        self.set_pin(key, false).await
    }

    async fn set_pin(self: &Arc<Self>, key: Key, pinned: bool) -> Result<bool> {
        let entry = self.entry(&key)?;
        let core = self.clone();
        let changed =
            tokio::task::spawn_blocking(move || core.meta.set_pinned(&key, pinned)).await??;
        self.ready.invalidate(&key);
        if entry.state == State::Complete {
            let generation = self.ready.generation();
            let entry = self.entry(&key)?;
            let view = self.view_of(&key, &entry, generation)?;
            if view.pinned {
                self.memory.pin(view.blob);
                if self.memory.lookup(&view.blob).is_none() {
                    self.fill(&view).await?;
                }
            } else {
                self.memory.unpin(&view.blob);
            }
        }
        Ok(changed)
    }

    /// Forgets `key`'s result in the fast paths (at delete): its view, its
    /// pin, and its bytes if they are its own (an identity result's bytes
    /// are the stored input, which stays). Called once the entry is out of
    /// sled and again once its blob is deleted, so no fill that read the
    /// blob before puts it back.
    pub(super) fn forget_result(&self, key: &Key, removed: Option<&EntryRecord>) {
        self.ready.invalidate(key);
        if let Some(r) = removed.and_then(|e| e.result.as_ref()) {
            if r.blob == BlobRef::Result {
                let name = BlobName::Result(*key);
                self.memory.unpin(&name);
                self.memory.remove(&name);
            }
        }
    }
}
