//! The disk cap: what the disk tier holds, room reserved before anything
//! is written, and least-recently-used eviction.
//!
//! # Accounting
//!
//! `used` is the bytes of the stored inputs and results (every blob
//! published through [`super::capped::CappedStore`]); `reserved` is room
//! promised to writes not yet published: an upload's declared length from
//! its creation until its input is published or the upload ends, and an
//! operation's output estimate while it runs. A reservation is admitted
//! while `used + reserved` stays under the *hard limit* — [`HARD_SLACK`]
//! above `disk_cap` — and wakes the evictor as soon as it passes `disk_cap`
//! itself. Past the hard limit a reservation waits for the evictor; when
//! the evictor finds nothing more it may evict (everything left is in use),
//! the reservation is refused ([`CapError`], `507 disk-cap-exceeded`).
//!
//! # Order
//!
//! | tree           | key                             | value                                  |
//! |----------------|---------------------------------|----------------------------------------|
//! | `disk_access`  | blob name (tag byte ‖ 32 bytes) | format 1 ‖ seq ‖ length ‖ last use (u64 BE each) |
//! | `disk_lru`     | seq (u64 BE) ‖ blob name        | empty                                  |
//! | `disk_totals`  | `used`                          | u64 BE                                 |
//!
//! The tag byte is 0 for an input, 1 for a result. A blob's seq grows with
//! each use; eviction walks `disk_lru` from the smallest. A hit does not
//! write sled: it notes the use in memory ([`DiskCap::touch`]) and a
//! background task writes the batch once a second (and before every
//! eviction pass, and at shutdown), so a restart finds the order as it was
//! up to the last second — and serves at once, reading only `used`.
//! Publication and deletion change the three trees in one transaction.
//!
//! # What is never evicted
//!
//! Uploads in progress live in staging, outside this index. A blob with a
//! [`Lease`] — a result being read, the input of an operation that runs —
//! is skipped, as is one the installed [`DiskCap::set_may_evict`] predicate
//! refuses: the hook for a tier that must confirm a copy elsewhere (S3)
//! before the local one may go. A lease taken while a blob is being
//! evicted fails, and the blob reads as missing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sled::transaction::Transactional;
use tokio::sync::Notify;
use upcache_protocol::{InputHash, Key};

use super::blob::BlobName;
use super::meta::{Meta, MetaError};
use crate::clock::SharedClock;
use crate::metrics;

/// How far above `disk_cap` reservations may reach while the evictor
/// catches up: a tenth of the cap.
pub const HARD_SLACK: u64 = 10;
/// Longest a reservation waits for the evictor to make room.
const ADMIT_WAIT: Duration = Duration::from_secs(30);
/// How often noted uses are written to the order.
const TOUCH_FLUSH: Duration = Duration::from_secs(1);

/// A reservation that could not be admitted.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("{need} bytes do not fit in a disk cap of {cap} bytes")]
    TooLarge { need: u64, cap: u64 },
    #[error("no room for {need} bytes under the disk cap of {cap}: {busy} bytes are in use and cannot be evicted")]
    NoRoom { need: u64, cap: u64, busy: u64 },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Decides whether a blob may be evicted (see the module doc).
pub type MayEvict = Arc<dyn Fn(BlobName) -> bool + Send + Sync>;
/// Told of each evicted blob, after its bytes are gone.
pub type OnEvicted = Arc<dyn Fn(BlobName) + Send + Sync>;

#[derive(Default)]
struct State {
    used: u64,
    reserved: u64,
    /// Reservations of uploads, by upload id.
    uploads: HashMap<Key, u64>,
    leases: HashMap<BlobName, usize>,
    /// Being evicted: no new lease.
    doomed: HashSet<BlobName>,
    /// Uses not yet written: seq and time.
    pending: HashMap<BlobName, (u64, u64)>,
    /// Bytes reservations are waiting for.
    waiting: u64,
    /// Eviction passes finished, and whether the last ended short of its
    /// target.
    passes: u64,
    stuck: bool,
}

