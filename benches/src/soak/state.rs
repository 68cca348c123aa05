//! What the clients share: the inputs (made on demand from a seed, so none
//! is kept in memory for long), the operations, the budget of new input
//! bytes, the window of live inputs that hits, waits and deletes draw from,
//! and the uploads in flight that other clients wait on.
//!
//! # Why a budget of new bytes
//!
//! The server keeps every verified input: `DELETE` removes an entry and its
//! result but not its input (`inputs/` is content-addressed, other
//! operations may use it), and it has no input retention. So the one way
//! the soak grows the data directory is by uploading inputs the server has
//! never seen; those uploads draw from a byte budget (`--new-rate` per
//! second, with a small burst), and when it is spent the clients pick
//! another scenario. Everything else — entries, results, tus uploads — is
//! deleted again, so sled and `results/` stay bounded.
//!
//! # Leases
//!
//! Each live input has a read-write lock. Hits, waits and tus uploads of it
//! hold a read lease, so no entry of it is deleted under them (which would
//! make a legitimate `404` indistinguishable from a bug); deleting and
//! re-creating an entry, and retiring the input from the window, hold the
//! write lease.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::RwLock;
use upcache_protocol::{InputHash, Key, Operation};

use crate::input::Xorshift;

/// Mixed into every seed, so soak inputs differ from other benchmarks'.
const SALT: u64 = 0x50a4_50a4;
/// New-input bytes that may be spent at once, beyond the rate.
const BURST: u64 = 16 << 20;
/// Box of the thumbnail operations: tiny, so the CPU stays with the I/O.
const THUMB: u64 = 32;
const SMALL: u64 = 16;

/// The operations of the soak: identity for every input; thumbnails for images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Identity,
    /// `image.thumbnail` into 32×32, PNG.
    Thumb,
    /// `image.thumbnail` into 16×16, WebP.
    Small,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Identity, Variant::Thumb, Variant::Small];

    pub fn json(self) -> Value {
        match self {
            Variant::Identity => json!({"op": "identity"}),
            Variant::Thumb => json!({"op": "image.thumbnail", "width": THUMB, "height": THUMB}),
            Variant::Small => {
                json!({"op": "image.thumbnail", "width": SMALL, "height": SMALL, "format": "webp"})
            }
        }
    }

    /// The box an image result must fit in, or `None` for identity.
    pub fn thumb_box(self) -> Option<(u32, u32)> {
        match self {
            Variant::Identity => None,
            Variant::Thumb => Some((THUMB as u32, THUMB as u32)),
            Variant::Small => Some((SMALL as u32, SMALL as u32)),
        }
    }

    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Variant::Identity => None,
            Variant::Thumb => Some("image/png"),
            Variant::Small => Some("image/webp"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What an input holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// Pseudo-random bytes, made again from the seed when needed.
    Blob,
    /// A PNG of pseudo-random pixels, kept (it is small).
    Png(Bytes),
}

/// One input: its bytes are a function of `id`.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub id: u64,
    pub content: Content,
    pub length: u64,
    pub hash: InputHash,
}

impl InputSpec {
    /// A blob of `length` bytes.
    pub fn blob(id: u64, length: u64) -> Self {
        let bytes = blob_bytes(id, length);
        Self {
            id,
            content: Content::Blob,
            length,
            hash: InputHash::of(&bytes),
        }
    }

    /// A PNG of pseudo-random pixels, `width`×`height` (incompressible:
    /// about 3 bytes per pixel).
    pub fn png(id: u64, width: u32, height: u32) -> Self {
        let mut pixels = vec![0u8; (width * height * 3) as usize];
        Xorshift::new(id ^ SALT).fill(&mut pixels);
        let img = image::RgbImage::from_raw(width, height, pixels).expect("sized to fit");
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)
            .expect("PNG encoding to memory");
        let png = Bytes::from(png.into_inner());
        Self {
            id,
            length: png.len() as u64,
            hash: InputHash::of(&png),
            content: Content::Png(png),
        }
    }

    pub fn bytes(&self) -> Bytes {
        match &self.content {
            Content::Blob => Bytes::from(blob_bytes(self.id, self.length)),
            Content::Png(png) => png.clone(),
        }
    }

    pub fn is_image(&self) -> bool {
        matches!(self.content, Content::Png(_))
    }

    /// The operations this input is used with.
    pub fn variants(&self) -> &'static [Variant] {
        if self.is_image() {
            &Variant::ALL
        } else {
            &Variant::ALL[..1]
        }
    }

    pub fn key(&self, variant: Variant) -> Key {
        let op = Operation::parse(&variant.json()).expect("the soak's operations are valid");
        Key::derive(&self.hash, &op)
    }
}

fn blob_bytes(id: u64, length: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; length as usize];
    Xorshift::new(id ^ SALT).fill(&mut bytes);
    bytes
}

/// What is known of one operation on a live input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    /// The entry exists on the server (as far as the soak's own requests say).
    pub created: bool,
    /// The BLAKE3 of its result, once seen: every later answer must match.
    pub result: Option<InputHash>,
}

/// An input the server holds, shared by the clients.
pub struct Live {
    pub input: InputSpec,
    pub lease: Arc<RwLock<()>>,
    known: Mutex<[Known; 3]>,
}

impl Live {
    pub fn new(input: InputSpec) -> Arc<Self> {
        Arc::new(Self {
            input,
            lease: Arc::new(RwLock::new(())),
            known: Mutex::new([Known::default(); 3]),
        })
    }

