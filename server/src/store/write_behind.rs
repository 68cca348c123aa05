//! The write-behind queue: what the remote tier still has to be told — a
//! blob to copy up, or one to delete — durable in sled so that a restart
//! resumes it and nothing a client was told is stored is ever dropped.
//!
//! | tree           | key                          | value                                  |
//! |----------------|------------------------------|----------------------------------------|
//! | `write_behind` | [`BlobName::path`] (UTF-8)   | format 1, job (1 put, 2 delete), queued at (u64 BE seconds), then for a put the blob's [`BlobMeta`] as JSON |
//!
//! One record per name: a later job replaces an earlier one (a delete
//! after a put of the same name needs only the delete). A job taken by the
//! worker is removed only if no newer job replaced it meanwhile
//! ([`WriteBehind::done`]), so a put that finishes after a delete of its
//! name is followed by the delete.
//!
//! The whole queue is mirrored in memory (it holds only names) for its
//! depth, its oldest job, and the question "is this blob only local?"
//! that eviction asks.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use serde_json::json;
use tokio::sync::Notify;
use upcache_protocol::InputHash;

use super::blob::{BlobMeta, BlobName, ResultOf};
use super::records::InputRecord;

/// What the remote tier must be told of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Copy the local blob up, described by its metadata.
    Put(BlobMeta),
    /// Delete the remote copy.
    Delete,
}

impl Job {
    fn byte(&self) -> u8 {
        match self {
            Job::Put(_) => 1,
            Job::Delete => 2,
        }
    }

    pub fn is_put(&self) -> bool {
        matches!(self, Job::Put(_))
    }

    pub fn is_delete(&self) -> bool {
        matches!(self, Job::Delete)
    }
}

fn meta_json(m: &BlobMeta) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "length": m.length,
        "blake3": m.blake3.to_hex(),
        "content_type": m.content_type,
        "input": m.input.map(|r| json!({
            "length": r.length,
            "block_size": r.block_size,
            "digest": hex::encode(r.digest),
        })),
        "result": m.result.as_ref().map(|r| json!({
            "input": r.input.to_hex(),
            "input_length": r.input_length,
            "operation": r.operation,
            "is_input": r.is_input,
        })),
    }))
    .expect("metadata serializes")
}

fn meta_of_json(bytes: &[u8]) -> Option<BlobMeta> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let hash = |v: &serde_json::Value| v.as_str()?.parse::<InputHash>().ok();
    let input = match &v["input"] {
        serde_json::Value::Null => None,
        i => Some(InputRecord {
            length: i["length"].as_u64()?,
            block_size: i["block_size"].as_u64()?,
            digest: hex::decode(i["digest"].as_str()?).ok()?.try_into().ok()?,
        }),
    };
    let result = match &v["result"] {
        serde_json::Value::Null => None,
        r => Some(ResultOf {
            input: hash(&r["input"])?,
            input_length: r["input_length"].as_u64()?,
            operation: r["operation"].as_str()?.to_owned(),
            is_input: r["is_input"].as_bool().unwrap_or(false),
        }),
    };
    Some(BlobMeta {
        length: v["length"].as_u64()?,
        blake3: hash(&v["blake3"])?,
        content_type: v["content_type"].as_str()?.to_owned(),
        input,
        result,
    })
}

const FORMAT: u8 = 1;

#[derive(Debug, Clone)]
struct Queued {
    job: Job,
    since: u64,
    /// Which push this is, so that [`WriteBehind::done`] can tell a job
    /// replaced meanwhile.
    seq: u64,
}

/// A job handed to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub name: BlobName,
    pub job: Job,
    /// When the name was first queued (seconds since the epoch).
    pub since: u64,
    seq: u64,
}

#[derive(Debug, Default)]
struct State {
    queued: BTreeMap<BlobName, Queued>,
    in_flight: HashSet<BlobName>,
    next_seq: u64,
}

/// The durable queue of remote writes.
#[derive(Debug)]
pub struct WriteBehind {
    tree: sled::Tree,
    db: sled::Db,
    state: Mutex<State>,
    wake: Notify,
}

