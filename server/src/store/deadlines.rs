//! Deadlines: when each thing with a time to live is next due, in an index
//! ordered by time, so the expiry sweeper reads only what is due — a
//! bounded number per tick — and never scans every entry.
//!
//! | tree            | key                                      | value            |
//! |-----------------|------------------------------------------|------------------|
//! | `deadlines`     | deadline (u64 BE, seconds) ‖ class ‖ id  | empty            |
//! | `deadline_of`   | class ‖ id (32 bytes)                    | deadline (u64 BE) |
//!
//! A deadline is a candidate, not a verdict: the sweeper checks the thing
//! itself when its deadline comes (an upload touched since, a result read
//! since) and sets a later one if it is not due after all. So the hot path
//! never writes here: an upload's block or a result's hit moves nothing.
//! Both trees change in one transaction.

use sled::transaction::Transactional;

use super::meta::{Meta, MetaError};

/// What a deadline is for; the id is the entry's key, the file upload's
/// id or the input's BLAKE3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Class {
    /// An idle `/v1` upload (`upload_ttl`).
    Upload = 0,
    /// A tus file upload, or its tombstone (`upload_ttl`).
    File = 1,
    /// A stored input after its last use (`input_ttl`).
    Input = 2,
    /// A failed entry (`failure_ttl`).
    Failed = 3,
    /// A completed result after its last use (`result_ttl`).
    Result = 4,
}

impl Class {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Upload,
            1 => Self::File,
            2 => Self::Input,
            3 => Self::Failed,
            4 => Self::Result,
            _ => return None,
        })
    }
}

/// One due item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub class: Class,
    pub id: [u8; 32],
    pub deadline: u64,
}

/// The deadline index.
#[derive(Clone)]
pub struct Deadlines {
    meta: Meta,
    by_time: sled::Tree,
    by_item: sled::Tree,
}

fn item_key(class: Class, id: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = class as u8;
    k[1..].copy_from_slice(id);
    k
}

fn time_key(deadline: u64, class: Class, id: &[u8; 32]) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[..8].copy_from_slice(&deadline.to_be_bytes());
    k[8..].copy_from_slice(&item_key(class, id));
    k
}

impl Deadlines {
    /// Opens the index in `meta`'s database.
    pub fn open(meta: &Meta) -> Result<Self, MetaError> {
        Ok(Self {
            by_time: meta.tree("deadlines")?,
            by_item: meta.tree("deadline_of")?,
            meta: meta.clone(),
        })
    }

    /// Sets (or moves) the deadline of `(class, id)`. Blocking.
    pub fn set(&self, class: Class, id: &[u8; 32], deadline: u64) -> Result<(), MetaError> {
        self.meta.check_room()?;
        let item = item_key(class, id);
        (&self.by_time, &self.by_item)
            .transaction(|(by_time, by_item)| {
                if let Some(old) = by_item.insert(&item[..], &deadline.to_be_bytes()[..])? {
                    let old = u64::from_be_bytes(old.as_ref().try_into().unwrap_or([0; 8]));
                    by_time.remove(&time_key(old, class, id)[..])?;
                }
                by_time.insert(&time_key(deadline, class, id)[..], &[][..])?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Whether `(class, id)` has a deadline.
    pub fn has(&self, class: Class, id: &[u8; 32]) -> Result<bool, MetaError> {
        Ok(self.by_item.contains_key(item_key(class, id))?)
    }

    /// Removes the deadline of `(class, id)`, if any. Blocking.
    pub fn clear(&self, class: Class, id: &[u8; 32]) -> Result<(), MetaError> {
        self.meta.check_room()?;
        let item = item_key(class, id);
        (&self.by_time, &self.by_item)
            .transaction(|(by_time, by_item)| {
                if let Some(old) = by_item.remove(&item[..])? {
                    let old = u64::from_be_bytes(old.as_ref().try_into().unwrap_or([0; 8]));
                    by_time.remove(&time_key(old, class, id)[..])?;
                }
                Ok(())
            })
            .map_err(tx_err)
    }

    /// At most `limit` items due by `now`, earliest first. Reads nothing
    /// past them.
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<Due>, MetaError> {
        let end = (now.saturating_add(1)).to_be_bytes();
        let mut out = Vec::new();
        for item in self.by_time.range(..&end[..]).take(limit) {
            let (k, _) = item?;
            let corrupt = || MetaError::Corrupt("deadline key".into());
            if k.len() != 41 {
                return Err(corrupt());
            }
            out.push(Due {
                deadline: u64::from_be_bytes(k[..8].try_into().map_err(|_| corrupt())?),
                class: Class::from_byte(k[8]).ok_or_else(corrupt)?,
                id: k[9..41].try_into().map_err(|_| corrupt())?,
            });
        }
        Ok(out)
    }

    /// How many deadlines are set (for tests and metrics).
    pub fn len(&self) -> usize {
        self.by_item.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_item.is_empty()
    }
}

fn tx_err(e: sled::transaction::TransactionError<MetaError>) -> MetaError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => MetaError::Sled(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Deadlines) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("db"), 1 << 20, Default::default()).unwrap();
        let d = Deadlines::open(&meta).unwrap();
        (dir, d)
    }

    #[test]
    fn due_items_come_earliest_first_and_bounded() {
        let (_dir, d) = index();
        for i in 0..1000u64 {
            // Inserted out of order.
            let t = (i * 7919) % 1000;
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            d.set(Class::Upload, &id, 100 + t).unwrap();
        }
        assert_eq!(d.len(), 1000);
        assert!(d.due(99, 50).unwrap().is_empty(), "nothing before its time");
        let first = d.due(10_000, 10).unwrap();
        assert_eq!(first.len(), 10, "no more than asked");
        assert!(first.windows(2).all(|w| w[0].deadline <= w[1].deadline));
        assert_eq!(first[0].deadline, 100);
        assert_eq!(d.due(149, 1000).unwrap().len(), 50, "exactly those due");
    }

    #[test]
    fn moving_or_clearing_a_deadline_leaves_one_or_none() {
        let (_dir, d) = index();
        let id = [9; 32];
        d.set(Class::Failed, &id, 50).unwrap();
        d.set(Class::Failed, &id, 80).unwrap();
        d.set(Class::Result, &id, 60).unwrap();
        assert_eq!(d.len(), 2, "one per class and id");
        let due = d.due(70, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].class, Class::Result);
        assert_eq!(d.due(80, 10).unwrap().len(), 2);
        d.clear(Class::Failed, &id).unwrap();
        d.clear(Class::Failed, &id).unwrap();
        assert_eq!(d.due(1000, 10).unwrap()[0].class, Class::Result);
        assert!(!d.has(Class::Failed, &id).unwrap());
    }
}