    pub fn known(&self, v: Variant) -> Known {
        self.known.lock().expect("not poisoned")[v.index()]
    }

    pub fn set_created(&self, v: Variant, created: bool) {
        self.known.lock().expect("not poisoned")[v.index()].created = created;
    }

    /// Records the result's hash the first time; afterwards says whether
    /// `hash` is the one recorded.
    pub fn same_result(&self, v: Variant, hash: InputHash) -> Result<(), InputHash> {
        let mut known = self.known.lock().expect("not poisoned");
        match known[v.index()].result {
            Some(h) if h != hash => Err(h),
            _ => {
                known[v.index()].result = Some(hash);
                Ok(())
            }
        }
    }

    /// The operations with an entry on the server.
    pub fn created(&self) -> Vec<Variant> {
        let known = self.known.lock().expect("not poisoned");
        Variant::ALL
            .into_iter()
            .filter(|v| known[v.index()].created)
            .collect()
    }
}

/// An upload in progress that other clients may wait on.
pub struct Pending {
    pub live: Arc<Live>,
    pub variant: Variant,
}

/// The shared state.
pub struct Pool {
    next_id: AtomicU64,
    started: Instant,
    /// New-input bytes per second.
    rate: u64,
    spent: AtomicU64,
    /// New-input bytes accepted by the server.
    pub stored_new: AtomicU64,
    keep: usize,
    window: Mutex<VecDeque<Arc<Live>>>,
    pending: Mutex<Vec<Arc<Pending>>>,
}

impl Pool {
    /// `rate`: new-input bytes per second; `keep`: live inputs in the window.
    pub fn new(rate: u64, keep: usize) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            rate,
            spent: AtomicU64::new(0),
            stored_new: AtomicU64::new(0),
            keep: keep.max(1),
            window: Mutex::new(VecDeque::new()),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// A new input id (never used before in this run).
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget of new input bytes, if it has them.
    pub fn spend(&self, bytes: u64) -> bool {
        let allowed = BURST + (self.rate as f64 * self.started.elapsed().as_secs_f64()) as u64;
        self.spent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
                (spent + bytes <= allowed).then_some(spent + bytes)
            })
            .is_ok()
    }

    /// A random live input, if any.
    pub fn pick(&self, rng: &mut Xorshift) -> Option<Arc<Live>> {
        let window = self.window.lock().expect("not poisoned");
        let n = window.len() as u64;
        (n > 0).then(|| window[rng.below(n) as usize].clone())
    }

    /// Adds a live input; returns the oldest one if the window is now over
    /// its size: the caller retires it (deletes its entries).
    #[must_use]
    pub fn add(&self, live: Arc<Live>) -> Option<Arc<Live>> {
        let mut window = self.window.lock().expect("not poisoned");
        window.push_back(live);
        (window.len() > self.keep)
            .then(|| window.pop_front())
            .flatten()
    }

    pub fn live_count(&self) -> usize {
        self.window.lock().expect("not poisoned").len()
    }

    /// Publishes an upload in progress until the guard is dropped.
    pub fn publish(self: &Arc<Self>, pending: Arc<Pending>) -> Published {
        self.pending
            .lock()
            .expect("not poisoned")
            .push(pending.clone());
        Published {
            pool: self.clone(),
            pending,
        }
    }

    /// A random upload in progress, if any.
    pub fn pick_pending(&self, rng: &mut Xorshift) -> Option<Arc<Pending>> {
        let pending = self.pending.lock().expect("not poisoned");
        let n = pending.len() as u64;
        (n > 0).then(|| pending[rng.below(n) as usize].clone())
    }
}

/// An upload other clients may wait on, until dropped.
pub struct Published {
    pool: Arc<Pool>,
    pending: Arc<Pending>,
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut all = self.pool.pending.lock().expect("not poisoned");
        all.retain(|p| !Arc::ptr_eq(p, &self.pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_made_again_from_their_id() {
        let a = InputSpec::blob(7, 5000);
        assert_eq!(InputHash::of(&a.bytes()), a.hash);
        assert_ne!(InputSpec::blob(8, 5000).hash, a.hash);
        let p = InputSpec::png(9, 40, 30);
        assert_eq!(InputHash::of(&p.bytes()), p.hash);
        assert_eq!(image::load_from_memory(&p.bytes()).unwrap().width(), 40);
        assert_eq!(p.variants().len(), 3);
        assert_eq!(a.variants(), &[Variant::Identity]);
        assert_ne!(p.key(Variant::Thumb), p.key(Variant::Small));
    }

    #[test]
    fn the_window_hands_back_its_oldest() {
        let pool = Pool::new(0, 2);
        let live = |id| Live::new(InputSpec::blob(id, 10));
        assert!(pool.add(live(1)).is_none());
        assert!(pool.add(live(2)).is_none());
        assert_eq!(pool.add(live(3)).unwrap().input.id, 1);
        assert_eq!(pool.live_count(), 2);
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let pool = Pool::new(0, 1);
        assert!(pool.spend(BURST));
        assert!(!pool.spend(1));
    }

    #[test]
    fn a_result_is_the_first_one_seen() {
        let live = Live::new(InputSpec::blob(1, 10));
        let (a, b) = (InputHash::of(b"a"), InputHash::of(b"b"));
        assert!(live.same_result(Variant::Identity, a).is_ok());
        assert!(live.same_result(Variant::Identity, a).is_ok());
        assert_eq!(live.same_result(Variant::Identity, b), Err(a));
        live.set_created(Variant::Identity, true);
        assert_eq!(live.created(), vec![Variant::Identity]);
    }
}