fn encode(job: &Job, since: u64) -> Vec<u8> {
    let mut v = vec![FORMAT, job.byte()];
    v.extend_from_slice(&since.to_be_bytes());
    if let Job::Put(meta) = job {
        v.extend_from_slice(&meta_json(meta));
    }
    v
}

fn decode(key: &[u8], value: &[u8]) -> Option<(BlobName, Job, u64)> {
    let name = BlobName::parse(std::str::from_utf8(key).ok()?)?;
    if value.len() < 10 || value[0] != FORMAT {
        return None;
    }
    let since = u64::from_be_bytes(value[2..10].try_into().ok()?);
    let job = match value[1] {
        1 => Job::Put(meta_of_json(&value[10..])?),
        2 => Job::Delete,
        _ => return None,
    };
    Some((name, job, since))
}

impl WriteBehind {
    /// Opens the queue kept in `db`, loading what a previous run left.
    /// Blocking.
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        let tree = db.open_tree("write_behind")?;
        let mut state = State::default();
        for item in tree.iter() {
            let (k, v) = item?;
            match decode(&k, &v) {
                Some((name, job, since)) => {
                    state.next_seq += 1;
                    let seq = state.next_seq;
                    state.queued.insert(name, Queued { job, since, seq });
                }
                None => {
                    tracing::warn!(key = ?String::from_utf8_lossy(&k), "dropping an unreadable write-behind record");
                    tree.remove(k)?;
                }
            }
        }
        Ok(Self {
            tree,
            db: db.clone(),
            state: Mutex::new(state),
            wake: Notify::new(),
        })
    }

    /// Queues `job` for `name`, replacing what was queued for it, and makes
    /// the queue durable before returning. Blocking (an fsync).
    pub fn push(&self, name: BlobName, job: Job, now: u64) -> sled::Result<()> {
        {
            let mut s = self.state.lock().expect("write-behind lock");
            let since = s
                .queued
                .get(&name)
                .filter(|q| q.job.byte() == job.byte())
                .map_or(now, |q| q.since);
            self.tree
                .insert(name.path().as_bytes(), encode(&job, since))?;
            s.next_seq += 1;
            let seq = s.next_seq;
            s.queued.insert(name, Queued { job, since, seq });
        }
        self.db.flush()?;
        self.wake.notify_one();
        Ok(())
    }

    /// Up to `limit` queued jobs that are not being worked on, marked as
    /// being worked on.
    pub fn take(&self, limit: usize) -> Vec<Taken> {
        let mut s = self.state.lock().expect("write-behind lock");
        let taken: Vec<Taken> = s
            .queued
            .iter()
            .filter(|(name, _)| !s.in_flight.contains(*name))
            .take(limit)
            .map(|(name, q)| Taken {
                name: *name,
                job: q.job.clone(),
                since: q.since,
                seq: q.seq,
            })
            .collect();
        for t in &taken {
            s.in_flight.insert(t.name);
        }
        taken
    }

    /// The worker is done with `taken`: removes it from the queue if it
    /// `succeeded` and was not replaced meanwhile; otherwise it stays for a
    /// later round.
    pub fn done(&self, taken: &Taken, succeeded: bool) -> sled::Result<()> {
        let mut s = self.state.lock().expect("write-behind lock");
        s.in_flight.remove(&taken.name);
        let current = s.queued.get(&taken.name).map(|q| q.seq);
        if succeeded && current == Some(taken.seq) {
            s.queued.remove(&taken.name);
            // Not flushed: should the removal be lost, the job runs again,
            // which a put or delete of the same blob allows.
            self.tree.remove(taken.name.path().as_bytes())?;
        } else if current != Some(taken.seq) {
            // Replaced: the new job is due now.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// What is queued for `name`.
    pub fn pending(&self, name: BlobName) -> Option<Job> {
        let s = self.state.lock().expect("write-behind lock");
        s.queued.get(&name).map(|q| q.job.clone())
    }

    /// Whether a put of `name` is queued: its only copy is local.
    pub fn put_pending(&self, name: BlobName) -> bool {
        let s = self.state.lock().expect("write-behind lock");
        s.queued.get(&name).is_some_and(|q| q.job.is_put())
    }

    /// Whether a delete of `name` is queued: the remote copy is dead.
    pub fn delete_pending(&self, name: BlobName) -> bool {
        let s = self.state.lock().expect("write-behind lock");
        s.queued.get(&name).is_some_and(|q| q.job.is_delete())
    }

    /// How many jobs are queued (in flight included).
    pub fn depth(&self) -> usize {
        self.state.lock().expect("write-behind lock").queued.len()
    }

    /// How many jobs are being worked on.
    pub fn in_flight(&self) -> usize {
        self.state
            .lock()
            .expect("write-behind lock")
            .in_flight
            .len()
    }

    /// When the oldest queued job was queued (seconds since the epoch).
    pub fn oldest(&self) -> Option<u64> {
        let s = self.state.lock().expect("write-behind lock");
        s.queued.values().map(|q| q.since).min()
    }

    /// Resolves when a job was queued since the last call.
    pub async fn wait(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcache_protocol::{InputHash, Key};

    fn meta() -> BlobMeta {
        BlobMeta::result(
            InputHash::of(b"result"),
            6,
            "image/webp",
            ResultOf {
                input: InputHash::of(b"b"),
                input_length: 1,
                operation: r#"{"op":"thumbnail"}"#.into(),
                is_input: false,
            },
        )
    }

    fn input_meta() -> BlobMeta {
        BlobMeta::input(
            InputHash::of(b"b"),
            InputRecord {
                length: 1,
                block_size: 1 << 20,
                digest: [9; 32],
            },
        )
    }

    /// Opens the database in `dir`, waiting for a handle just dropped to
    /// let go of it.
    fn db(dir: &std::path::Path) -> sled::Db {
        crate::store::meta::reopen(|| sled::Config::new().path(dir).open())
    }

    #[test]
    fn jobs_survive_a_restart_and_newer_jobs_replace_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = BlobName::Result(Key([1; 32]));
        let b = BlobName::Input(InputHash::of(b"b"));
        {
            let q = WriteBehind::open(&db(dir.path())).unwrap();
            q.push(a, Job::Put(meta()), 100).unwrap();
            q.push(b, Job::Put(input_meta()), 101).unwrap();
            q.push(a, Job::Delete, 102).unwrap();
            assert_eq!(q.depth(), 2);
            assert_eq!(q.oldest(), Some(101));
        }
        let q = WriteBehind::open(&db(dir.path())).unwrap();
        assert_eq!(q.depth(), 2, "the queue is durable");
        assert_eq!(q.pending(a), Some(Job::Delete));
        assert_eq!(
            q.pending(b),
            Some(Job::Put(input_meta())),
            "with its metadata"
        );
    }

    #[test]
    fn a_job_replaced_while_in_flight_stays_queued() {
        let dir = tempfile::tempdir().unwrap();
        let q = WriteBehind::open(&db(dir.path())).unwrap();
        let a = BlobName::Result(Key([2; 32]));
        q.push(a, Job::Put(meta()), 1).unwrap();
        let taken = q.take(8);
        assert_eq!(taken.len(), 1);
        assert!(
            q.take(8).is_empty(),
            "a job in flight is not handed out twice"
        );
        q.push(a, Job::Delete, 2).unwrap();
        q.done(&taken[0], true).unwrap();
        assert_eq!(q.pending(a), Some(Job::Delete), "the delete is still due");
        let taken = q.take(8);
        assert_eq!(taken[0].job, Job::Delete);
        q.done(&taken[0], false).unwrap();
        assert_eq!(q.depth(), 1, "a failed job stays");
        let taken = q.take(8);
        q.done(&taken[0], true).unwrap();
        assert_eq!(q.depth(), 0);
        // A removal is not flushed by itself (see `done`); a clean stop
        // flushes it, as sled's background flusher would within moments.
        q.db.flush().unwrap();
        drop(q);
        let q = WriteBehind::open(&db(dir.path())).unwrap();
        assert_eq!(q.depth(), 0, "done jobs are gone from disk too");
    }
}
