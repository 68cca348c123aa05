//! The disk blob store: content-addressed files under the data directory.
//!
//! ```text
//! <data>/inputs/<blake3>   verified inputs
//! <data>/results/<key>     results of operations (identity results are the input)
//! <data>/tmp/              blobs being written by put_stream; swept at start-up
//! ```
//!
//! Every blob is published whole: written under a temporary name (or staged
//! and synced by the caller), renamed into place, and the directory fsynced,
//! so a crash leaves the old state or the whole new file — never a torn one.
//!
//! A blob's [`BlobMeta`] is not kept: the files are a node's own copy, whose
//! entries and input records in sled say what they are; `head` knows the
//! length only.
//!
//! Reads on the runtime's thread when they cannot wait for the disk
//! ([`cached_read`]), from a file kept open with its length
//! ([`OpenFiles`]: no `open` or `fstat` per read). A file of at most
//! [`MAP_MOST`] bytes is mapped once, the mapping kept with the open file,
//! and a read is a slice of it when `mincore` says the page cache holds
//! the file (checked at most once a second while it does:
//! [`RESIDENT_MS`]) — a hit then makes no system call at all, and its
//! bytes go from the page cache to the socket without a copy into the
//! process. Otherwise a small range (up to [`READ_WHOLE`]) is tried with
//! `preadv2(RWF_NOWAIT)`, which fails rather than wait.
//! Any other read is one blocking call: a small range is read into one
//! buffer, a larger one memory-mapped with its pages faulted in there (so
//! the runtime's threads never wait for the disk). A range longer than
//! [`MAP_MOST`] is sent in [`SEND_CHUNK`]s of the file's kept mapping
//! ([`Chunks`]): each chunk's pages are faulted in on a blocking thread
//! unless `mincore` finds them cached, and the next chunks are read ahead
//! meanwhile. A download that stalls thus holds no buffer of its own, only
//! a reference to a mapping of pages the page cache may reclaim. Mapping is safe because a published file is never
//! written again in place: it is only replaced by a rename or unlinked, and
//! a mapping keeps the old file's pages. (Nothing here may ever truncate
//! or rewrite a blob file in place: a mapped reader would fault.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::blob::{BlobHead, BlobMeta, BlobName, BlobStore, ByteStream, StagedFile};
use super::memory::check_range;

/// Largest range read into a buffer; longer ones are mapped.
const READ_WHOLE: u64 = 64 * 1024;
/// Longest range sent in one piece; longer ones go in [`SEND_CHUNK`]s.
const MAP_MOST: u64 = 16 << 20;
/// Chunks a long range is sent in.
const SEND_CHUNK: usize = 1 << 20;
/// Chunks read ahead of the one being sent.
const READ_AHEAD: usize = 4;
/// Chunks a long read is streamed in where files cannot be mapped.
const READ_CHUNK: usize = 256 * 1024;

/// What the blocking part of a read found.
enum Read {
    Missing,
    Whole(Bytes),
    /// Too long to send at once: sent in chunks of the kept mapping.
    Chunks(Arc<OpenBlob>, Range<usize>),
    /// A file that could not be mapped: streamed from it.
    Long(File, Range<u64>),
}

/// Blobs as files under a directory.
#[derive(Debug, Clone)]
pub struct DiskStore {
    root: PathBuf,
    tmp: PathBuf,
    open: Arc<OpenFiles>,
}

/// Files of recently read blobs kept open, so that a hit costs no `open`,
/// `close` or `fstat` (nginx's `open_file_cache`). Every blob this process
/// replaces (by rename) or deletes goes through this store, which drops
/// its entry first thing after; an open racing with that is not kept (the
/// `epoch`). A change made behind the store's back — a file removed by
/// hand — is noticed within [`REVALIDATE_MS`]: an entry older than that is
/// checked with `fstat`, and dropped if its file has no links left.
#[derive(Debug)]
struct OpenFiles {
    cache: quick_cache::sync::Cache<BlobName, Arc<OpenBlob>>,
    /// Bumped by every removal; an open that saw another value is not kept.
    epoch: AtomicU64,
    /// Makes "check the epoch, then insert" and "bump, then remove" atomic.
    gate: std::sync::Mutex<()>,
    /// How long (ms) an entry is served without a check: [`REVALIDATE_MS`].
    revalidate: u64,
}

/// How long (ms) a kept file is served without checking it is still linked.
const REVALIDATE_MS: u64 = 1000;

