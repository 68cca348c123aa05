//! Stored inputs: the one path from the staged bytes of a complete upload
//! to a verified input in the blob store, used by `/v1` entries and tus
//! files alike, and the lookup of what is stored.
//!
//! ```text
//!   staging/<upload id> ──chaining values merge to the expected BLAKE3──▶ inputs/<blake3> + record
//!                       └─to another hash──▶ removed (Rejected)
//! ```
//!
//! The blob is published before its record, and a blob without a record is
//! only ever one that was verified, so publication is safe to run again
//! after a crash at any point.

use std::sync::Arc;

use upcache_protocol::{InputHash, Key, Layout};

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::metrics;
use crate::store::blob::{BlobMeta, BlobName, BlobStore, StagedFile};
use crate::store::cap::DiskCap;
use crate::store::capped::CappedStore;
use crate::store::catalog::InputCatalog;
use crate::store::disk::DiskStore;
use crate::store::records::InputRecord;
use crate::store::staging::Staging;
use crate::store::tiers::{RemoteTier, Tiers};
use crate::store::write_behind::WriteBehind;
use crate::upload::Completion;

/// The stored inputs, their records, and the staging their uploads use.
#[derive(Debug, Clone)]
pub struct Inputs {
    blobs: Tiers,
    /// The store under the cap, which the evictor unlinks from.
    disk: Arc<dyn BlobStore>,
    staging: Staging,
    catalog: InputCatalog,
}

/// A local file with a blob's bytes; a copy is deleted when dropped.
#[derive(Debug)]
pub struct LocalFile {
    path: std::path::PathBuf,
    _copy: Option<StagedFile>,
}

impl LocalFile {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// What publication made of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The bytes are the input `hash`, now stored.
    Stored {
        hash: InputHash,
        record: InputRecord,
    },
    /// The bytes hash to `root`, not to the input expected; they are gone.
    Rejected { root: InputHash },
}

impl Inputs {
    /// The inputs of the data directory `root`, counted against `cap`, on
    /// its disk alone or with a remote tier behind it (and the write-behind
    /// queue to it). Blocking.
    pub fn open(
        root: &std::path::Path,
        cap: Arc<DiskCap>,
        clock: SharedClock,
        remote: Option<(RemoteTier, WriteBehind)>,
    ) -> std::io::Result<Self> {
        let staging = Staging::open(root)?;
        let disk: Arc<dyn BlobStore> = Arc::new(DiskStore::open(root)?);
        let local: Arc<dyn BlobStore> = Arc::new(CappedStore::new(disk.clone(), cap));
        let blobs = match remote {
            None => Tiers::local(local, staging.clone(), clock),
            Some((remote, queue)) => {
                Tiers::with_remote(local, staging.clone(), clock, remote, queue)
            }
        };
        Ok(Self {
            blobs,
            disk,
            catalog: InputCatalog::open(root, staging.clone())?,
            staging,
        })
    }

    /// The blob store inputs and results live in: its tiers.
    pub fn blobs(&self) -> &Tiers {
        &self.blobs
    }

    /// The disk store beneath the cap's books, for the evictor alone.
    pub(crate) fn disk(&self) -> &Arc<dyn BlobStore> {
        &self.disk
    }

    /// Forgets the record of an input whose blob is gone (evicted, expired
    /// or purged). Blocking.
    pub(crate) fn forget(&self, hash: &InputHash) -> Result<()> {
        Ok(self.catalog.remove(hash)?)
    }

    /// Where uploads and operation outputs are written first.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// The record of a stored input, if it is stored. Blocking.
    pub fn stored(&self, hash: &InputHash) -> Result<Option<InputRecord>> {
        Ok(self.catalog.get(hash)?)
    }

    /// The record of an input the remote tier holds (published there by
    /// this node or another), from the object's metadata; `None` without a
    /// remote tier, when it lacks the input, or while it is unavailable.
    pub async fn remote_record(&self, hash: &InputHash) -> Result<Option<InputRecord>> {
        if !self.blobs.has_remote() {
            return Ok(None);
        }
        match self.blobs.remote_head(BlobName::Input(*hash)).await {
            Ok(head) => Ok(head.and_then(|h| h.meta).and_then(|m| m.input)),
            Err(e) => {
                tracing::debug!(input = %hash, error = %e, "the remote tier could not say whether it has the input");
                Ok(None)
            }
        }
    }

