//! Expiry: the sweeper reads the deadlines due now from the deadline index
//! ([`Deadlines`](crate::store::deadlines::Deadlines)), at most a batch per
//! tick, and settles each — gone if its time to live has passed, or given
//! a later deadline if it was used since.
//!
//! | class     | time to live   | starts again when                         | when due                                  |
//! |-----------|----------------|-------------------------------------------|-------------------------------------------|
//! | upload    | `upload_ttl`   | a block or byte arrives                   | the entry and its staged bytes go         |
//! | file      | `upload_ttl`   | a byte arrives                            | tus: a tombstone (`410`), later forgotten |
//! | input     | `input_ttl`    | an upload, an operation or a hit uses it  | the input and its record go               |
//! | failed    | `failure_ttl`  | —                                         | the failed entry is forgotten             |
//! | result    | `result_ttl`   | a read or a hit                           | the entry and its result go               |
//!
//! A TTL of `0` (the default for inputs and results) means none: such
//! deadlines are never set, and one found (the setting changed) is dropped.
//! Anything in use — an upload with a request running, an input leased by
//! an operation — gets a later deadline instead.

use std::sync::Arc;

use upcache_protocol::{InputHash, Key, State};

use super::files::TOMBSTONE_TTL;
use super::Core;
use crate::error::Result;
use crate::metrics;
use crate::store::blob::{BlobName, BlobStore};
use crate::store::deadlines::{Class, Due};
use crate::store::meta::{BlobRef, EntryRecord, FileState};
use crate::upload::UploadId;

/// Most deadlines one tick of the sweeper settles.
pub const SWEEP_BATCH: usize = 256;

