//! The metadata schema, in sled.
//!
//! # Layout
//!
//! | tree      | key                         | value                                   |
//! |-----------|-----------------------------|-----------------------------------------|
//! | `entries` | operation key (32 bytes)    | [`EntryRecord`], JSON, format `fv` 2 (1: release 0.1, migrated at start-up) |
//! | `uploads` | upload id (32 bytes)        | [`UploadRecord`] but its digest, binary, format byte 2 |
//! | `cvs`     | upload id ‖ block (u64 BE)  | the block's chaining value (32 bytes)   |
//! | `files`   | upload id (32 bytes)        | [`FileRecord`], JSON with format `fv`   |
//! | `write_behind` | blob name              | a job for the remote tier ([`super::write_behind`]) |
//! | `pins`    | operation key (32 bytes)    | empty: the result is pinned in the memory tier |
//!
//! Records of stored inputs are kept beside the inputs ([`super::blob`]).
//! Releases before that kept them here, in an `inputs` tree (input BLAKE3 →
//! [`InputRecord`], 48 bytes); [`Meta::legacy_inputs`] hands them over once.
//!
//! An entry in state `uploading` has an upload record under the same id (the
//! `/v1` API uses the key as upload id). A file upload (tus) in state
//! `receiving` has one under its random id. Changes that span trees run in one
//! sled transaction. sled point reads are in-memory lookups for the hot set
//! (the page cache is bounded by `db_cache`), so callers may make them on the
//! async runtime; `flush` (an fsync) must run on a blocking thread.
//!
//! An upload's commutative digest is not stored: it is the sum of its
//! received blocks' contributions, and their chaining values are in `cvs`,
//! committed with the bits. [`Meta`] keeps each upload's digest in memory,
//! adds the blocks committed since, and derives it again from `cvs` after a
//! restart. Stored, it made every upload record 2 KiB, rewritten with every
//! commit and tail; sled's log-structured file could not reclaim that churn
//! as fast as it came while the long-lived trees grew beside it (in the
//! soak benchmark the file reached 25 times its live records in 150 s, and
//! kept growing).
//!
//! Every write first makes sure sled has room ([`Room`]): on a full disk it
//! fails with [`MetaError::NoSpace`] before sled sees it, since sled itself
//! would stop taking writes until a restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use roaring::RoaringBitmap;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use upcache_protocol::{Digest, InputHash, Key};

use super::space::Room;
use crate::clock::SharedClock;

/// Storage failure.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
    /// Refused before sled saw it: see [`Room`].
    #[error("metadata database: no room for the write: {0}")]
    NoSpace(std::io::Error),
}

impl MetaError {
    /// Whether the write failed for lack of room (refused by [`Room`], or
    /// sled's own write).
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::NoSpace(_) => true,
            Self::Sled(sled::Error::Io(e)) => super::space::is_no_space(e),
            _ => false,
        }
    }
}

type Result<T, E = MetaError> = std::result::Result<T, E>;

pub use super::records::{
    BlobRef, Concat, EntryRecord, FileRecord, FileState, InputRecord, ResultRecord, UploadRecord,
};

/// One block to record as received.
#[derive(Debug, Clone, Copy)]
pub struct BlockCommit {
    pub upload: Key,
    /// The epoch of the upload the block was written for.
    pub epoch: u64,
    pub block: u64,
    pub cv: [u8; 32],
}

/// What an entry update does to the entry's upload record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadChange {
    Keep,
    /// The upload is over (verified or failed): remove its record.
    End,
    /// A new upload starts: a fresh, empty record.
    Start,
}

fn cv_key(upload: &Key, block: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(upload.as_bytes());
    k[32..].copy_from_slice(&block.to_be_bytes());
    k
}

fn abort(e: MetaError) -> ConflictableTransactionError<MetaError> {
    ConflictableTransactionError::Abort(e)
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<MetaError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => MetaError::Sled(e),
    })
}