/// Milliseconds since the first call: the clock of [`OpenBlob::checked`].
fn millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl OpenFiles {
    fn new(capacity: usize, revalidate: u64) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity),
            epoch: AtomicU64::new(0),
            gate: std::sync::Mutex::new(()),
            revalidate,
        }
    }

    /// The kept file of `name`, checked again if its last check is older
    /// than `now` ([`millis`]) allows.
    fn get(&self, name: &BlobName, now: u64) -> Option<Arc<OpenBlob>> {
        let file = self.cache.get(name)?;
        if now.saturating_sub(file.checked.load(Ordering::Relaxed)) < self.revalidate {
            return Some(file);
        }
        match file.file.metadata() {
            Ok(m) if std::os::unix::fs::MetadataExt::nlink(&m) > 0 => {
                file.checked.store(now, Ordering::Relaxed);
                Some(file)
            }
            // Deleted or replaced behind the store's back: the path says
            // what is there now.
            _ => {
                self.remove(name);
                None
            }
        }
    }

    /// The epoch to pass to [`OpenFiles::insert`], read before opening.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `file`, opened after `epoch` was read, unless a removal has
    /// happened since: the file may be the one it removed.
    fn insert(&self, name: BlobName, file: Arc<OpenBlob>, epoch: u64) {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.cache.insert(name, file);
        }
    }

    /// Forgets `name`'s file: called after it was replaced or deleted.
    fn remove(&self, name: &BlobName) {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.remove(name);
    }
}

/// A blob file kept open, and its mapping once a read needed one.
#[derive(Debug)]
struct OpenBlob {
    file: File,
    /// The file's length when opened (published files never change).
    length: u64,
    /// When the file was last known to be linked ([`millis`]).
    checked: AtomicU64,
    /// The whole file mapped, made on first use; `None` inside when
    /// mapping failed (an empty file).
    map: std::sync::OnceLock<Option<memmap2::Mmap>>,
    /// When the page cache last held the whole file ([`millis`]), or [`NEVER`].
    resident_at: AtomicU64,
}

/// [`OpenBlob::resident_at`] before any check found the file resident.
const NEVER: u64 = u64::MAX;
/// How long (ms) a file found wholly in the page cache is taken to stay
/// there: its pages were just read, and the page cache evicts the least
/// recently used first. A page evicted all the same is read by the fault
/// of the runtime's thread that touches it — the one wait for the disk
/// this store allows there, and only under heavy memory pressure.
const RESIDENT_MS: u64 = 1000;

impl OpenBlob {
    /// `file`, with its length (one `fstat`).
    fn new(file: File) -> io::Result<Arc<Self>> {
        let length = file.metadata()?.len();
        Ok(Arc::new(Self {
            file,
            length,
            checked: AtomicU64::new(millis()),
            map: std::sync::OnceLock::new(),
            resident_at: AtomicU64::new(NEVER),
        }))
    }

    /// The whole file's mapping, made on first use.
    fn map(&self) -> Option<&memmap2::Mmap> {
        self.map
            .get_or_init(|| {
                // SAFETY: blob files are immutable once published (module
                // doc): replaced by rename or unlinked, never written in place.
                unsafe {
                    memmap2::MmapOptions::new()
                        .len(self.length as usize)
                        .map(&self.file)
                }
                .ok()
            })
            .as_ref()
    }

    /// Whether `range` of `map` (this file's mapping) can be read without
    /// waiting for the disk: the whole file was in the page cache less than
    /// [`RESIDENT_MS`] before `now` ([`millis`]), or is now (asked at most
    /// once per that time while it stays so), or at least `range` is —
    /// one `mincore` of the whole file answers both.
    #[cfg(target_os = "linux")]
    fn cached(&self, map: &memmap2::Mmap, range: Range<usize>, now: u64) -> bool {
        let at = self.resident_at.load(Ordering::Relaxed);
        if at != NEVER && now.saturating_sub(at) < RESIDENT_MS {
            return true;
        }
        let Some(pages) = resident_pages(map, 0..map.len()) else {
            return false;
        };
        if pages.iter().all(|p| p & 1 == 1) {
            self.resident_at.store(now, Ordering::Relaxed);
            return true;
        }
        range.is_empty()
            || pages[range.start / PAGE..range.end.div_ceil(PAGE)]
                .iter()
                .all(|p| p & 1 == 1)
    }
}