/// The disk tier's accounting and eviction order.
pub struct DiskCap {
    /// `(disk_cap, hard limit)`, if there is a cap.
    limit: Option<(u64, u64)>,
    meta: Meta,
    access: sled::Tree,
    order: sled::Tree,
    totals: sled::Tree,
    clock: SharedClock,
    state: Mutex<State>,
    /// Room was freed or a pass ended.
    progress: Notify,
    /// The evictor should look.
    wake: Notify,
    seq: AtomicU64,
    may_evict: RwLock<Option<MayEvict>>,
    on_evicted: RwLock<Option<OnEvicted>>,
}

impl std::fmt::Debug for DiskCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCap")
            .field("limit", &self.limit)
            .finish()
    }
}

/// A blob held in use: it is not evicted until dropped.
pub struct Lease {
    cap: Arc<DiskCap>,
    name: BlobName,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = self.cap.lock();
        if let Some(n) = st.leases.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                st.leases.remove(&self.name);
            }
        }
    }
}

/// Room reserved for a write; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    cap: Arc<DiskCap>,
    bytes: u64,
}

impl Reservation {
    /// Keeps the reserved bytes counted after the reservation is gone: the
    /// caller books them elsewhere (an upload's reservation) and gives them
    /// back itself.
    fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.cap.give_back(self.bytes);
        }
    }
}

fn name_bytes(name: BlobName) -> [u8; 33] {
    let mut out = [0u8; 33];
    let (tag, bytes) = match name {
        BlobName::Input(h) => (0, h.0),
        BlobName::Result(k) => (1, k.0),
    };
    out[0] = tag;
    out[1..].copy_from_slice(&bytes);
    out
}

fn name_of(bytes: &[u8]) -> Option<BlobName> {
    let id: [u8; 32] = bytes.get(1..33)?.try_into().ok()?;
    match bytes.first()? {
        0 => Some(BlobName::Input(InputHash(id))),
        1 => Some(BlobName::Result(Key(id))),
        _ => None,
    }
}

fn order_key(seq: u64, name: BlobName) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&name_bytes(name));
    k
}

/// `(seq, length, last use)` of a blob in the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Access {
    seq: u64,
    length: u64,
    last_used: u64,
}