/// A record that owns the upload record under its id: an entry (`/v1`) or
/// a file upload (tus).
trait Owner: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self>;
    /// Notes a change at `now`.
    fn stamp(&mut self, now: u64);
}

impl Owner for EntryRecord {
    fn encode(&self) -> Vec<u8> {
        EntryRecord::encode(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        EntryRecord::decode(bytes)
    }
    fn stamp(&mut self, now: u64) {
        self.updated = now;
    }
}

impl Owner for FileRecord {
    fn encode(&self) -> Vec<u8> {
        FileRecord::encode(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        FileRecord::decode(bytes)
    }
    fn stamp(&mut self, now: u64) {
        self.touched = now;
    }
}

/// The metadata database.
#[derive(Clone)]
pub struct Meta {
    db: sled::Db,
    entries: sled::Tree,
    uploads: sled::Tree,
    cvs: sled::Tree,
    inputs: sled::Tree,
    files: sled::Tree,
    pins: sled::Tree,
    room: Arc<Room>,
    /// What records are stamped with.
    clock: SharedClock,
    /// The digests of uploads, as far as they were derived.
    digests: Arc<Mutex<HashMap<Key, KnownDigest>>>,
}

/// An upload's digest over the blocks `covered`, of the upload `epoch`.
#[derive(Debug, Clone)]
struct KnownDigest {
    epoch: u64,
    covered: RoaringBitmap,
    digest: Digest,
}

/// Uploads whose digests are kept at most; past it the memory forgets them
/// all (each is derived again when next read).
const KNOWN_DIGESTS: usize = 4096;

impl Meta {
    /// Opens (or creates) the database in `dir`; records are stamped with
    /// the time of `clock`.
    pub fn open(dir: &Path, cache_bytes: u64, clock: SharedClock) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(Self {
            room: Arc::new(Room::open(&dir.join("db"))),
            entries: db.open_tree("entries")?,
            uploads: db.open_tree("uploads")?,
            cvs: db.open_tree("cvs")?,
            inputs: db.open_tree("inputs")?,
            files: db.open_tree("files")?,
            pins: db.open_tree("pins")?,
            db,
            clock,
            digests: Arc::default(),
        })
    }

    /// Refuses a write when sled would find the disk full. Blocking (see
    /// [`Room::check`]); writes are made off the runtime anyway.
    fn room(&self) -> Result<()> {
        self.room.check().map_err(MetaError::NoSpace)
    }

    /// Refuses a write when sled would find the disk full, for the other
    /// trees of this database ([`super::cap`], [`super::deadlines`]).
    /// Blocking.
    pub fn check_room(&self) -> Result<()> {
        self.room()
    }

    /// A tree of this database, for the schemas kept beside this one.
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes every change so far durable (fsync). Blocking.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The write-behind queue to a remote tier, kept in this database
    /// (its own tree: see [`super::write_behind`]). Blocking.
    pub fn write_behind(&self) -> Result<super::write_behind::WriteBehind> {
        Ok(super::write_behind::WriteBehind::open(&self.db)?)
    }

    pub fn entry(&self, key: &Key) -> Result<Option<EntryRecord>> {
        self.entries
            .get(key.as_bytes())?
            .map(|v| EntryRecord::decode(&v))
            .transpose()
    }

    pub fn upload(&self, id: &Key) -> Result<Option<UploadRecord>> {
        let Some(bytes) = self.uploads.get(id.as_bytes())? else {
            return Ok(None);
        };
        let mut rec = UploadRecord::decode(&bytes)?;
        rec.digest = self.digest_of(id, &rec)?;
        Ok(Some(rec))
    }

