//! The blob store: where the bytes of stored inputs and results live, behind
//! one narrow trait, [`BlobStore`]. Today's disk layout is its first
//! implementation ([`super::disk::DiskStore`]); a memory or an S3 tier is
//! another implementation of the same trait, and must pass the same
//! [`super::conformance`] suite.
//!
//! Blobs are content-addressed and immutable: a name is written once (or
//! rewritten with the same bytes), read in ranges, and deleted. What a
//! backend can do beyond that is offered through capability traits —
//! [`PartUploads`] for large objects sent in parts, [`Presign`] for URLs a
//! client fetches from the backend itself — asked for with
//! [`BlobStore::parts`] and [`BlobStore::presign`].

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use upcache_protocol::{InputHash, Key};

/// Bytes read from, or written to, a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// The name of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobName {
    /// A verified input, by its BLAKE3.
    Input(InputHash),
    /// The result of an operation, by the entry's key.
    Result(Key),
}

impl BlobName {
    /// The name as a relative path: `inputs/<hex>` or `results/<hex>`.
    pub fn path(&self) -> String {
        match self {
            BlobName::Input(h) => format!("inputs/{h}"),
            BlobName::Result(k) => format!("results/{k}"),
        }
    }

    /// Parses [`BlobName::path`]'s form.
    pub fn parse(path: &str) -> Option<Self> {
        let (dir, hex) = path.split_once('/')?;
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        match dir {
            "inputs" => hex.parse().ok().map(BlobName::Input),
            "results" => hex.parse().ok().map(BlobName::Result),
            _ => None,
        }
    }
}

impl fmt::Display for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// What a store knows of a blob without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHead {
    pub length: u64,
}

/// A complete local file handed to a store to publish. Its bytes are
/// durable (the caller synced them); the store takes it over: it is moved
/// into place or copied and removed. Dropped unpublished, it is deleted.
#[derive(Debug)]
pub struct StagedFile {
    path: Option<PathBuf>,
}

impl StagedFile {
    /// Takes over the file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("a staged file until published")
    }

    /// Gives up ownership of the path: the caller moved the file away.
    pub fn into_path(mut self) -> PathBuf {
        self.path.take().expect("a staged file until published")
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A blob store. Every method may be called concurrently, for the same name
/// too. Writes are durable when they return.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Publishes `file` as `name`. Readers see the old blob or the whole new
    /// one, never a part.
    async fn put_file(&self, name: BlobName, file: StagedFile) -> io::Result<()>;

    /// Publishes the bytes of `body` as `name`; nothing is published unless
    /// the whole stream was read.
    async fn put_stream(&self, name: BlobName, body: ByteStream) -> io::Result<()>;

    /// Reads `range` of `name` (all of it for `None`); `None` if there is no
    /// such blob. A range that ends past the blob is an `InvalidInput` error.
    /// A read begun before a delete reads to its end.
    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>>;

    /// What is known of `name`, or `None` if there is no such blob.
    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>>;

    /// Deletes `name`; whether it was there.
    async fn delete(&self, name: BlobName) -> io::Result<bool>;

    /// The names whose [`BlobName::path`] starts with `prefix`, in no
    /// particular order.
    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>>;

    /// A local file holding `name`'s bytes, for readers that need a file
    /// (operations run in worker processes read their input by path): the
    /// blob itself on a disk store; `None` where the store has no such file,
    /// and the caller reads the blob with [`BlobStore::get`] instead.
    fn local_path(&self, _name: BlobName) -> Option<PathBuf> {
        None
    }

    /// Part uploads, where the backend has them.
    fn parts(&self) -> Option<&dyn PartUploads> {
        None
    }

    /// Presigned URLs, where the backend has them.
    fn presign(&self) -> Option<&dyn Presign> {
        None
    }
}

/// A blob sent in parts, possibly concurrently and out of order (S3
/// multipart uploads); nothing is visible under the name until
/// [`PartUploads::complete`].
#[async_trait]
pub trait PartUploads: Send + Sync {
    /// The smallest part but the last the backend accepts.
    fn min_part_size(&self) -> u64;

    /// Begins a part upload of `name`; returns its id.
    async fn begin(&self, name: BlobName) -> io::Result<String>;

    /// Sends part `n` (from 1) of upload `id`; returns the part's tag.
    async fn put_part(
        &self,
        name: BlobName,
        id: &str,
        n: u32,
        length: u64,
        body: ByteStream,
    ) -> io::Result<String>;

    /// Publishes the parts, given as `(n, tag)` in order.
    async fn complete(&self, name: BlobName, id: &str, parts: &[(u32, String)]) -> io::Result<()>;

    /// Drops an unfinished part upload and its parts.
    async fn abort(&self, name: BlobName, id: &str) -> io::Result<()>;
}

/// URLs that let a client read a blob from the backend directly.
pub trait Presign: Send + Sync {
    /// A URL for `GET` of `name`, valid for `ttl`.
    fn get_url(&self, name: BlobName, ttl: Duration) -> io::Result<String>;
}

/// Reads a whole stream into memory (small blobs; tests).
pub async fn read_all(mut body: ByteStream) -> io::Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}
