//! The memory tier: small hot blobs held in RAM, bounded by bytes, served
//! as [`Bytes`] without touching disk or sled.
//!
//! Built on [`quick_cache`]'s weighted S3-FIFO cache rather than moka or a
//! home-made LRU:
//!
//! * **the bound is kept at every insert.** quick_cache evicts synchronously,
//!   inside the insert that needs the room, so the bytes held never exceed
//!   `memory_cap`. moka evicts lazily, in batched housekeeping, and its
//!   weighted caches are reported to run well past `max_capacity` under a
//!   stream of inserts (moka-rs/moka#72, #408, #543) — the wrong property for
//!   a tier an operator sizes against the machine's RAM;
//! * **S3-FIFO resists scans**: a burst of one-off results goes through the
//!   small probationary queue and does not flush the hot set, which a plain
//!   LRU would;
//! * reads take a shared lock on one shard and bump a counter; there are no
//!   background threads and no async machinery on the hot path.
//!
//! Each item weighs its length plus a fixed [`OVERHEAD`] (so empty blobs
//! weigh something and are evictable). Blobs longer than `memory_max_item`
//! are not kept (a cache may forget: a [`BlobStore::put_stream`] of one
//! succeeds and stores nothing). The cache is cut into shards each at least
//! a few `memory_max_item`s large, so an item that is allowed always fits.
//!
//! **Pinned** blobs live in a map of their own beside the cache, outside
//! eviction and outside `memory_cap`: [`MemoryStore::pin`] marks a name
//! (moving it out of the cache if it is there, and keeping it whatever its
//! size when it arrives later); [`MemoryStore::unpin`] hands it back to the
//! cache. What is pinned is the caller's choice, and its bytes are reported
//! by [`MemoryStore::pinned_bytes`].
//!
//! Counters: evictions are counted here ([`metrics::MEMORY_EVICTIONS`]);
//! hits, misses and fill-backs by the caller, which knows why it looked.
//! The gauges [`metrics::MEMORY_HELD`] and [`metrics::MEMORY_PINNED`] follow
//! every change (the server has one memory tier), so an operator can tell
//! the tier's bytes from the rest of the process's memory.

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::Range;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::blob::{BlobHead, BlobMeta, BlobName, BlobStore, ByteStream, StagedFile};
use crate::metrics;

/// Weight added to every item for its key and bookkeeping.
pub const OVERHEAD: u64 = 128;

/// Fewest `memory_max_item`s one shard holds.
const ITEMS_PER_SHARD: u64 = 8;

#[derive(Debug, Clone, Copy)]
struct Weigh;

impl quick_cache::Weighter<BlobName, Bytes> for Weigh {
    fn weight(&self, _: &BlobName, val: &Bytes) -> u64 {
        val.len() as u64 + OVERHEAD
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CountEvictions;

impl quick_cache::Lifecycle<BlobName, Bytes> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: BlobName, _: Bytes) {
        metrics::MEMORY_EVICTIONS.inc();
    }
}

type Inner = quick_cache::sync::Cache<
    BlobName,
    Bytes,
    Weigh,
    quick_cache::DefaultHashBuilder,
    CountEvictions,
>;

/// Pinned names, and the bytes of those that are here.
#[derive(Debug, Default)]
struct Pins {
    names: HashSet<BlobName>,
    held: HashMap<BlobName, Bytes>,
}

/// Blobs in memory: a bounded cache, and the pinned blobs beside it.
pub struct MemoryStore {
    cache: Option<Inner>,
    cap: u64,
    max_item: u64,
    pins: RwLock<Pins>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("cap", &self.cap)
            .field("max_item", &self.max_item)
            .field("held", &self.held())
            .finish()
    }
}

impl MemoryStore {
    /// A tier of at most `cap` bytes (its items' weights) holding blobs of
    /// at most `max_item` bytes. `cap == 0` turns the tier off: nothing is
    /// kept, pinned names included.
    pub fn new(cap: u64, max_item: u64) -> Self {
        let max_item = max_item.min(cap);
        let cache = (cap > 0).then(|| {
            let item_weight = max_item + OVERHEAD;
            let parallel = std::thread::available_parallelism().map_or(4, |n| n.get()) as u64;
            let room = (cap / (item_weight * ITEMS_PER_SHARD)).max(1);
            // quick_cache rounds shards up to a power of two: round down
            // here so each shard keeps at least the room computed.
            let shards = room.min(parallel * 4).max(1);
            let shards = 1u64 << (63 - shards.leading_zeros());
            let estimated = (cap / (max_item / 4 + OVERHEAD).max(1)).clamp(16, 1 << 20);
            let options = quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(estimated as usize)
                .weight_capacity(cap)
                .shards(shards as usize)
                .build()
                .expect("valid cache options");
            Inner::with_options(
                options,
                Weigh,
                quick_cache::DefaultHashBuilder::default(),
                CountEvictions,
            )
        });
        Self {
            cache,
            cap,
            max_item,
            pins: RwLock::default(),
        }
    }