    /// The digest of the blocks `rec` says are received: the one known for
    /// the upload, plus the contributions of the blocks committed since
    /// (their chaining values read from `cvs`). The contributions are
    /// computed outside the lock; a block whose chaining value is gone (the
    /// upload was removed or started again meanwhile) leaves the digest
    /// unknown, and the next read derives it again.
    fn digest_of(&self, id: &Key, rec: &UploadRecord) -> Result<Digest> {
        let known = {
            let digests = self.digests.lock().expect("digests lock");
            let known = digests
                .get(id)
                .filter(|k| k.epoch == rec.epoch && k.covered.is_subset(&rec.received));
            // Nothing committed since (the usual read): the digest as known.
            if let Some(k) = known.filter(|k| k.covered.len() == rec.received.len()) {
                return Ok(k.digest.clone());
            }
            known.cloned()
        };
        let mut known = known.unwrap_or_else(|| KnownDigest {
            epoch: rec.epoch,
            covered: RoaringBitmap::new(),
            digest: Digest::new(),
        });
        let mut complete = true;
        for block in &rec.received - &known.covered {
            match self.cvs.get(cv_key(id, u64::from(block)))? {
                Some(cv) if cv.len() == 32 => {
                    let cv: [u8; 32] = cv[..].try_into().expect("32 bytes");
                    known.digest.add(u64::from(block), &cv);
                    known.covered.insert(block);
                }
                _ => complete = false,
            }
        }
        let digest = known.digest.clone();
        if complete {
            let mut digests = self.digests.lock().expect("digests lock");
            if digests.len() >= KNOWN_DIGESTS && !digests.contains_key(id) {
                digests.clear();
            }
            // A concurrent reader may have stored a digest of more blocks.
            let better = digests
                .get(id)
                .is_some_and(|k| k.epoch == known.epoch && k.covered.len() > known.covered.len());
            if !better {
                digests.insert(*id, known);
            }
        }
        Ok(digest)
    }

    /// Forgets the digest of an upload that ended or starts again.
    fn forget_digest(&self, id: &Key) {
        self.digests.lock().expect("digests lock").remove(id);
    }

    pub fn file(&self, id: &Key) -> Result<Option<FileRecord>> {
        self.files
            .get(id.as_bytes())?
            .map(|v| FileRecord::decode(&v))
            .transpose()
    }

    /// Inserts a new file upload with a fresh upload record, atomically.
    pub fn create_file(&self, id: &Key, file: &FileRecord) -> Result<()> {
        self.room()?;
        self.clear_cvs(id)?;
        let now = self.clock.now();
        let fresh = UploadRecord::fresh(now).encode();
        let file = &FileRecord {
            created: now,
            touched: now,
            ..file.clone()
        };
        tx_result(
            (&self.files, &self.uploads).transaction(|(files, uploads)| {
                files.insert(id.as_bytes(), file.encode())?;
                uploads.insert(id.as_bytes(), fresh.clone())?;
                Ok(())
            }),
        )
    }

    /// Atomically changes a file upload, as [`Meta::update`] does entries.
    pub fn update_file(
        &self,
        id: &Key,
        upload: UploadChange,
        change: impl Fn(&FileRecord) -> Option<FileRecord>,
    ) -> Result<Option<(FileRecord, bool)>> {
        self.update_owner(&self.files, id, upload, change)
    }

    /// Removes a file upload and its upload record; returns what was removed.
    pub fn remove_file(&self, id: &Key) -> Result<Option<FileRecord>> {
        self.remove_owner(&self.files, id)
    }

    /// Every file upload, for recovery and expiry sweeps.
    pub fn files(&self) -> impl Iterator<Item = Result<(Key, FileRecord)>> + '_ {
        self.files.iter().map(|item| {
            let (k, v) = item?;
            let key = Key(k
                .as_ref()
                .try_into()
                .map_err(|_| MetaError::Corrupt("file key".into()))?);
            Ok((key, FileRecord::decode(&v)?))
        })
    }