/// A range of a kept mapping, owned by a response body.
struct Mapped {
    blob: Arc<OpenBlob>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        let map = self.blob.map.get().and_then(Option::as_ref);
        &map.expect("a Mapped is made only from a mapping")[self.range.clone()]
    }
}

/// A long range of a kept mapping, sent in [`SEND_CHUNK`]s.
struct Chunks {
    blob: Arc<OpenBlob>,
    at: usize,
    end: usize,
    /// The next chunk's pages being faulted in on a blocking thread.
    faulting: Option<tokio::task::JoinHandle<()>>,
}

impl futures_util::Stream for Chunks {
    type Item = io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.at >= this.end {
            return Poll::Ready(None);
        }
        let next = (this.at + SEND_CHUNK).min(this.end);
        let chunk = this.at..next;
        if this.faulting.is_none() && !this.blob.range_cached(chunk.clone()) {
            let (blob, end) = (this.blob.clone(), this.end);
            this.faulting = Some(tokio::task::spawn_blocking(move || {
                blob.fault_in(chunk, end)
            }));
        }
        if let Some(faulting) = this.faulting.as_mut() {
            match std::future::Future::poll(std::pin::Pin::new(faulting), cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(done) => {
                    this.faulting = None;
                    if let Err(e) = done {
                        this.at = this.end;
                        return Poll::Ready(Some(Err(io::Error::other(e))));
                    }
                }
            }
        }
        let range = this.at..next;
        this.at = next;
        Poll::Ready(Some(Ok(Bytes::from_owner(Mapped {
            blob: this.blob.clone(),
            range,
        }))))
    }
}

impl OpenBlob {
    /// Whether the page cache holds `range` of the kept mapping: one
    /// `mincore` of its pages.
    #[cfg(target_os = "linux")]
    fn range_cached(&self, range: Range<usize>) -> bool {
        self.map
            .get()
            .and_then(Option::as_ref)
            .and_then(|map| resident_pages(map, range))
            .is_some_and(|pages| pages.iter().all(|p| p & 1 == 1))
    }

    #[cfg(not(target_os = "linux"))]
    fn range_cached(&self, _: Range<usize>) -> bool {
        false
    }

    /// Faults `range` of the kept mapping in, and asks the kernel to read
    /// the next [`READ_AHEAD`] chunks (up to `end`) meanwhile. Blocking.
    fn fault_in(&self, range: Range<usize>, end: usize) {
        let Some(map) = self.map.get().and_then(Option::as_ref) else {
            return;
        };
        let ahead = range.end / PAGE * PAGE..(range.end + READ_AHEAD * SEND_CHUNK).min(end);
        if !ahead.is_empty() {
            // SAFETY: a page-aligned start within the mapping, and a length
            // that stays within it; advice changes no memory.
            unsafe {
                libc::madvise(
                    map.as_ptr().add(ahead.start) as *mut libc::c_void,
                    ahead.end - ahead.start,
                    libc::MADV_WILLNEED,
                );
            }
        }
        fault_in(map, range);
    }
}

/// Faults the pages of `range` of `map` in: a read of each. Blocking.
fn fault_in(map: &memmap2::Mmap, range: Range<usize>) {
    for at in (range.start / PAGE * PAGE..range.end).step_by(PAGE) {
        // SAFETY: `at` is within the mapping (below `range.end`); a
        // volatile read is not optimized away.
        unsafe { std::ptr::read_volatile(map.as_ptr().add(at)) };
    }
}

/// Pages as [`resident_pages`] and the fault-in loop count them: 4096 bytes,
/// the system's page size or a divisor of it.
const PAGE: usize = 4096;

/// For each [`PAGE`] of `range` of `map` (a whole file mapping), from
/// the one holding `range.start` on, a byte whose lowest bit says whether
/// the page cache holds it; `None` if `mincore` failed.
#[cfg(target_os = "linux")]
fn resident_pages(map: &memmap2::Mmap, range: Range<usize>) -> Option<Vec<u8>> {
    let first = range.start / PAGE * PAGE;
    let mut pages = vec![0u8; range.end.div_ceil(PAGE) - first / PAGE];
    // SAFETY: a mapping starts on a page boundary and covers whole pages
    // (4096 or a multiple), so `[ptr + first, ptr + range.end)` lies
    // within it; `pages` has one byte per 4096.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(first) as *mut libc::c_void,
            range.end - first,
            pages.as_mut_ptr(),
        )
    };
    (rc == 0).then_some(pages)
}