    /// Whether the tier keeps anything.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The largest blob the cache keeps (pinned blobs may be larger).
    pub fn max_item(&self) -> u64 {
        self.max_item
    }

    /// Whether a blob of `length` bytes named `name` would be kept.
    pub fn admits(&self, name: &BlobName, length: u64) -> bool {
        self.enabled() && (length <= self.max_item || self.is_pinned(name))
    }

    /// The bytes of `name`, if held.
    pub fn lookup(&self, name: &BlobName) -> Option<Bytes> {
        let cache = self.cache.as_ref()?;
        if let Some(b) = cache.get(name) {
            return Some(b);
        }
        self.pins.read().expect("pins lock").held.get(name).cloned()
    }

    /// Keeps `bytes` as `name` if the tier admits them; whether it did.
    pub fn insert(&self, name: BlobName, bytes: Bytes) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        {
            let mut pins = self.pins.write().expect("pins lock");
            if pins.names.contains(&name) {
                pins.held.insert(name, bytes);
                drop(pins);
                self.publish();
                return true;
            }
        }
        if bytes.len() as u64 > self.max_item {
            return false;
        }
        cache.insert(name, bytes);
        self.publish();
        true
    }

    /// Forgets `name`, pinned or not; whether it was held.
    pub fn remove(&self, name: &BlobName) -> bool {
        let pinned = self
            .pins
            .write()
            .expect("pins lock")
            .held
            .remove(name)
            .is_some();
        let cached = self.cache.as_ref().and_then(|c| c.remove(name)).is_some();
        if pinned || cached {
            self.publish();
        }
        pinned || cached
    }

    /// Keeps `name` out of eviction from now on (held now or when it is
    /// next inserted).
    pub fn pin(&self, name: BlobName) {
        let mut pins = self.pins.write().expect("pins lock");
        pins.names.insert(name);
        if let Some((_, bytes)) = self.cache.as_ref().and_then(|c| c.remove(&name)) {
            pins.held.insert(name, bytes);
            drop(pins);
            self.publish();
        }
    }

    /// Returns `name` to the cache's eviction order (or forgets it, if it is
    /// larger than the cache keeps).
    pub fn unpin(&self, name: &BlobName) {
        let bytes = {
            let mut pins = self.pins.write().expect("pins lock");
            pins.names.remove(name);
            pins.held.remove(name)
        };
        if let Some(bytes) = bytes {
            if !self.insert(*name, bytes) {
                self.publish();
            }
        }
    }

    /// Whether `name` is pinned.
    pub fn is_pinned(&self, name: &BlobName) -> bool {
        self.pins.read().expect("pins lock").names.contains(name)
    }

    /// Weight of the cache's items (their bytes plus [`OVERHEAD`] each),
    /// never above the cap; pinned blobs not included.
    pub fn held(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    /// The bound of [`MemoryStore::held`].
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes of the pinned blobs held.
    pub fn pinned_bytes(&self) -> u64 {
        let pins = self.pins.read().expect("pins lock");
        pins.held.values().map(|b| b.len() as u64).sum()
    }

    /// Sets the tier's gauges to what it holds now.
    fn publish(&self) {
        metrics::MEMORY_HELD.set(self.held());
        metrics::MEMORY_PINNED.set(self.pinned_bytes());
    }

    fn names(&self) -> Vec<BlobName> {
        let mut out: Vec<BlobName> = self
            .cache
            .as_ref()
            .map(|c| c.iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        out.extend(self.pins.read().expect("pins lock").held.keys().copied());
        out.sort();
        out.dedup();
        out
    }
}

/// A blob read whole into one chunk.
fn once(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

/// `range` of a blob of `length` bytes, or the `InvalidInput` error of the
/// trait.
pub fn check_range(range: Option<Range<u64>>, length: u64) -> io::Result<Range<u64>> {
    let range = range.unwrap_or(0..length);
    if range.start > range.end || range.end > length {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {range:?} of a blob of {length} bytes"),
        ));
    }
    Ok(range)
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn put_file(&self, name: BlobName, file: StagedFile, _meta: BlobMeta) -> io::Result<()> {
        let length = tokio::fs::metadata(file.path()).await?.len();
        if self.admits(&name, length) {
            let bytes = tokio::fs::read(file.path()).await?;
            self.insert(name, Bytes::from(bytes));
        }
        drop(file); // taken over: removed
        Ok(())
    }

    async fn put_stream(
        &self,
        name: BlobName,
        mut body: ByteStream,
        _meta: BlobMeta,
    ) -> io::Result<()> {
        let mut buf = BytesMut::new();
        let mut keep = self.enabled();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if keep {
                buf.extend_from_slice(&chunk);
                keep = self.admits(&name, buf.len() as u64);
                if !keep {
                    buf = BytesMut::new();
                }
            }
        }
        if keep {
            self.insert(name, buf.freeze());
        }
        Ok(())
    }

    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        let Some(bytes) = self.lookup(&name) else {
            return Ok(None);
        };
        let range = check_range(range, bytes.len() as u64)?;
        Ok(Some(once(
            bytes.slice(range.start as usize..range.end as usize),
        )))
    }

    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        Ok(self.lookup(&name).map(|b| BlobHead {
            length: b.len() as u64,
            meta: None,
        }))
    }

    async fn delete(&self, name: BlobName) -> io::Result<bool> {
        Ok(self.remove(&name))
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>> {
        Ok(self
            .names()
            .into_iter()
            .filter(|n| n.path().starts_with(prefix))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::staging::Staging;
    use upcache_protocol::Key;

    fn name(i: u32) -> BlobName {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        BlobName::Result(Key(k))
    }

    #[tokio::test]
    async fn the_memory_store_conforms() {
        // Large enough that nothing the suite writes is forgotten.
        let store = MemoryStore::new(256 << 20, 16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        crate::store::conformance::check(&store, &staging).await;
    }

    #[test]
    fn the_bytes_held_stay_under_the_cap() {
        let cap = 1 << 20;
        let store = MemoryStore::new(cap, 64 << 10);
        let before = metrics::MEMORY_EVICTIONS.get();
        for i in 0..200 {
            assert!(store.insert(name(i), Bytes::from(vec![i as u8; 30_000])));
            assert!(store.held() <= cap, "held {} > cap", store.held());
        }
        let kept = (0..200)
            .filter(|i| store.lookup(&name(*i)).is_some())
            .count();
        assert!(kept > 0 && kept < 200, "kept {kept}");
        // Every item weighs its bytes and the overhead.
        assert_eq!(store.held(), kept as u64 * (30_000 + OVERHEAD));
        assert!(metrics::MEMORY_EVICTIONS.get() - before >= (200 - kept) as u64);
    }

    #[test]
    fn items_above_the_max_are_not_kept() {
        let store = MemoryStore::new(1 << 20, 1000);
        assert!(store.insert(name(1), Bytes::from(vec![1; 1000])));
        assert!(!store.insert(name(2), Bytes::from(vec![1; 1001])));
        assert!(store.lookup(&name(1)).is_some());
        assert!(store.lookup(&name(2)).is_none());
        assert_eq!(store.held(), 1000 + OVERHEAD);
    }

    #[test]
    fn a_zero_cap_keeps_nothing() {
        let store = MemoryStore::new(0, 1 << 20);
        assert!(!store.enabled());
        store.pin(name(1));
        assert!(!store.insert(name(1), Bytes::from_static(b"x")));
        assert!(!store.insert(name(2), Bytes::from_static(b"x")));
        assert!(store.lookup(&name(1)).is_none());
        assert_eq!(store.held(), 0);
    }

    #[test]
    fn pinned_items_survive_a_stream_larger_than_the_cap() {
        let store = MemoryStore::new(256 << 10, 64 << 10);
        store.pin(name(0));
        // Pinned before or after it arrives, and larger than the max item.
        store.insert(name(0), Bytes::from(vec![7; 100_000]));
        store.insert(name(1), Bytes::from(vec![8; 10_000]));
        store.pin(name(1));
        for i in 2..500 {
            store.insert(name(i), Bytes::from(vec![9; 20_000]));
        }
        assert_eq!(store.lookup(&name(0)).map(|b| b.len()), Some(100_000));
        assert_eq!(store.lookup(&name(1)).map(|b| b.len()), Some(10_000));
        assert_eq!(store.pinned_bytes(), 110_000);
        assert!(store.held() <= 256 << 10);
        // Unpinned, an item is evictable again (or dropped if too large).
        store.unpin(&name(0));
        assert!(store.lookup(&name(0)).is_none());
        store.unpin(&name(1));
        for i in 500..1000 {
            store.insert(name(i), Bytes::from(vec![9; 20_000]));
        }
        assert!(store.lookup(&name(1)).is_none());
        assert_eq!(store.pinned_bytes(), 0);
    }

    #[test]
    fn removal_forgets_pinned_and_cached_items() {
        let store = MemoryStore::new(1 << 20, 1 << 16);
        store.insert(name(1), Bytes::from_static(b"one"));
        store.pin(name(2));
        store.insert(name(2), Bytes::from_static(b"two"));
        assert!(store.remove(&name(1)));
        assert!(store.remove(&name(2)));
        assert!(!store.remove(&name(3)));
        assert!(store.lookup(&name(1)).is_none() && store.lookup(&name(2)).is_none());
        assert_eq!(store.held(), 0);
    }
}