    /// Input records written by earlier releases, to be moved beside the
    /// inputs; then [`Meta::forget_legacy_inputs`].
    pub fn legacy_inputs(&self) -> Result<Vec<(InputHash, InputRecord)>> {
        self.inputs
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let hash: [u8; 32] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| MetaError::Corrupt("input key".into()))?;
                Ok((InputHash(hash), InputRecord::decode(&v)?))
            })
            .collect()
    }

    /// Drops the `inputs` tree of earlier releases, once its records moved.
    pub fn forget_legacy_inputs(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Ok(());
        }
        self.room()?;
        self.inputs.clear()?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes an input record the way releases before 0.2 did (for tests of
    /// the migration).
    #[cfg(test)]
    pub fn put_legacy_input(&self, hash: &InputHash, input: &InputRecord) -> Result<()> {
        self.inputs
            .insert(hash.as_bytes(), input.encode().as_slice())?;
        Ok(())
    }

    /// Inserts `entry` unless one exists; with `upload`, a fresh upload record
    /// goes in alongside, atomically. Returns the entry now stored and whether
    /// it was created.
    pub fn create(
        &self,
        key: &Key,
        entry: &EntryRecord,
        upload: bool,
    ) -> Result<(EntryRecord, bool)> {
        self.room()?;
        if upload {
            self.clear_cvs(key)?;
        }
        let now = self.clock.now();
        let fresh = UploadRecord::fresh(now).encode();
        let entry = &EntryRecord {
            created: now,
            updated: now,
            ..entry.clone()
        };
        tx_result(
            (&self.entries, &self.uploads).transaction(|(entries, uploads)| {
                if let Some(existing) = entries.get(key.as_bytes())? {
                    return Ok((EntryRecord::decode(&existing).map_err(abort)?, false));
                }
                entries.insert(key.as_bytes(), entry.encode())?;
                if upload {
                    uploads.insert(key.as_bytes(), fresh.clone())?;
                }
                Ok((entry.clone(), true))
            }),
        )
    }

    /// Atomically changes an entry: `change` sees the current record and
    /// returns the new one, or `None` to leave it alone. `upload` says what
    /// happens to the upload record in the same transaction. Returns the
    /// record now stored and whether it changed (`None`: there is no entry).
    pub fn update(
        &self,
        key: &Key,
        upload: UploadChange,
        change: impl Fn(&EntryRecord) -> Option<EntryRecord>,
    ) -> Result<Option<(EntryRecord, bool)>> {
        self.update_owner(&self.entries, key, upload, change)
    }

    /// Whether the result of `key` is pinned in the memory tier.
    pub fn pinned(&self, key: &Key) -> Result<bool> {
        Ok(self.pins.contains_key(key.as_bytes())?)
    }

    /// Pins (`true`) or unpins the result of `key`; whether that changed
    /// anything. Blocking: durable when it returns.
    pub fn set_pinned(&self, key: &Key, pinned: bool) -> Result<bool> {
        self.room()?;
        let changed = if pinned {
            self.pins.insert(key.as_bytes(), &[])?.is_none()
        } else {
            self.pins.remove(key.as_bytes())?.is_some()
        };
        if changed {
            self.flush()?;
        }
        Ok(changed)
    }

    /// Removes an entry and its upload record; returns what was removed.
    pub fn remove(&self, key: &Key) -> Result<Option<EntryRecord>> {
        self.remove_owner(&self.entries, key)
    }

    /// [`Meta::update`] for a record of `tree` that owns the upload record
    /// under the same id.
    fn update_owner<R: Owner>(
        &self,
        tree: &sled::Tree,
        id: &Key,
        upload: UploadChange,
        change: impl Fn(&R) -> Option<R>,
    ) -> Result<Option<(R, bool)>> {
        self.room()?;
        if upload == UploadChange::Start {
            self.clear_cvs(id)?;
        }
        let fresh = UploadRecord::fresh(self.clock.now()).encode();
        tx_result((tree, &self.uploads).transaction(|(records, uploads)| {
            let Some(bytes) = records.get(id.as_bytes())? else {
                return Ok(None);
            };
            let current = R::decode(&bytes).map_err(abort)?;
            match change(&current) {
                None => Ok(Some((current, false))),
                Some(mut next) => {
                    next.stamp(self.clock.now());
                    records.insert(id.as_bytes(), next.encode())?;
                    match upload {
                        UploadChange::Keep => {}
                        UploadChange::End => drop(uploads.remove(id.as_bytes())?),
                        UploadChange::Start => drop(uploads.insert(id.as_bytes(), fresh.clone())?),
                    }
                    Ok(Some((next, true)))
                }
            }
        }))
        .inspect(|changed| {
            if upload == UploadChange::End && changed.as_ref().is_some_and(|c| c.1) {
                self.forget_digest(id);
            }
        })
    }

    /// Removes a record of `tree`, its upload record and chaining values.
    fn remove_owner<R: Owner>(&self, tree: &sled::Tree, id: &Key) -> Result<Option<R>> {
        self.room()?;
        let removed = tx_result((tree, &self.uploads).transaction(|(records, uploads)| {
            uploads.remove(id.as_bytes())?;
            records
                .remove(id.as_bytes())?
                .map(|v| R::decode(&v))
                .transpose()
                .map_err(abort)
        }))?;
        self.clear_cvs(id)?;
        Ok(removed)
    }

    /// Records a group of received blocks (bits, chaining values, digest) in
    /// one transaction. Blocks of uploads that no longer exist, or already
    /// received, are skipped. Returns each touched upload's new record.
    pub fn commit_blocks(&self, blocks: &[BlockCommit]) -> Result<Vec<(Key, UploadRecord)>> {
        self.room()?;
        let now = self.clock.now();
        tx_result((&self.uploads, &self.cvs).transaction(|(uploads, cvs)| {
            let mut records: Vec<(Key, UploadRecord)> = Vec::new();
            for b in blocks {
                let idx = match records.iter().position(|(k, _)| *k == b.upload) {
                    Some(i) => i,
                    None => {
                        let Some(bytes) = uploads.get(b.upload.as_bytes())? else {
                            continue;
                        };
                        records.push((b.upload, UploadRecord::decode(&bytes).map_err(abort)?));
                        records.len() - 1
                    }
                };
                let rec = &mut records[idx].1;
                if rec.epoch != b.epoch {
                    continue;
                }
                if rec.received.insert(b.block as u32) {
                    cvs.insert(&cv_key(&b.upload, b.block)[..], &b.cv[..])?;
                }
                if rec.tail.is_some_and(|(tb, _)| tb == b.block) {
                    rec.tail = None;
                }
                rec.touched = now;
            }
            for (key, rec) in &records {
                uploads.insert(key.as_bytes(), rec.encode())?;
            }
            Ok(records)
        }))?
        .into_iter()
        .map(|(key, mut rec)| {
            rec.digest = self.digest_of(&key, &rec)?;
            Ok((key, rec))
        })
        .collect()
    }

    /// Records (or clears) the durable partial block of a sequential upload
    /// of `epoch`.
    pub fn set_tail(
        &self,
        id: &Key,
        epoch: u64,
        tail: Option<(u64, u64)>,
    ) -> Result<Option<UploadRecord>> {
        self.room()?;
        let now = self.clock.now();
        let out = self.uploads.fetch_and_update(id.as_bytes(), |old| {
            let mut rec = UploadRecord::decode(old?).ok()?;
            if rec.epoch != epoch {
                return Some(rec.encode());
            }
            if let Some((block, _)) = tail {
                if rec.received.contains(block as u32) {
                    return Some(rec.encode());
                }
            }
            rec.tail = tail.filter(|&(_, len)| len > 0);
            rec.touched = now;
            Some(rec.encode())
        })?;
        drop(out);
        self.upload(id)
    }

    /// Chaining values of blocks `0..count`, in order; `None` if any is missing.
    pub fn cvs(&self, id: &Key, count: u64) -> Result<Option<Vec<[u8; 32]>>> {
        let mut out = Vec::with_capacity(count as usize);
        for item in self.cvs.scan_prefix(id.as_bytes()) {
            let (k, v) = item?;
            let block = u64::from_be_bytes(
                k[32..40]
                    .try_into()
                    .map_err(|_| MetaError::Corrupt("cv key".into()))?,
            );
            if block != out.len() as u64 || v.len() != 32 {
                return Ok(None);
            }
            out.push(v.as_ref().try_into().expect("32 bytes"));
        }
        Ok((out.len() as u64 == count).then_some(out))
    }

    /// The chaining value of each block `0..count` that is stored.
    pub fn cv_list(&self, id: &Key, count: u64) -> Result<Vec<Option<[u8; 32]>>> {
        let mut out = vec![None; count as usize];
        for item in self.cvs.scan_prefix(id.as_bytes()) {
            let (k, v) = item?;
            let block = u64::from_be_bytes(
                k[32..40]
                    .try_into()
                    .map_err(|_| MetaError::Corrupt("cv key".into()))?,
            );
            if let (Some(slot), Ok(cv)) = (out.get_mut(block as usize), v.as_ref().try_into()) {
                *slot = Some(cv);
            }
        }
        Ok(out)
    }

    /// Stores chaining values computed outside the upload path (blocks
    /// hashed again from staging), replacing any stored for those blocks.
    pub fn put_cvs(&self, id: &Key, cvs: &[(u64, [u8; 32])]) -> Result<()> {
        self.room()?;
        let mut batch = sled::Batch::default();
        for (block, cv) in cvs {
            batch.insert(&cv_key(id, *block)[..], &cv[..]);
        }
        self.cvs.apply_batch(batch)?;
        Ok(())
    }

    /// Deletes every chaining value of an upload.
    pub fn clear_cvs(&self, id: &Key) -> Result<()> {
        self.room()?;
        self.forget_digest(id);
        let mut batch = sled::Batch::default();
        for item in self.cvs.scan_prefix(id.as_bytes()).keys() {
            batch.remove(item?);
        }
        self.cvs.apply_batch(batch)?;
        Ok(())
    }

    /// Writes every entry record stored in an earlier format again, in the
    /// current one (run at start-up, before anything else touches them).
    /// Returns how many were rewritten.
    pub fn migrate_entries(&self) -> Result<usize> {
        self.room()?;
        let mut rewritten = 0;
        for item in self.entries.iter() {
            let (k, v) = item?;
            let rec = EntryRecord::decode(&v)?;
            if !rec.is_current() {
                // A record changed since it was read was written in the
                // current format already.
                let _ = self
                    .entries
                    .compare_and_swap(&k, Some(&v), Some(rec.encode()))?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Every entry, for start-up recovery and expiry sweeps.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Key, EntryRecord)>> + '_ {
        self.entries.iter().map(|item| {
            let (k, v) = item?;
            let key = Key(k
                .as_ref()
                .try_into()
                .map_err(|_| MetaError::Corrupt("entry key".into()))?);
            Ok((key, EntryRecord::decode(&v)?))
        })
    }
}

/// Opens a database again right after a handle to it was dropped (tests):
/// sled lets go of its file lock only when its background threads notice,
/// a moment later, so `open` is retried while the lock is held, for up to
/// five seconds.
#[cfg(test)]
pub(crate) fn reopen<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut tries = 0;
    loop {
        match open() {
            Ok(db) => return db,
            Err(e) if tries < 100 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("open the database again: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcache_protocol::{Digest, ProblemType, State};

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("db"), 1 << 20, SharedClock::default()).unwrap();
        (dir, m)
    }

    fn entry() -> EntryRecord {
        EntryRecord::new(
            State::Uploading,
            InputHash::of(b"x"),
            5000,
            "{}".into(),
            1024,
        )
    }

    /// An entry as release 0.1 stored it (format 1, the failure as the wire
    /// problem document), copied from `tests/fixtures/data-0.1.tar.gz`.
    const ENTRY_V1: &str = r#"{"fv":1,"state":"failed","input":"76e1f842e3d3569f8ade912fbad9764ef337ed5941e8904f7c4056a41959ffd0","length":81920,"operation":"{\"op\":\"identity\",\"v\":1}","block_size":16384,"created":1795684877,"updated":1795684877,"error":{"type":"urn:upcache:problem:input-hash-mismatch","title":"The uploaded bytes do not hash to the claimed input hash","status":422,"detail":"the uploaded bytes hash to 143536dba82c94f5f0186031f7abf9fe9478afbcc0a7ffeab9827c2186f26f69, not 76e1f842e3d3569f8ade912fbad9764ef337ed5941e8904f7c4056a41959ffd0; nothing was stored; create the entry again to re-upload"}}"#;

    #[test]
    fn entries_of_format_1_are_rewritten_with_a_stored_failure() {
        let (_d, m) = meta();
        let key = Key([5; 32]);
        m.entries.insert(key.as_bytes(), ENTRY_V1).unwrap();
        m.entries.insert([6; 32], entry().encode()).unwrap();
        assert_eq!(m.migrate_entries().unwrap(), 1, "only the old record");
        assert_eq!(m.migrate_entries().unwrap(), 0, "done once");

        let raw: serde_json::Value =
            serde_json::from_slice(&m.entries.get(key.as_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(raw["fv"], 2);
        assert_eq!(raw["error"]["kind"], "input-hash-mismatch");
        assert!(
            raw["error"].get("type").is_none(),
            "no wire document on disk"
        );
        let rec = m.entry(&key).unwrap().unwrap();
        assert_eq!(rec.state, State::Failed);
        assert_eq!(rec.length, 81920);
        let problem = rec.error.unwrap().to_problem();
        assert_eq!(problem.kind(), Some(ProblemType::InputHashMismatch));
        assert!(problem
            .detail
            .unwrap()
            .starts_with("the uploaded bytes hash to 1435"));
    }

    #[test]
    fn failures_keep_their_members() {
        let p = upcache_protocol::Problem::new(ProblemType::ImageTooLarge, "too big")
            .with("width", 9000)
            .with("height", 9000);
        let f = super::super::records::Failure::from_problem(&p);
        assert_eq!(f.to_problem(), p);
    }

    #[test]
    fn upload_record_round_trips() {
        let mut r = UploadRecord {
            touched: 7,
            tail: Some((3, 100)),
            epoch: 99,
            ..Default::default()
        };
        r.received.insert(0);
        r.received.insert(1);
        r.received.insert(4);
        assert_eq!(UploadRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.prefix(), 2);
        assert!(UploadRecord::decode(&[9, 9]).is_err());
        // The digest is not part of the stored form.
        r.digest.add(0, &[1; 32]);
        assert_eq!(
            UploadRecord::decode(&r.encode()).unwrap().digest,
            Digest::new()
        );
        assert!(r.encode().len() < 64, "{} bytes", r.encode().len());
    }

    #[test]
    fn upload_records_of_format_1_still_decode() {
        // Format 1: the header, the 2 KiB digest inline, the bitmap.
        let mut bitmap = roaring::RoaringBitmap::new();
        bitmap.insert(0);
        bitmap.insert(2);
        let mut v1 = vec![1u8];
        for n in [7u64, 99, 3, 100] {
            v1.extend_from_slice(&n.to_le_bytes());
        }
        v1.extend_from_slice(&[0xab; 2048]);
        bitmap.serialize_into(&mut v1).unwrap();
        let r = UploadRecord::decode(&v1).unwrap();
        assert_eq!((r.touched, r.epoch, r.tail), (7, 99, Some((3, 100))));
        assert_eq!(r.received, bitmap);
        assert!(UploadRecord::decode(&v1[..100]).is_err(), "cut short");
    }

    #[test]
    fn the_digest_is_derived_from_the_chaining_values_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Meta::open(&dir.path().join("db"), 1 << 20, SharedClock::default()).unwrap();
        let key = Key([4; 32]);
        let mut expect = Digest::new();
        {
            let m = open();
            m.create(&key, &entry(), true).unwrap();
            let epoch = m.upload(&key).unwrap().unwrap().epoch;
            for block in [3u64, 0, 7] {
                let cv = [block as u8 + 1; 32];
                expect.add(block, &cv);
                let recs = m
                    .commit_blocks(&[BlockCommit {
                        upload: key,
                        epoch,
                        block,
                        cv,
                    }])
                    .unwrap();
                assert_eq!(recs[0].1.digest, expect, "after block {block}");
            }
            m.set_tail(&key, epoch, Some((1, 10))).unwrap();
            m.flush().unwrap();
            let stored = m.uploads.get(key.as_bytes()).unwrap().unwrap();
            assert!(stored.len() < 100, "a small record: {} bytes", stored.len());
        }
        let m = open();
        let rec = m.upload(&key).unwrap().unwrap();
        assert_eq!(rec.digest, expect, "derived again from cvs");
        assert_eq!(rec.tail, Some((1, 10)));
        // Started again, the upload's digest starts from nothing.
        m.update(&key, UploadChange::Start, |e| Some(e.clone()))
            .unwrap();
        assert_eq!(m.upload(&key).unwrap().unwrap().digest, Digest::new());
    }

    #[test]
    fn create_is_idempotent_and_commits_accumulate() {
        let (_d, m) = meta();
        let key = Key([1; 32]);
        assert!(m.create(&key, &entry(), true).unwrap().1);
        assert!(!m.create(&key, &entry(), true).unwrap().1);
        let epoch = m.upload(&key).unwrap().unwrap().epoch;
        let c = |block| BlockCommit {
            upload: key,
            epoch,
            block,
            cv: [block as u8; 32],
        };
        m.set_tail(&key, epoch, Some((1, 10))).unwrap();
        let stale = BlockCommit {
            epoch: epoch ^ 1,
            ..c(2)
        };
        m.commit_blocks(&[stale]).unwrap();
        assert!(
            !m.upload(&key).unwrap().unwrap().received.contains(2),
            "a stale writer cannot commit"
        );
        let recs = m.commit_blocks(&[c(1), c(0), c(1)]).unwrap();
        assert_eq!(recs[0].1.received.len(), 2);
        assert_eq!(
            recs[0].1.tail, None,
            "the block that completes a tail clears it"
        );
        assert_eq!(m.cvs(&key, 2).unwrap().unwrap()[1], [1; 32]);
        assert_eq!(m.cvs(&key, 3).unwrap(), None);
        let mut expect = Digest::new();
        expect.add(0, &[0; 32]);
        expect.add(1, &[1; 32]);
        assert_eq!(
            m.upload(&key).unwrap().unwrap().digest,
            expect,
            "a repeated block counts once"
        );
    }

    #[test]
    fn update_is_conditional_and_can_end_the_upload() {
        let (_d, m) = meta();
        let key = Key([2; 32]);
        m.create(&key, &entry(), true).unwrap();
        let to_processing = |e: &EntryRecord| {
            (e.state == State::Uploading).then(|| EntryRecord {
                state: State::Processing,
                ..e.clone()
            })
        };
        assert!(
            m.update(&key, UploadChange::End, to_processing)
                .unwrap()
                .unwrap()
                .1
        );
        assert!(
            !m.update(&key, UploadChange::End, to_processing)
                .unwrap()
                .unwrap()
                .1,
            "only one caller wins"
        );
        assert!(m.upload(&key).unwrap().is_none());
        assert!(m
            .update(&Key([3; 32]), UploadChange::Keep, to_processing)
            .unwrap()
            .is_none());
        assert_eq!(m.remove(&key).unwrap().unwrap().state, State::Processing);
        assert!(m.entry(&key).unwrap().is_none());
    }
}
