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
//!
//! Every blob is published with its [`BlobMeta`] — its length, BLAKE3 and
//! content type, and how it came to be (the record of an input, the input
//! and operation of a result) — so that a store shared by several nodes
//! describes itself: a node with empty metadata can serve any result in it.
//! A store that keeps the metadata says so ([`BlobStore::keeps_meta`]) and
//! returns it from [`BlobStore::head`]; one that does not returns only the
//! length.
//!
//! Errors are `io::Error`s whose kind tells callers what happened:
//! `NotFound` (mostly answered as `None` instead), `PermissionDenied` (the
//! backend refused our credentials), `InvalidInput` (a bad range, metadata
//! the backend cannot carry), `InvalidData` (bytes that disagree with their
//! metadata), and the kinds [`is_unavailable`] accepts for a backend that is
//! down, unreachable, overloaded or too slow — what a circuit breaker counts.

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

use super::records::InputRecord;

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

/// What a blob carries besides its bytes. Given to every put; returned by
/// [`BlobStore::head`] of a store that keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Length of the bytes.
    pub length: u64,
    /// BLAKE3 of the bytes (for an input, its name).
    pub blake3: InputHash,
    /// Media type of the bytes.
    pub content_type: String,
    /// For an input: its record (block size and digest of its upload).
    pub input: Option<InputRecord>,
    /// For a result: what it was made from.
    pub result: Option<ResultOf>,
}

/// How a result was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultOf {
    /// The input it was made from, and that input's length.
    pub input: InputHash,
    pub input_length: u64,
    /// Canonical JSON of the normalized operation.
    pub operation: String,
    /// The result is the input itself (the identity operation): its object
    /// in a remote tier is an empty link to the input's (see
    /// [`BlobMeta::link`]), so that a node knowing only the key finds it.
    pub is_input: bool,
}

/// The media type of inputs (their type is not known).
pub const OCTET_STREAM: &str = "application/octet-stream";

impl BlobMeta {
    /// The metadata of a stored input.
    pub fn input(hash: InputHash, record: InputRecord) -> Self {
        Self {
            length: record.length,
            blake3: hash,
            content_type: OCTET_STREAM.into(),
            input: Some(record),
            result: None,
        }
    }

    /// The metadata of a result of `length` bytes hashing to `blake3`.
    pub fn result(blake3: InputHash, length: u64, content_type: &str, of: ResultOf) -> Self {
        Self {
            length,
            blake3,
            content_type: content_type.into(),
            input: None,
            result: Some(of),
        }
    }

    /// The metadata of a result that is its input (`of.is_input`): an empty
    /// object whose metadata names the input, written to a remote tier only.
    pub fn link(of: ResultOf) -> Self {
        Self {
            length: 0,
            blake3: InputHash::of(b""),
            content_type: OCTET_STREAM.into(),
            input: None,
            result: Some(ResultOf {
                is_input: true,
                ..of
            }),
        }
    }

    /// Whether this describes a link to an input rather than bytes.
    pub fn is_link(&self) -> bool {
        self.result.as_ref().is_some_and(|r| r.is_input)
    }

    /// Metadata of bare bytes: their length, hash and type only.
    pub fn of_bytes(bytes: &[u8], content_type: &str) -> Self {
        Self {
            length: bytes.len() as u64,
            blake3: InputHash::of(bytes),
            content_type: content_type.into(),
            input: None,
            result: None,
        }
    }
}

/// What a store knows of a blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHead {
    pub length: u64,
    /// What the blob was published with, where the store keeps it.
    pub meta: Option<BlobMeta>,
}

/// Whether `e` says the backend is down, unreachable, overloaded or too
/// slow (worth retrying later, and counted by a circuit breaker), rather
/// than refusing the request.
pub fn is_unavailable(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::ResourceBusy
    )
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
    /// Publishes `file`, described by `meta`, as `name`. Readers see the old
    /// blob or the whole new one, never a part. An input already stored may
    /// be kept instead (its name is its content).
    async fn put_file(&self, name: BlobName, file: StagedFile, meta: BlobMeta) -> io::Result<()>;

    /// Publishes the bytes of `body`, described by `meta`, as `name`;
    /// nothing is published unless the whole stream was read (and, in a
    /// store that keeps metadata, unless the bytes have `meta`'s length and
    /// BLAKE3: `InvalidData` otherwise).
    async fn put_stream(&self, name: BlobName, body: ByteStream, meta: BlobMeta) -> io::Result<()>;

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

    /// The whole of `name` and what is known of it — [`BlobStore::head`]
    /// and [`BlobStore::get`] in one, as one request where the store can
    /// (S3 answers a `GET` with the object's metadata) — or `None` if
    /// there is no such blob.
    async fn fetch(&self, name: BlobName) -> io::Result<Option<(BlobHead, ByteStream)>> {
        let Some(head) = self.head(name).await? else {
            return Ok(None);
        };
        Ok(self.get(name, None).await?.map(|body| (head, body)))
    }

    /// Whether [`BlobStore::head`] returns the [`BlobMeta`] a blob was
    /// published with.
    fn keeps_meta(&self) -> bool {
        false
    }

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

    /// Begins a part upload of `name`, to be published with `meta`;
    /// returns its id.
    async fn begin(&self, name: BlobName, meta: BlobMeta) -> io::Result<String>;

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
#[async_trait]
pub trait Presign: Send + Sync {
    /// A URL for `GET` of `name`, valid for `ttl`.
    async fn get_url(&self, name: BlobName, ttl: Duration) -> io::Result<String>;
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
