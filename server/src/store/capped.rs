//! The disk store under the cap: a [`BlobStore`] that passes every call to
//! the store beneath and keeps [`DiskCap`]'s books — each publication and
//! deletion recorded, each read noted as a use and held by a [`Lease`]
//! until the reader drops its stream, so that a result being served is
//! never evicted.

use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use super::blob::{
    BlobHead, BlobMeta, BlobName, BlobStore, ByteStream, PartUploads, Presign, StagedFile,
};
use super::cap::{DiskCap, Lease};

/// A blob store whose bytes count against a [`DiskCap`].
#[derive(Debug, Clone)]
pub struct CappedStore {
    inner: Arc<dyn BlobStore>,
    cap: Arc<DiskCap>,
}

impl CappedStore {
    pub fn new(inner: Arc<dyn BlobStore>, cap: Arc<DiskCap>) -> Self {
        Self { inner, cap }
    }

    /// The store beneath, which the evictor unlinks from.
    pub fn inner(&self) -> &Arc<dyn BlobStore> {
        &self.inner
    }

    async fn record(&self, name: BlobName, length: u64) -> io::Result<()> {
        let cap = self.cap.clone();
        tokio::task::spawn_blocking(move || cap.added(name, length))
            .await
            .map_err(io::Error::other)?
            .map_err(meta_io)
    }
}

fn meta_io(e: super::meta::MetaError) -> io::Error {
    match e {
        super::meta::MetaError::NoSpace(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

/// A read holding its blob's lease until the stream is dropped.
struct Leased {
    body: ByteStream,
    _lease: Lease,
}

impl Stream for Leased {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.body.as_mut().poll_next(cx)
    }
}

#[async_trait]
impl BlobStore for CappedStore {
    async fn put_file(&self, name: BlobName, file: StagedFile, meta: BlobMeta) -> io::Result<()> {
        let length = tokio::fs::metadata(file.path()).await?.len();
        self.inner.put_file(name, file, meta).await?;
        self.record(name, length).await
    }

    async fn put_stream(&self, name: BlobName, body: ByteStream, meta: BlobMeta) -> io::Result<()> {
        self.inner.put_stream(name, body, meta).await?;
        let length = self.inner.head(name).await?.map_or(0, |h| h.length);
        self.record(name, length).await
    }

    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        let Some(lease) = self.cap.lease(name) else {
            return Ok(None); // being evicted
        };
        Ok(self.inner.get(name, range).await?.map(|body| {
            Box::pin(Leased {
                body,
                _lease: lease,
            }) as ByteStream
        }))
    }

    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        self.inner.head(name).await
    }

    async fn delete(&self, name: BlobName) -> io::Result<bool> {
        let deleted = self.inner.delete(name).await?;
        let cap = self.cap.clone();
        tokio::task::spawn_blocking(move || cap.removed(name))
            .await
            .map_err(io::Error::other)?
            .map_err(meta_io)?;
        Ok(deleted)
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>> {
        self.inner.list(prefix).await
    }

    fn keeps_meta(&self) -> bool {
        self.inner.keeps_meta()
    }

    fn local_path(&self, name: BlobName) -> Option<PathBuf> {
        self.inner.local_path(name)
    }

    fn parts(&self) -> Option<&dyn PartUploads> {
        self.inner.parts()
    }

    fn presign(&self) -> Option<&dyn Presign> {
        self.inner.presign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::DiskStore;
    use crate::store::meta::Meta;
    use crate::store::staging::Staging;

    #[tokio::test]
    async fn the_capped_disk_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("db"), 1 << 20, Default::default()).unwrap();
        let cap = DiskCap::open(&meta, Some(1 << 30), Default::default()).unwrap();
        let store = CappedStore::new(Arc::new(DiskStore::open(dir.path()).unwrap()), cap.clone());
        let staging = Staging::open(dir.path()).unwrap();
        crate::store::conformance::check(&store, &staging).await;
        assert_eq!(cap.usage(), (0, 0), "the suite leaves nothing behind");
    }
}