impl Core {
    /// One tick of the sweeper: settles at most `limit` deadlines due now.
    /// Returns how many it looked at (`limit` means more may be due).
    pub async fn sweep(self: &Arc<Self>, limit: usize) -> Result<usize> {
        let now = self.config.clock.now();
        let due = self.deadlines.due(now, limit)?;
        for item in &due {
            metrics::SWEEP_ITEMS.inc();
            let next = match self.settle_due(item, now).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(class = ?item.class, error = %e, "expiry failed; tried again later");
                    Some(now + 60)
                }
            };
            match next {
                Some(at) => self.deadlines.set(item.class, &item.id, at.max(now + 1))?,
                None => self.deadlines.clear(item.class, &item.id)?,
            }
        }
        Ok(due.len())
    }

    /// Settles one due deadline; the next one, if the thing is still there
    /// and still has a time to live.
    async fn settle_due(self: &Arc<Self>, item: &Due, now: u64) -> Result<Option<u64>> {
        let key = Key(item.id);
        let entry = match item.class {
            Class::Upload | Class::Failed | Class::Result => self.meta.entry(&key)?,
            _ => None,
        };
        match item.class {
            Class::Upload => {
                let Some(e) = entry.filter(|e| e.state == State::Uploading) else {
                    return Ok(None);
                };
                let ttl = self.config.upload_ttl;
                if self.uploads.active(UploadId(key)) {
                    return Ok(Some(now + ttl));
                }
                let touched = self.meta.upload(&key)?.map_or(e.updated, |u| u.touched);
                if now.saturating_sub(touched) < ttl {
                    return Ok(Some(touched + ttl));
                }
                tracing::info!(key = %key, "upload expired");
                if self.delete_entry(key).await?.is_some() {
                    metrics::UPLOADS_EXPIRED.inc();
                }
                Ok(None)
            }
            Class::Failed => {
                let Some(e) = entry.filter(|e| e.state == State::Failed) else {
                    return Ok(None);
                };
                let until = e.updated + self.config.failure_ttl;
                if now < until {
                    return Ok(Some(until));
                }
                // Only a failure still unchanged goes (a create may have
                // retried it meanwhile).
                let same = self
                    .meta
                    .entry(&key)?
                    .is_some_and(|c| c.state == State::Failed && c.updated == e.updated);
                let gone = same && self.meta.remove(&key)?.is_some();
                if gone {
                    self.notifier.notify(&key);
                    metrics::FAILURES_EXPIRED.inc();
                }
                Ok(None)
            }
            Class::Result => {
                let ttl = self.config.result_ttl;
                let Some(e) = entry.filter(|e| e.state == State::Complete && ttl > 0) else {
                    return Ok(None);
                };
                let last = self.last_use(&key, &e)?;
                if now.saturating_sub(last) < ttl {
                    return Ok(Some(last + ttl));
                }
                tracing::info!(key = %key, "result expired");
                if self.delete_entry(key).await?.is_some() {
                    metrics::RESULTS_EXPIRED.inc();
                }
                Ok(None)
            }
            Class::Input => self.settle_input(InputHash(item.id), now).await,
            Class::File => self.settle_file(key, now).await,
        }
    }

    /// When a complete entry was last used: its completion, or the last
    /// read or hit of its result.
    fn last_use(&self, key: &Key, e: &EntryRecord) -> Result<u64> {
        let name = match e.result.as_ref().map(|r| r.blob) {
            Some(BlobRef::Input) => BlobName::Input(e.input),
            _ => BlobName::Result(*key),
        };
        Ok(self.cap.last_used(name)?.unwrap_or(0).max(e.updated))
    }

    async fn settle_input(self: &Arc<Self>, hash: InputHash, now: u64) -> Result<Option<u64>> {
        let ttl = self.config.input_ttl;
        let name = BlobName::Input(hash);
        if ttl == 0 {
            return Ok(None);
        }
        let Some(last) = self.cap.last_used(name)? else {
            return Ok(None); // not stored any more
        };
        if now.saturating_sub(last) < ttl {
            return Ok(Some(last + ttl));
        }
        if self.cap.leased(name) {
            return Ok(Some(now + ttl));
        }
        tracing::info!(input = %hash, "input expired");
        if self.inputs.blobs().delete(name).await? {
            metrics::INPUTS_EXPIRED.inc();
        }
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.inputs.forget(&hash)).await??;
        Ok(None)
    }

    async fn settle_file(self: &Arc<Self>, id: Key, now: u64) -> Result<Option<u64>> {
        let ttl = self.config.upload_ttl;
        let Some(file) = self.meta.file(&id)? else {
            return Ok(None);
        };
        let touched = match file.state {
            FileState::Receiving if self.uploads.active(UploadId(id)) => {
                return Ok(Some(now + ttl));
            }
            FileState::Receiving => super::files::touched(&file, self.meta.upload(&id)?.as_ref()),
            FileState::Done { .. } => file.touched,
            FileState::Expired => file
                .touched
                .saturating_add(TOMBSTONE_TTL.saturating_sub(ttl)),
        };
        if now.saturating_sub(touched) < ttl {
            return Ok(Some(touched + ttl));
        }
        let receiving = file.state == FileState::Receiving;
        self.expire_file(id, file.state).await?;
        // An expired upload leaves a tombstone, itself due later.
        Ok(receiving.then(|| now + TOMBSTONE_TTL.max(ttl)))
    }

    /// Sets the deadline an entry found at start-up should have and has
    /// not (written by a release without the index, or lost to a crash
    /// between the entry's change and its deadline's). Blocking.
    pub(crate) fn restore_deadline(&self, key: &Key, entry: &EntryRecord) -> Result<()> {
        let (class, ttl) = match entry.state {
            State::Uploading => (Class::Upload, self.config.upload_ttl),
            State::Failed => (Class::Failed, self.config.failure_ttl),
            State::Complete if self.config.result_ttl > 0 => {
                (Class::Result, self.config.result_ttl)
            }
            _ => return Ok(()),
        };
        if !self.deadlines.has(class, key.as_bytes())? {
            self.deadlines
                .set(class, key.as_bytes(), entry.updated + ttl)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use upcache_protocol::{CreateRequest, InputRef, Operation};

    use super::*;
    use crate::clock::{ManualClock, SharedClock};
    use crate::Config;

    #[tokio::test]
    async fn a_tick_settles_at_most_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let config = Config {
            data: dir.path().to_path_buf(),
            clock: SharedClock(clock.clone()),
            upload_ttl: 100,
            ..Config::default()
        };
        let core = Core::open(config).unwrap();
        let op = Operation::parse(&serde_json::json!({"op": "identity"})).unwrap();
        for i in 0..10u8 {
            let req = CreateRequest {
                input: InputRef {
                    blake3: InputHash::of(&[i]),
                    length: 1,
                },
                operation: serde_json::json!({"op": "identity"}),
                block_size: None,
            };
            core.create(&req, &op).await.unwrap();
        }
        assert_eq!(core.sweep(4).await.unwrap(), 0, "nothing due yet");
        clock.advance(Duration::from_secs(100));
        let uploading = || {
            core.meta
                .entries()
                .filter(|e| e.as_ref().unwrap().1.state == State::Uploading)
                .count()
        };
        for (settled, left) in [(4, 6), (4, 2), (2, 0), (0, 0)] {
            assert_eq!(core.sweep(4).await.unwrap(), settled);
            assert_eq!(uploading(), left);
        }
        assert!(core.deadlines.is_empty(), "every deadline settled");
    }
}
