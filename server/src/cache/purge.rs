//! Purge: the admin's way to remove entries — by key, by operation name,
//! by age, or everything (stored inputs too) — through the same path as
//! `DELETE /v1/ops/{key}`, so every tier the store has follows.
//!
//! Entries in flight are left alone and counted: one whose operation is
//! running (`processing`), and one whose upload has a request writing
//! right now. Cancelling them would race the request or the worker; a
//! purge run again once they settled takes them. An idle upload is
//! purged like `DELETE` does: its staged bytes go, and a client resuming it
//! is told the entry is gone. Matching entries are found by reading every
//! entry: purges are rare, operator-run, and not on any hot path. With a
//! remote tier, a purge by key, by operation or of everything first records
//! the results in the bucket this node does not know, so that other nodes'
//! results go too; a purge by age reaches this node's entries only (an
//! object's age is not in its metadata).

use std::sync::Arc;

use upcache_protocol::admin::{PurgeReport, PurgeRequest};
use upcache_protocol::{Key, Operation, State};

use super::Core;
use crate::error::Result;
use crate::metrics;
use crate::store::blob::{BlobName, BlobStore};
use crate::store::meta::{BlobRef, EntryRecord};
use crate::upload::UploadId;

impl Core {
    /// Records every result in the remote tier that this node does not know
    /// (other nodes' results: see [`Core::adopt`]), so that a purge by
    /// operation or of everything reaches them too. One `HEAD` per unknown
    /// result; a remote tier that cannot list leaves the purge to this
    /// node's own entries, and says so in the log.
    async fn adopt_bucket(&self) {
        let names = match self.inputs.blobs().list("results/").await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "purge: the remote tier could not list its results; purging this node's entries only");
                return;
            }
        };
        for name in names {
            if let BlobName::Result(key) = name {
                if let Err(e) = self.adopt_unknown(&key).await {
                    tracing::warn!(key = %key, error = %e, "purge: a result in the remote tier could not be read");
                }
            }
        }
    }

    /// Purges what `req` selects (checked valid by the caller).
    pub async fn purge(self: &Arc<Self>, req: &PurgeRequest) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let matches = |entry: &EntryRecord| {
            if req.all {
                return true;
            }
            if let Some(before) = req.before {
                return entry.created < before;
            }
            if let Some(name) = &req.operation {
                return Operation::from_json(&entry.operation).is_ok_and(|op| op.name() == name);
            }
            false
        };
        if let Some(key) = &req.key {
            self.adopt_unknown(key).await?;
        } else if (req.all || req.operation.is_some()) && self.inputs.blobs().has_remote() {
            self.adopt_bucket().await;
        }
        let selected: Vec<(Key, EntryRecord)> = match &req.key {
            Some(key) => self
                .meta
                .entry(key)?
                .map(|e| (*key, e))
                .into_iter()
                .collect(),
            None => self
                .meta
                .entries()
                .filter_map(|item| match item {
                    Ok((k, e)) if matches(&e) => Some(Ok((k, e))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::result::Result<_, _>>()?,
        };
        for (key, entry) in selected {
            let running = self.running.lock().expect("set lock").contains(&key);
            let busy = entry.state == State::Processing
                || running
                || (entry.state == State::Uploading && self.uploads.active(UploadId(key)));
            if busy {
                report.in_flight += 1;
                continue;
            }
            let bytes = self.owned_bytes(&key, &entry).await;
            if self.delete_entry(key).await?.is_some() {
                report.entries += 1;
                report.bytes += bytes;
                metrics::PURGED_ENTRIES.inc();
            }
        }
        if req.all {
            self.purge_inputs(&mut report).await?;
        }
        tracing::info!(
            entries = report.entries,
            inputs = report.inputs,
            bytes = report.bytes,
            in_flight = report.in_flight,
            "purged"
        );
        Ok(report)
    }

    /// Bytes an entry holds on disk of its own: its result, or the staged
    /// bytes of its upload.
    async fn owned_bytes(&self, key: &Key, entry: &EntryRecord) -> u64 {
        match (&entry.result, entry.state) {
            (Some(r), _) if r.blob == BlobRef::Result => r.length,
            (_, State::Uploading) => {
                let path = self.inputs.staging().path(key);
                tokio::fs::metadata(path).await.map_or(0, |m| {
                    use std::os::unix::fs::MetadataExt;
                    // Sparse: what is allocated, not the length.
                    (m.blocks() * 512).min(m.len())
                })
            }
            _ => 0,
        }
    }

    /// Deletes every stored input no operation is using.
    async fn purge_inputs(self: &Arc<Self>, report: &mut PurgeReport) -> Result<()> {
        for name in self.inputs.blobs().list("inputs/").await? {
            let BlobName::Input(hash) = name else {
                continue;
            };
            if self.cap.leased(name) {
                // An operation reads it, or a result of it is being served.
                report.in_flight += 1;
                continue;
            }
            let length = self
                .inputs
                .blobs()
                .head(name)
                .await?
                .map_or(0, |h| h.length);
            if self.inputs.blobs().delete(name).await? {
                report.inputs += 1;
                report.bytes += length;
            }
            let core = self.clone();
            tokio::task::spawn_blocking(move || core.inputs.forget(&hash)).await??;
        }
        Ok(())
    }
}