    /// Makes a stored input local: from the remote tier when the disk lost
    /// it (evicted) or never had it (another node's), with its record.
    /// Its record, or `None` if no tier has it.
    pub async fn fetch(&self, hash: &InputHash) -> Result<Option<InputRecord>> {
        let this = self.clone();
        let h = *hash;
        if let Some(rec) = tokio::task::spawn_blocking(move || this.stored(&h)).await?? {
            return Ok(Some(rec));
        }
        let Some(rec) = self.remote_record(hash).await? else {
            return Ok(None);
        };
        // A read fills the local tier (and checks the bytes' BLAKE3).
        if self
            .blobs
            .get(BlobName::Input(*hash), Some(0..0))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.record(&h, &rec)).await??;
        Ok(Some(rec))
    }

    /// Whether the input's bytes are in a local file (a blob of the disk
    /// store). Blocking.
    pub(crate) fn has_local(&self, hash: &InputHash) -> bool {
        self.blobs
            .local_path(BlobName::Input(*hash))
            .is_some_and(|p| p.exists())
    }

    /// A local file holding the input `hash`, for a worker process to read:
    /// the blob itself where the store keeps files, else a copy in staging
    /// that lasts as long as the returned value.
    pub async fn local(&self, hash: &InputHash) -> Result<LocalFile> {
        let name = BlobName::Input(*hash);
        let local = self.blobs.local_path(name);
        if let Some(path) = &local {
            if tokio::fs::try_exists(path).await? {
                return Ok(LocalFile {
                    path: path.clone(),
                    _copy: None,
                });
            }
        }
        // Read from a slower tier, which fills the local one on the way.
        let body = self.blobs.get(name, None).await?.ok_or_else(|| {
            Error::Internal(format!("the stored input {hash} is not in the blob store"))
        })?;
        if let Some(path) = local {
            if tokio::fs::try_exists(&path).await? {
                return Ok(LocalFile { path, _copy: None });
            }
        }
        let copy = StagedFile::new(self.staging.fresh(&hash.to_hex()));
        let mut out = tokio::fs::File::create(copy.path()).await?;
        let mut reader = tokio_util::io::StreamReader::new(body);
        tokio::io::copy(&mut reader, &mut out).await?;
        Ok(LocalFile {
            path: copy.path().to_owned(),
            _copy: Some(copy),
        })
    }

    /// Records what is known of an input already in the blob store (the
    /// records of an earlier release). Blocking.
    pub(crate) fn record(&self, hash: &InputHash, rec: &InputRecord) -> Result<()> {
        Ok(self.catalog.put(hash, rec)?)
    }

    /// Publishes the staged bytes of upload `id`, complete as `completion`
    /// says, as the input they hash to — if that is `expect`. Either way
    /// the staging file is gone afterwards.
    pub async fn publish(
        &self,
        id: Key,
        layout: Layout,
        completion: Completion,
        expect: InputHash,
    ) -> Result<Published> {
        let root = completion.root;
        let staging = self.staging.clone();
        if root != expect {
            tokio::task::spawn_blocking(move || staging.remove(&id)).await??;
            metrics::INPUTS_REJECTED.inc();
            return Ok(Published::Rejected { root });
        }
        let record = InputRecord {
            length: layout.length,
            block_size: layout.block_size,
            digest: *blake3::hash(&completion.digest.to_bytes()).as_bytes(),
        };
        let name = BlobName::Input(root);
        let this = self.clone();
        let known = tokio::task::spawn_blocking(move || this.stored(&root)).await??;
        // A blob without a record was published before a crash, its record
        // not yet written.
        if known.is_none() && self.blobs.local_head(name).await?.is_none() {
            let length = layout.length;
            let staged = tokio::task::spawn_blocking(move || staging.take(&id, length)).await??;
            self.blobs
                .put_file(name, staged, BlobMeta::input(root, record))
                .await?;
        } else {
            tokio::task::spawn_blocking(move || staging.remove(&id)).await??;
        }
        if known.is_none() {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.record(&root, &record)).await??;
        }
        metrics::INPUTS_VERIFIED.inc();
        Ok(Published::Stored { hash: root, record })
    }
}