impl Access {
    fn encode(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[0] = 1;
        b[1..9].copy_from_slice(&self.seq.to_be_bytes());
        b[9..17].copy_from_slice(&self.length.to_be_bytes());
        b[17..25].copy_from_slice(&self.last_used.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self, MetaError> {
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().expect("8 bytes"));
        if b.len() != 25 || b[0] != 1 {
            return Err(MetaError::Corrupt("disk access record".into()));
        }
        Ok(Self {
            seq: u(1..9),
            length: u(9..17),
            last_used: u(17..25),
        })
    }
}

fn tx_err<E>(e: sled::transaction::TransactionError<E>) -> MetaError
where
    MetaError: From<E>,
{
    match e {
        sled::transaction::TransactionError::Abort(e) => e.into(),
        sled::transaction::TransactionError::Storage(e) => MetaError::Sled(e),
    }
}

impl DiskCap {
    /// Opens the order in `meta`'s database; `cap` is `disk_cap`. Reads
    /// only the total and the newest seq. Blocking.
    pub fn open(meta: &Meta, cap: Option<u64>, clock: SharedClock) -> Result<Arc<Self>, MetaError> {
        let access = meta.tree("disk_access")?;
        let order = meta.tree("disk_lru")?;
        let totals = meta.tree("disk_totals")?;
        let used = totals
            .get("used")?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let seq = order.last()?.map_or(0, |(k, _)| {
            u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
        });
        metrics::DISK_USED.set(used);
        Ok(Arc::new(Self {
            limit: cap.map(|c| (c, c + (c / HARD_SLACK).max(1))),
            meta: meta.clone(),
            access,
            order,
            totals,
            clock,
            state: Mutex::new(State {
                used,
                ..State::default()
            }),
            progress: Notify::new(),
            wake: Notify::new(),
            seq: AtomicU64::new(seq + 1),
            may_evict: RwLock::default(),
            on_evicted: RwLock::default(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("disk cap lock")
    }

    /// `(disk_cap, hard limit)`, if there is a cap.
    pub fn limit(&self) -> Option<(u64, u64)> {
        self.limit
    }

    /// Bytes of stored blobs, and bytes reserved.
    pub fn usage(&self) -> (u64, u64) {
        let st = self.lock();
        (st.used, st.reserved)
    }

    /// Installs the predicate every eviction candidate must pass.
    pub fn set_may_evict(&self, f: MayEvict) {
        *self.may_evict.write().expect("hook lock") = Some(f);
    }

    /// Installs what is told of each eviction.
    pub fn set_on_evicted(&self, f: OnEvicted) {
        *self.on_evicted.write().expect("hook lock") = Some(f);
    }

    /// Reserves `bytes` for upload `id` until [`DiskCap::release_upload`];
    /// a second reservation for the same id is a no-op.
    pub async fn reserve_upload(self: &Arc<Self>, id: Key, bytes: u64) -> Result<(), CapError> {
        if self.lock().uploads.contains_key(&id) {
            return Ok(());
        }
        let r = self.reserve(bytes).await?;
        let mut st = self.lock();
        if st.uploads.insert(id, bytes).is_some() {
            drop(st);
            return Ok(()); // a concurrent call won; `r` gives ours back
        }
        r.keep();
        Ok(())
    }

    /// Restores the reservation of an upload found in progress at start-up,
    /// without waiting for room (its bytes may be on disk already).
    pub fn restore_upload(&self, id: Key, bytes: u64) {
        let mut st = self.lock();
        if st.uploads.insert(id, bytes).is_none() {
            st.reserved += bytes;
            metrics::DISK_RESERVED.set(st.reserved);
        }
    }

    /// Gives back the reservation of upload `id`, if it has one.
    pub fn release_upload(&self, id: &Key) {
        let bytes = self.lock().uploads.remove(id);
        if let Some(b) = bytes {
            self.give_back(b);
        }
    }

    fn give_back(&self, bytes: u64) {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(bytes);
        metrics::DISK_RESERVED.set(st.reserved);
        drop(st);
        self.progress.notify_waiters();
    }

    /// Reserves `bytes`, waiting for the evictor if they do not fit under
    /// the hard limit now.
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, CapError> {
        let admitted = |st: &mut State| {
            st.reserved += bytes;
            metrics::DISK_RESERVED.set(st.reserved);
            Reservation {
                cap: self.clone(),
                bytes,
            }
        };
        let Some((cap, hard)) = self.limit else {
            return Ok(admitted(&mut self.lock()));
        };
        if bytes > cap {
            metrics::DISK_CAP_REFUSALS.inc();
            return Err(CapError::TooLarge { need: bytes, cap });
        }
        let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
        let mut since: Option<u64> = None;
        let outcome: Result<(), u64> = loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.used + st.reserved + bytes <= hard {
                    if since.is_some() {
                        st.waiting -= bytes;
                    }
                    let r = admitted(&mut st);
                    if st.used + st.reserved > cap {
                        self.wake.notify_one();
                    }
                    return Ok(r);
                }
                match since {
                    None => {
                        st.waiting += bytes;
                        since = Some(st.passes);
                    }
                    // A pass that began after we asked ended short.
                    Some(p) if st.passes > p + 1 && st.stuck => {
                        break Err(st.used + st.reserved);
                    }
                    Some(_) => {}
                }
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let st = self.lock();
                break Err(st.used + st.reserved);
            }
        };
        self.lock().waiting -= bytes;
        metrics::DISK_CAP_REFUSALS.inc();
        let busy = outcome.err().unwrap_or(0);
        Err(CapError::NoRoom {
            need: bytes,
            cap,
            busy,
        })
    }

    /// Holds `name` in use, noting the use; `None` while it is being
    /// evicted (it then reads as missing).
    pub fn lease(self: &Arc<Self>, name: BlobName) -> Option<Lease> {
        let mut st = self.lock();
        if st.doomed.contains(&name) {
            return None;
        }
        *st.leases.entry(name).or_default() += 1;
        drop(st);
        self.touch(name);
        Some(Lease {
            cap: self.clone(),
            name,
        })
    }

    /// Whether `name` is held in use.
    pub fn leased(&self, name: BlobName) -> bool {
        self.lock().leases.contains_key(&name)
    }

    /// Notes a use of `name`, written to the order later.
    pub fn touch(&self, name: BlobName) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        self.lock().pending.insert(name, (seq, now));
    }

    /// When `name` was last used, if it is in the order. Blocking.
    pub fn last_used(&self, name: BlobName) -> Result<Option<u64>, MetaError> {
        if let Some(&(_, t)) = self.lock().pending.get(&name) {
            return Ok(Some(t));
        }
        Ok(self.access_of(name)?.map(|a| a.last_used))
    }

    fn access_of(&self, name: BlobName) -> Result<Option<Access>, MetaError> {
        self.access
            .get(name_bytes(name))?
            .map(|v| Access::decode(&v))
            .transpose()
    }

    /// Records a published blob of `length` bytes as just used. Blocking.
    pub fn added(&self, name: BlobName, length: u64) -> Result<(), MetaError> {
        self.meta.check_room()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let key = name_bytes(name);
        let new = Access {
            seq,
            length,
            last_used: now,
        };
        let old = (&self.access, &self.order, &self.totals)
            .transaction(|(access, order, totals)| {
                let old = access
                    .insert(&key[..], &new.encode()[..])?
                    .map(|v| Access::decode(&v))
                    .transpose()
                    .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                if let Some(o) = &old {
                    order.remove(&order_key(o.seq, name)[..])?;
                }
                order.insert(&order_key(seq, name)[..], &[][..])?;
                let used = totals
                    .get("used")?
                    .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                let used = used - old.map_or(0, |o| o.length) + length;
                totals.insert("used", &used.to_be_bytes()[..])?;
                Ok(old)
            })
            .map_err(tx_err)?;
        let mut st = self.lock();
        st.used = st.used - old.map_or(0, |o| o.length) + length;
        st.pending.remove(&name);
        metrics::DISK_USED.set(st.used);
        if self
            .limit
            .is_some_and(|(cap, _)| st.used + st.reserved > cap)
        {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Forgets a deleted blob; returns its length if it was in the order.
    /// Blocking.
    pub fn removed(&self, name: BlobName) -> Result<Option<u64>, MetaError> {
        self.meta.check_room()?;
        let key = name_bytes(name);
        let old = (&self.access, &self.order, &self.totals)
            .transaction(|(access, order, totals)| {
                let Some(old) = access.remove(&key[..])? else {
                    return Ok(None);
                };
                let old = Access::decode(&old)
                    .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                order.remove(&order_key(old.seq, name)[..])?;
                let used = totals
                    .get("used")?
                    .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                totals.insert("used", &used.saturating_sub(old.length).to_be_bytes()[..])?;
                Ok(Some(old))
            })
            .map_err(tx_err)?;
        let mut st = self.lock();
        st.pending.remove(&name);
        if let Some(o) = old {
            st.used = st.used.saturating_sub(o.length);
            metrics::DISK_USED.set(st.used);
        }
        drop(st);
        self.progress.notify_waiters();
        Ok(old.map(|o| o.length))
    }

    /// Writes the noted uses to the order in one transaction. Blocking.
    pub fn flush_touches(&self) -> Result<usize, MetaError> {
        let pending = std::mem::take(&mut self.lock().pending);
        if pending.is_empty() {
            return Ok(0);
        }
        self.meta.check_room()?;
        let n = pending.len();
        (&self.access, &self.order)
            .transaction(|(access, order)| {
                for (&name, &(seq, now)) in &pending {
                    let key = name_bytes(name);
                    // A blob deleted meanwhile stays deleted.
                    let Some(old) = access.get(&key[..])? else {
                        continue;
                    };
                    let old = Access::decode(&old)
                        .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                    if old.seq >= seq {
                        continue;
                    }
                    order.remove(&order_key(old.seq, name)[..])?;
                    order.insert(&order_key(seq, name)[..], &[][..])?;
                    let new = Access {
                        seq,
                        last_used: now,
                        ..old
                    };
                    access.insert(&key[..], &new.encode()[..])?;
                }
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(n)
    }
}

mod evict;
#[cfg(test)]
mod tests;