/// Blob files kept open at most.
const OPEN_FILES: usize = 256;

/// Fsyncs a directory so that a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes a temporary file unless it was published.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    /// The file was published: keep it.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// What [`cached_read`] managed.
enum Cached {
    /// The answer: the blob is missing, or here are its bytes.
    Done(Read),
    /// The file is open, but its range is long or not all in the page cache.
    Opened(Arc<OpenBlob>),
    /// Nothing was tried (not on this platform), or the open failed oddly.
    NotTried,
}

/// Reads a range of at most [`READ_WHOLE`] bytes if the page cache holds
/// all of it, without ever waiting for the disk to do so: `preadv2` with
/// `RWF_NOWAIT` fails instead. Opening a file whose directory entry and
/// inode are cached (every hot blob's) does not touch the disk either.
#[cfg(target_os = "linux")]
fn cached_read(
    open: &OpenFiles,
    name: BlobName,
    path: impl FnOnce() -> PathBuf,
    range: Option<Range<u64>>,
) -> Cached {
    use std::os::fd::AsRawFd;
    let now = millis();
    let file = match open.get(&name, now) {
        Some(f) => f,
        None => {
            let epoch = open.epoch();
            match File::open(path()).and_then(OpenBlob::new) {
                Ok(f) => {
                    open.insert(name, f.clone(), epoch);
                    f
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Cached::Done(Read::Missing)
                }
                Err(_) => return Cached::NotTried,
            }
        }
    };
    let length = file.length;
    let Ok(range) = check_range(range, length) else {
        return Cached::Opened(file); // the blocking path reports it
    };
    let count = (range.end - range.start) as usize;
    if length <= MAP_MOST {
        let range = range.start as usize..range.end as usize;
        if file
            .map()
            .is_some_and(|map| file.cached(map, range.clone(), now))
        {
            return Cached::Done(Read::Whole(Bytes::from_owner(Mapped { blob: file, range })));
        }
    }
    if count as u64 > READ_WHOLE {
        return Cached::Opened(file);
    }
    // Not zeroed first: the kernel fills it, and only what it filled is kept.
    let mut buf: Vec<u8> = Vec::with_capacity(count);
    let mut done = 0;
    while done < count {
        let iov = libc::iovec {
            iov_base: buf.spare_capacity_mut()[done..].as_mut_ptr().cast(),
            iov_len: count - done,
        };
        // SAFETY: one iovec over the unfilled part of `buf`'s allocation,
        // which outlives the call; the file descriptor is open.
        let n = unsafe {
            libc::preadv2(
                file.file.as_raw_fd(),
                &iov,
                1,
                (range.start + done as u64) as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n <= 0 {
            // EAGAIN: not all cached; EOPNOTSUPP: no RWF_NOWAIT here; 0: the
            // file is shorter than it said. The blocking path sorts it out.
            return Cached::Opened(file);
        }
        done += n as usize;
    }
    // SAFETY: the reads above filled all `count` bytes.
    unsafe { buf.set_len(count) };
    Cached::Done(Read::Whole(Bytes::from(buf)))
}

/// Reads `range` of the blob at `path` (or of the file already `opened`),
/// waiting for the disk: a small range into one buffer, a longer one mapped
/// and its pages faulted in, a range too long to map left to be streamed.
fn read_blocking(
    opened: Option<Arc<OpenBlob>>,
    path: &Path,
    range: Option<Range<u64>>,
) -> io::Result<Read> {
    let file = match opened {
        Some(f) => f,
        None => match File::open(path) {
            Ok(f) => OpenBlob::new(f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(e),
        },
    };
    let length = file.length;
    let range = check_range(range, length)?;
    let count = range.end - range.start;
    if count <= READ_WHOLE {
        let mut buf = vec![0; count as usize];
        file.file.read_exact_at(&mut buf, range.start)?;
        return Ok(Read::Whole(Bytes::from(buf)));
    }
    if length <= MAP_MOST {
        if let Some(map) = file.map() {
            // Faulted in here, so that sending them waits for no disk.
            let range = range.start as usize..range.end as usize;
            fault_in(map, range.clone());
            return Ok(Read::Whole(Bytes::from_owner(Mapped { blob: file, range })));
        }
    }
    if count <= MAP_MOST {
        // SAFETY: blob files are immutable once published (module doc):
        // replaced by rename or unlinked, never written in place.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(range.start)
                .len(count as usize)
                .populate()
                .map(&file.file)?
        };
        return Ok(Read::Whole(Bytes::from_owner(map)));
    }
    if file.map().is_some() {
        let range = range.start as usize..range.end as usize;
        return Ok(Read::Chunks(file, range));
    }
    // Streamed with its own file offset: a file of its own.
    Ok(Read::Long(File::open(path)?, range))
}

#[cfg(not(target_os = "linux"))]
fn cached_read(
    _: &OpenFiles,
    _: BlobName,
    _: impl FnOnce() -> PathBuf,
    _: Option<Range<u64>>,
) -> Cached {
    Cached::NotTried
}

impl DiskStore {
    /// Opens the store under `root`, creating its directories, and empties
    /// its `tmp/` (left-overs of a crash). Blocking.
    pub fn open(root: &Path) -> io::Result<Self> {
        let store = Self {
            root: root.to_owned(),
            tmp: root.join("tmp"),
            open: Arc::new(OpenFiles::new(OPEN_FILES, REVALIDATE_MS)),
        };
        for dir in ["inputs", "results", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        for entry in fs::read_dir(&store.tmp)? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(store)
    }

    /// The file of `name`.
    pub fn path(&self, name: BlobName) -> PathBuf {
        self.root.join(name.path())
    }

    fn dir_of(&self, name: BlobName) -> PathBuf {
        let path = self.path(name);
        path.parent()
            .expect("blob paths have a directory")
            .to_owned()
    }

    fn temp(&self, name: BlobName) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let leaf = name.path().replace('/', "-");
        self.tmp.join(format!("{leaf}.{}.{n}", std::process::id()))
    }

    /// Renames a synced file into place and makes the name durable.
    fn publish(&self, name: BlobName, from: &Path) -> io::Result<()> {
        fs::rename(from, self.path(name))?;
        self.open.remove(&name);
        sync_dir(&self.dir_of(name))
    }
}

#[async_trait]
impl BlobStore for DiskStore {
    async fn put_file(&self, name: BlobName, file: StagedFile, _: BlobMeta) -> io::Result<()> {
        let store = self.clone();
        blocking(move || {
            match store.publish(name, file.path()) {
                Ok(()) => {
                    let from = file.into_path();
                    // The staged name is gone; make that durable too.
                    if let Some(dir) = from.parent() {
                        sync_dir(dir)?;
                    }
                    Ok(())
                }
                // Staged on another filesystem: copy, sync, publish.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    let tmp = store.temp(name);
                    let guard = TempGuard(Some(tmp.clone()));
                    fs::copy(file.path(), &tmp)?;
                    File::open(&tmp)?.sync_all()?;
                    store.publish(name, &tmp)?;
                    guard.disarm();
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn put_stream(
        &self,
        name: BlobName,
        mut body: ByteStream,
        _: BlobMeta,
    ) -> io::Result<()> {
        let tmp = self.temp(name);
        let guard = TempGuard(Some(tmp.clone()));
        let mut out = tokio::fs::File::create(&tmp).await?;
        while let Some(chunk) = body.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk?).await?;
        }
        let out = out.into_std().await;
        let store = self.clone();
        blocking(move || {
            out.sync_all()?;
            store.publish(name, &tmp)?;
            guard.disarm();
            Ok(())
        })
        .await
    }

    async fn get(
        &self,
        name: BlobName,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream>> {
        // A small range the page cache holds is read here, on the runtime's
        // thread: handing it to a blocking thread costs two context
        // switches, more than the read itself. (The path is only spelled
        // out when a file is opened.)
        let read = match cached_read(&self.open, name, || self.path(name), range.clone()) {
            Cached::Done(read) => read,
            Cached::Opened(file) => {
                let path = self.path(name);
                blocking(move || read_blocking(Some(file), &path, range)).await?
            }
            Cached::NotTried => {
                let path = self.path(name);
                blocking(move || read_blocking(None, &path, range)).await?
            }
        };
        Ok(Some(match read {
            Read::Missing => return Ok(None),
            Read::Whole(bytes) => {
                Box::pin(futures_util::stream::once(async move { Ok(bytes) })) as ByteStream
            }
            Read::Chunks(blob, range) => Box::pin(Chunks {
                blob,
                at: range.start,
                end: range.end,
                faulting: None,
            }),
            Read::Long(file, range) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(io::SeekFrom::Start(range.start)).await?;
                let count = range.end - range.start;
                Box::pin(ReaderStream::with_capacity(file.take(count), READ_CHUNK))
            }
        }))
    }

    async fn head(&self, name: BlobName) -> io::Result<Option<BlobHead>> {
        match tokio::fs::metadata(self.path(name)).await {
            Ok(m) => Ok(Some(BlobHead {
                length: m.len(),
                meta: None,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, name: BlobName) -> io::Result<bool> {
        let store = self.clone();
        blocking(move || match fs::remove_file(store.path(name)) {
            Ok(()) => {
                store.open.remove(&name);
                sync_dir(&store.dir_of(name))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<BlobName>> {
        let store = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            for dir in ["inputs", "results"] {
                let here = format!("{dir}/");
                if !(prefix.starts_with(&here) || here.starts_with(&prefix)) {
                    continue;
                }
                for entry in fs::read_dir(store.root.join(dir))? {
                    let entry = entry?;
                    let Some(leaf) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    // Other files live beside the blobs (input records).
                    let Some(name) = BlobName::parse(&format!("{here}{leaf}")) else {
                        continue;
                    };
                    if name.path().starts_with(&prefix) {
                        out.push(name);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    fn local_path(&self, name: BlobName) -> Option<PathBuf> {
        Some(self.path(name))
    }
}

/// Writes `bytes` to a new file at `path` durably (write, fsync, rename from
/// a temporary name in `tmp`, directory fsync). Blocking.
pub(crate) fn write_durably(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let guard = TempGuard(Some(tmp.to_owned()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(tmp, path)?;
    guard.disarm();
    sync_dir(path.parent().expect("a file in a directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::staging::Staging;

    #[tokio::test]
    async fn the_disk_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        crate::store::conformance::check(&store, &staging).await;
    }

    /// A store that checks its kept file is still linked on every read, so
    /// that a change behind its back is noticed at the next read, not
    /// within [`REVALIDATE_MS`].
    fn checking_every_read(root: &Path) -> DiskStore {
        DiskStore {
            open: Arc::new(OpenFiles::new(OPEN_FILES, 0)),
            ..DiskStore::open(root).unwrap()
        }
    }

    #[tokio::test]
    async fn a_file_kept_open_is_not_served_once_replaced_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = checking_every_read(dir.path());
        let name = BlobName::Result(upcache_protocol::Key([5; 32]));
        let read = |store: DiskStore| async move {
            match store.get(name, None).await.unwrap() {
                Some(body) => Some(crate::store::blob::read_all(body).await.unwrap()),
                None => None,
            }
        };
        let meta = |b: &[u8]| BlobMeta::of_bytes(b, crate::store::blob::OCTET_STREAM);
        let body = |b: &'static [u8]| {
            Box::pin(futures_util::stream::once(async move {
                Ok(Bytes::from_static(b))
            })) as ByteStream
        };
        store
            .put_stream(name, body(b"first"), meta(b"first"))
            .await
            .unwrap();
        assert_eq!(read(store.clone()).await.as_deref(), Some(&b"first"[..]));
        // Republished through the store: the cached file is dropped.
        store
            .put_stream(name, body(b"second!"), meta(b"second!"))
            .await
            .unwrap();
        assert_eq!(read(store.clone()).await.as_deref(), Some(&b"second!"[..]));
        // Replaced behind the store's back (by rename): the old file has no
        // links left, so the path is opened again.
        let path = store.path(name);
        fs::write(dir.path().join("other"), b"third").unwrap();
        fs::rename(dir.path().join("other"), &path).unwrap();
        assert_eq!(read(store.clone()).await.as_deref(), Some(&b"third"[..]));
        // Removed behind its back: missing, not the old bytes.
        fs::remove_file(&path).unwrap();
        assert_eq!(read(store.clone()).await, None);
        assert!(store.delete(name).await.is_ok());
    }

    /// With the default check interval, a blob replaced or deleted through
    /// the store is seen at once: the store drops its kept file itself.
    #[tokio::test]
    async fn changes_through_the_store_are_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let name = BlobName::Result(upcache_protocol::Key([6; 32]));
        let put = |b: &'static [u8]| {
            let store = store.clone();
            async move {
                let body = Box::pin(futures_util::stream::once(async move {
                    Ok(Bytes::from_static(b))
                })) as ByteStream;
                let meta = BlobMeta::of_bytes(b, crate::store::blob::OCTET_STREAM);
                store.put_stream(name, body, meta).await.unwrap();
            }
        };
        let read = || async {
            match store.get(name, None).await.unwrap() {
                Some(body) => Some(crate::store::blob::read_all(body).await.unwrap()),
                None => None,
            }
        };
        put(b"first").await;
        assert_eq!(read().await.as_deref(), Some(&b"first"[..]));
        put(b"second!").await;
        assert_eq!(read().await.as_deref(), Some(&b"second!"[..]));
        assert_eq!(read().await.as_deref(), Some(&b"second!"[..]));
        assert!(store.delete(name).await.unwrap());
        assert_eq!(read().await, None);
    }

    /// Readers racing replaces and deletes made through the store, with the
    /// default check interval, only ever see a whole version (or nothing
    /// once deleted); and once a replace has returned, every read that
    /// starts after it sees that version or a later one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reads_racing_replaces_see_whole_current_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let name = BlobName::Result(upcache_protocol::Key([8; 32]));
        // Version v: 20 000 bytes of v (small: read from the mapping).
        let version = |v: u8| Bytes::from(vec![v; 20_000]);
        let put = |v: u8| {
            let store = store.clone();
            async move {
                let body = version(v);
                let meta = BlobMeta::of_bytes(&body, crate::store::blob::OCTET_STREAM);
                let body = Box::pin(futures_util::stream::once(async move { Ok(body) }));
                store.put_stream(name, body, meta).await.unwrap();
            }
        };
        put(1).await;
        // The newest version whose replace has returned.
        let done = Arc::new(std::sync::atomic::AtomicU8::new(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let floor = done.load(Ordering::Acquire);
                    let Some(body) = store.get(name, None).await.unwrap() else {
                        panic!("missing while version {floor} is published");
                    };
                    let got = crate::store::blob::read_all(body).await.unwrap();
                    let v = got[0];
                    assert!(got == version(v), "a torn read");
                    assert!(v >= floor, "read version {v} after {floor} was published");
                    reads += 1;
                }
                reads
            }));
        }
        for v in 2..=60u8 {
            put(v).await;
            done.store(v, Ordering::Release);
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            assert!(r.await.unwrap() > 0, "every reader read");
        }
        // Deleted through the store: no reader sees it afterwards.
        assert!(store.delete(name).await.unwrap());
        assert!(store.get(name, None).await.unwrap().is_none());
    }

    /// A file opened before a removal is not kept after it: it may be the
    /// very file that was removed.
    #[test]
    fn an_open_racing_a_removal_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, b"old").unwrap();
        let open = OpenFiles::new(4, REVALIDATE_MS);
        let name = BlobName::Result(upcache_protocol::Key([7; 32]));
        let epoch = open.epoch();
        let file = OpenBlob::new(File::open(&path).unwrap()).unwrap();
        // Meanwhile the blob is deleted, and the store forgets it...
        fs::remove_file(&path).unwrap();
        open.remove(&name);
        // ...before the reader gets to keep what it opened.
        open.insert(name, file.clone(), epoch);
        assert!(open.get(&name, millis()).is_none());
        // An open after the removal is kept.
        let epoch = open.epoch();
        open.insert(name, file, epoch);
        assert!(open.get(&name, millis()).is_some());
    }

    /// Ranges of mapped files — a small one and one past [`READ_WHOLE`] —
    /// come out right, read again from the kept mapping, and stay right in
    /// a body still held after the file is replaced or removed.
    #[tokio::test]
    async fn mapped_reads_serve_the_right_bytes() {
        for (n, size) in [(6u8, (1u32 << 20) + 777), (7, 10_000)] {
            let dir = tempfile::tempdir().unwrap();
            let store = checking_every_read(dir.path());
            let name = BlobName::Result(upcache_protocol::Key([n; 32]));
            let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let path = store.path(name);
            fs::write(&path, &data).unwrap();
            let read = |range: Option<Range<u64>>| {
                let store = store.clone();
                async move {
                    let body = store.get(name, range).await.unwrap().unwrap();
                    crate::store::blob::read_all(body).await.unwrap()
                }
            };
            let len = data.len() as u64;
            for range in [
                0..len,
                1..len - 1,
                4095..(4097 + 70_000).min(len),
                (len / 10)..(len / 10 + 10),
                len - 5..len,
            ] {
                for _ in 0..2 {
                    let got = read(Some(range.clone())).await;
                    let want = &data[range.start as usize..range.end as usize];
                    assert!(got == want, "{size} bytes, range {range:?}");
                }
            }
            assert!(read(None).await == data);
            let held = store.get(name, Some(0..len)).await.unwrap().unwrap();
            let other: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
            fs::write(dir.path().join("other"), &other).unwrap();
            fs::rename(dir.path().join("other"), &path).unwrap();
            assert!(read(None).await == other);
            fs::remove_file(&path).unwrap();
            assert!(store.get(name, None).await.unwrap().is_none());
            assert!(crate::store::blob::read_all(held).await.unwrap() == data);
        }
    }

    /// The page-cache check answers for the pages of the range read: a
    /// file only partly in the page cache is read on the runtime's thread
    /// where it is cached, and not where it is not. The file is dropped from
    /// the page cache and its first half read back. (Skipped, saying so,
    /// where the page cache does not end up holding exactly that half.)
    #[cfg(target_os = "linux")]
    #[test]
    fn a_partly_cached_file_is_cached_only_where_it_is() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, vec![7u8; 64 * PAGE]).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        let blob = OpenBlob::new(File::open(&path).unwrap()).unwrap();
        let fd = blob.file.as_raw_fd();
        // SAFETY: advice on an open descriptor: drop the file's pages, and
        // read ahead nothing past what is read next.
        unsafe {
            assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED), 0);
            assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM), 0);
        }
        blob.file.read_exact_at(&mut vec![0; 32 * PAGE], 0).unwrap();
        let map = blob.map().unwrap();
        let pages = resident_pages(map, 0..map.len()).unwrap();
        let held = |r: Range<usize>| pages[r].iter().map(|p| p & 1 == 1).collect::<Vec<_>>();
        if held(0..32) != [true; 32] || held(32..64) != [false; 32] {
            eprintln!("skipped: the page cache kept what it was asked to drop");
            return;
        }
        let now = millis();
        assert!(blob.cached(map, PAGE + 5..20 * PAGE + 7, now));
        assert!(
            blob.cached(map, 31 * PAGE..32 * PAGE, now),
            "ends at a page edge"
        );
        assert!(!blob.cached(map, 31 * PAGE..32 * PAGE + 1, now));
        assert!(!blob.cached(map, 0..64 * PAGE, now));
        assert!(
            blob.cached(map, 40 * PAGE..40 * PAGE, now),
            "nothing to read"
        );
    }

    /// A range longer than [`MAP_MOST`] comes in chunks of the kept
    /// mapping, right whether its pages are cached or dropped from the page
    /// cache first (then faulted in on a blocking thread), and stays right
    /// in a body held while the file is replaced and removed.
    #[tokio::test]
    async fn long_ranges_come_in_chunks_of_the_mapping() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = checking_every_read(dir.path());
        let name = BlobName::Result(upcache_protocol::Key([9; 32]));
        let len = MAP_MOST as usize + 3 * SEND_CHUNK + 4321;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = store.path(name);
        fs::write(&path, &data).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        let drop_cache = || {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                let f = File::open(&path).unwrap();
                // SAFETY: advice on an open descriptor.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        };
        for range in [0..len, 4095..len - 1, 1..MAP_MOST as usize + 2] {
            for cold in [true, false] {
                if cold {
                    drop_cache();
                }
                let mut body = store
                    .get(name, Some(range.start as u64..range.end as u64))
                    .await
                    .unwrap()
                    .unwrap();
                let mut got = Vec::new();
                let mut chunks = 0;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.unwrap();
                    assert!(chunk.len() <= SEND_CHUNK);
                    got.extend_from_slice(&chunk);
                    chunks += 1;
                }
                assert!(got == data[range.clone()], "{range:?}, cold {cold}");
                assert_eq!(chunks, (range.end - range.start).div_ceil(SEND_CHUNK));
            }
        }
        let held = store.get(name, None).await.unwrap().unwrap();
        fs::write(dir.path().join("other"), b"other").unwrap();
        fs::rename(dir.path().join("other"), &path).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(crate::store::blob::read_all(held).await.unwrap() == data);
    }

    #[test]
    fn tmp_is_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        DiskStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("tmp/leftover"), b"x").unwrap();
        DiskStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
