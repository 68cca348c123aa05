//! Staged bytes written with `O_DIRECT`: straight from an aligned buffer to
//! the device, without copying them into the page cache, dirtying it, and
//! writing it back later. The staged bytes are not read again until the
//! upload is complete (and then by an operation, usually much later), so
//! caching them only costs: the copy into the page cache and its writeback
//! were the largest share of the server's CPU time on an upload.
//!
//! Direct I/O needs aligned offsets, lengths and memory. Bytes are gathered
//! into an aligned buffer and written in aligned runs; what cannot be
//! aligned — the start of a request that resumes mid-page, the last bytes
//! of an input — goes through the ordinary file descriptor. The two never
//! write the same page at once: every write of a writer is a job in one
//! queue, run in order.
//!
//! The queue is run by a blocking thread only while it has jobs: a request
//! whose body trickles in holds no thread while it waits for the network.
//! Buffers are filled (and their bytes hashed) by the caller while the
//! queue writes the previous ones; [`DirectWriter::ready`] waits for a free
//! one. What must follow the writes — a block's commit — is queued behind
//! them with [`DirectWriter::then`], so the caller does not wait for the
//! device at a block boundary. Durability is unchanged: the committer's
//! `fdatasync` (on either descriptor: it is per file) flushes the device
//! cache before a block is acknowledged.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::on_demand::OnDemand;

/// Alignment of offsets, lengths and memory (covers 512- and 4096-byte devices).
pub const ALIGN: u64 = 4096;
/// Bytes gathered before a write: one transparent huge page.
pub const CAPACITY: usize = 2 << 20;
/// Buffers per writer: one being filled while the others are written out.
const BUFFERS: usize = 3;

/// Huge buffers kept for the next writers: a fresh one costs a huge page's
/// fault and zeroing, a kept one nothing.
static POOL: Mutex<Vec<Aligned>> = Mutex::new(Vec::new());
/// Most buffers kept in [`POOL`] (the writers of a few uploads at once).
const POOLED: usize = 16;

/// A buffer of [`CAPACITY`] bytes at a page-aligned address: an anonymous
/// mapping, so that a buffer let go is returned to the system at once (a
/// heap allocation this large may stay with the process).
///
/// A buffer for a body that has already filled one is a *huge* one: its
/// address is aligned to [`CAPACITY`] and the kernel is asked to back it
/// with one transparent huge page. Pinning its pages for each direct write
/// is then one step instead of 512, the device gets one segment, and the
/// copy into it misses the TLB less; under a 1 GiB `PATCH` the server's CPU
/// time fell by a fifth against 4 KiB pages. Its first byte makes the whole
/// 2 MiB resident, though, so a body that is let go of its buffers for
/// being slow ([`DirectWriter::release`]) goes on with new mappings of
/// ordinary pages, resident only where filled: a body that trickles in
/// holds about what it has sent, not a kept 2 MiB. Only huge buffers are
/// kept for other writers.
struct Aligned {
    ptr: NonNull<u8>,
    huge: bool,
}

// SAFETY: the mapping is owned by this value alone, like a `Box<[u8]>`.
unsafe impl Send for Aligned {}

impl Aligned {
    /// A buffer for a body of this pace: a kept one if there is one and
    /// the body is not known to be slow, else a new one, huge if the body is
    /// fast. Fails only when the system is out of memory. Its bytes are
    /// whatever a previous writer left: only what is filled is ever written out.
    fn take(pace: Pace) -> io::Result<Self> {
        if pace == Pace::Slow {
            return Self::map(false);
        }
        let kept = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(buf) => Ok(buf),
            None => Self::map(pace == Pace::Fast),
        }
    }

    fn map(huge: bool) -> io::Result<Self> {
        // A huge buffer is cut out of a mapping one alignment larger.
        let span = if huge { 2 * CAPACITY } else { CAPACITY };
        // SAFETY: a new private anonymous mapping, owned by this value;
        // the parts of it outside the aligned buffer are unmapped at once.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if at == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let mut start = at as usize;
            if huge {
                start = start.next_multiple_of(CAPACITY);
                let head = start - at as usize;
                let tail = span - head - CAPACITY;
                if head > 0 {
                    libc::munmap(at, head);
                }
                if tail > 0 {
                    libc::munmap((start + CAPACITY) as *mut libc::c_void, tail);
                }
                // Advice only: without transparent huge pages (or elsewhere
                // than Linux) it is ordinary memory, aligned.
                #[cfg(target_os = "linux")]
                libc::madvise(start as *mut libc::c_void, CAPACITY, libc::MADV_HUGEPAGE);
            }
            let ptr = NonNull::new(start as *mut u8).expect("mmap returned a mapping");
            Ok(Self { ptr, huge })
        }
    }

    /// Keeps the buffer for the next writer, if it is a huge one and the
    /// pool is not full; frees it otherwise.
    fn keep(self) {
        if !self.huge {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED {
            pool.push(self);
        }
    }

    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is CAPACITY bytes, readable and writable, and
        // borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), CAPACITY) }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: as for `buf`, shared.
        unsafe { &std::slice::from_raw_parts(self.ptr.as_ptr(), CAPACITY)[..len] }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), CAPACITY) };
    }
}

/// What a writer knows of its body's pace, which decides its new buffers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pace {
    /// Nothing yet: a kept buffer if there is one (most bodies are fast),
    /// else a new ordinary one.
    Unknown,
    /// It has filled a buffer: huge ones.
    Fast,
    /// It was let go of its buffers ([`DirectWriter::release`]): new
    /// ordinary ones, until it fills one.
    Slow,
}

/// What runs after the writes queued before it, with their outcome.
pub type Then = Box<dyn FnOnce(io::Result<()>) + Send>;

/// A writer's work, run in order.
enum Job {
    /// A filled buffer to write out at `start`.
    Write {
        buf: Aligned,
        start: u64,
        len: usize,
    },
    /// Bytes that cannot be aligned, for the ordinary descriptor.
    Unaligned { bytes: Vec<u8>, at: u64 },
    /// Runs once every write queued before it is done.
    Then(Then),
}

/// A job's end: a written buffer back (for a [`Job::Write`]), and how it went.
type Done = (Option<Aligned>, io::Result<()>);

/// A writer's queue of jobs, and what runs them: one blocking thread at a
/// time, only while there are jobs.
struct Queue {
    direct: File,
    file: Arc<File>,
    runtime: tokio::runtime::Handle,
    pending: Mutex<Pending>,
    on_demand: OnDemand,
    done: mpsc::UnboundedSender<Done>,
}

struct Pending {
    jobs: VecDeque<Job>,
    /// The first failed write: every later `Then` learns of it, since the
    /// bytes before it are not all there.
    broken: Option<(io::ErrorKind, String)>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(self: &Arc<Self>, job: Job) {
        self.lock().jobs.push_back(job);
        let queue = self.clone();
        self.on_demand.start(&self.runtime, move || queue.run());
    }

    /// Runs the jobs until there are none.
    fn run(&self) {
        loop {
            let next = {
                let mut pending = self.lock();
                let broken = pending.broken.clone();
                pending.jobs.pop_front().map(|job| (job, broken))
            };
            let Some((job, broken)) = next else {
                if self.on_demand.may_stop(|| !self.lock().jobs.is_empty()) {
                    return;
                }
                continue;
            };
            let done = match job {
                Job::Write { buf, start, len } => {
                    let written = write_out(&self.direct, &self.file, buf.bytes(len), start);
                    (Some(buf), written)
                }
                Job::Unaligned { bytes, at } => (None, self.file.write_all_at(&bytes, at)),
                Job::Then(then) => {
                    then(match broken {
                        Some((kind, why)) => Err(io::Error::new(kind, why)),
                        None => Ok(()),
                    });
                    (None, Ok(()))
                }
            };
            if let Err(e) = &done.1 {
                self.lock()
                    .broken
                    .get_or_insert_with(|| (e.kind(), e.to_string()));
            }
            // A writer that is gone takes no buffers back: the pool does.
            if let Err(mpsc::error::SendError((Some(buf), _))) = self.done.send(done) {
                buf.keep();
            }
        }
    }
}

/// The direct descriptor of a staging file, its buffers and its queue of
/// writes. Full buffers are written out by the queue while the next ones
/// are filled and hashed on the request's task: the two no longer take turns.
pub struct DirectWriter {
    /// The buffer being filled, taken when the first byte comes.
    current: Option<Aligned>,
    /// File offset of the current buffer's first byte.
    start: u64,
    len: usize,
    spare: Vec<Aligned>,
    /// What is known of the body's pace, which decides new buffers.
    pace: Pace,
    queue: Arc<Queue>,
    done: mpsc::UnboundedReceiver<Done>,
    /// Jobs queued and not yet done.
    in_flight: usize,
    /// The first failed write, reported by the next write or flush.
    failed: Option<io::Error>,
}

impl DirectWriter {
    /// Writes through `direct`, falling back to `file` (the same staging
    /// file, opened without `O_DIRECT`) for what cannot be aligned, on
    /// blocking threads of `runtime`.
    pub fn new(direct: File, file: Arc<File>, runtime: tokio::runtime::Handle) -> Self {
        let (done_tx, done) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            direct,
            file,
            runtime,
            pending: Mutex::new(Pending {
                jobs: VecDeque::new(),
                broken: None,
            }),
            on_demand: OnDemand::default(),
            done: done_tx,
        });
        Self {
            current: None,
            start: 0,
            len: 0,
            spare: Vec::new(),
            pace: Pace::Unknown,
            queue,
            done,
            in_flight: 0,
            failed: None,
        }
    }

    /// Takes back a done job: its buffer, if it was a write, and its error.
    fn settle(&mut self, (buf, written): Done) {
        self.in_flight -= 1;
        if let Some(buf) = buf {
            // An ordinary buffer makes way for a huge one once the body is fast.
            if self.spare.len() < BUFFERS && (buf.huge || self.pace != Pace::Fast) {
                self.spare.push(buf);
            } else {
                buf.keep();
            }
        }
        if let Err(e) = written {
            self.failed.get_or_insert(e);
        }
    }

    /// Takes back the jobs done so far, without waiting.
    fn settle_done(&mut self) {
        while let Ok(done) = self.done.try_recv() {
            self.settle(done);
        }
    }

    /// The first failed write since the last call, if any.
    fn take_failed(&mut self) -> io::Result<()> {
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for one job to be done. Blocking.
    fn settle_one(&mut self) {
        match self.done.blocking_recv() {
            Some(done) => self.settle(done),
            // Cannot happen while the writer holds the queue; said anyway.
            None => {
                self.in_flight = 0;
                self.failed
                    .get_or_insert_with(|| io::Error::other("the writes stopped"));
            }
        }
    }

    /// Waits until a [`write`](Self::write) of `len` bytes can hand its
    /// full buffers to the queue with at most [`BUFFERS`] of them queued,
    /// the one being filled included: the device sets the pace. Blocking.
    pub fn ready(&mut self, len: usize) {
        self.settle_done();
        let fills = (self.len + len) / CAPACITY;
        while self.in_flight > 0 && self.in_flight + fills >= BUFFERS {
            self.settle_one();
        }
    }

    fn push(&mut self, job: Job) {
        self.queue.push(job);
        self.in_flight += 1;
    }

    /// Queues the current buffer's bytes for writing.
    fn submit(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Some(buf) = self.current.take() {
            let job = Job::Write {
                buf,
                start: self.start,
                len: self.len,
            };
            self.push(job);
        }
        self.len = 0;
    }

    /// Runs `then` once everything given so far is written, with the
    /// outcome (an error if any write failed, this one's or an earlier
    /// one's). Does not wait.
    pub fn then(&mut self, then: Then) {
        self.submit();
        self.push(Job::Then(then));
    }

    /// Writes `bytes` at `at`: buffered for direct writes where aligned,
    /// through the ordinary descriptor where not. Does not wait for the
    /// device; [`ready`](Self::ready) before it does.
    pub fn write(&mut self, mut bytes: &[u8], mut at: u64) -> io::Result<()> {
        if self.len > 0 && at != self.start + self.len as u64 {
            self.submit();
        }
        while !bytes.is_empty() {
            if self.len == 0 {
                let misaligned = at % ALIGN;
                if misaligned != 0 {
                    let head = ((ALIGN - misaligned) as usize).min(bytes.len());
                    let job = Job::Unaligned {
                        bytes: bytes[..head].to_vec(),
                        at,
                    };
                    self.push(job);
                    at += head as u64;
                    bytes = &bytes[head..];
                    continue;
                }
                self.start = at;
            }
            let current = match self.current.as_mut() {
                Some(current) => current,
                None => {
                    let buf = match self.spare.pop() {
                        Some(buf) => buf,
                        None => Aligned::take(self.pace)?,
                    };
                    self.current.insert(buf)
                }
            };
            let len = self.len;
            let take = (CAPACITY - len).min(bytes.len());
            copy(&mut current.buf()[len..len + take], &bytes[..take]);
            self.len += take;
            at += take as u64;
            bytes = &bytes[take..];
            if self.len == CAPACITY {
                self.pace = Pace::Fast;
                self.submit();
            }
        }
        self.take_failed()
    }

    /// Gives the buffers this writer holds back to the pool (which frees
    /// what it does not keep), once [`flush`](Self::flush) has written
    /// them out: a request whose body has stalled, or comes too slowly to
    /// fill a buffer soon, keeps no buffer while it waits. Its next buffers
    /// are ordinary ones, until it fills one.
    pub fn release(&mut self) {
        self.pace = Pace::Slow;
        self.settle_done();
        for buf in self.spare.drain(..) {
            buf.keep();
        }
    }

    /// Writes out everything given so far and waits until it is written:
    /// the aligned part directly, the rest (less than a page, at the end of
    /// the bytes) through the plain descriptor. Blocking.
    pub fn flush(&mut self) -> io::Result<()> {
        self.submit();
        while self.in_flight > 0 {
            self.settle_one();
        }
        self.take_failed()
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        // Buffers still queued come back to the pool from the queue.
        self.release();
        if let Some(buf) = self.current.take() {
            buf.keep();
        }
    }
}

/// Copies `src` into `dst` (of the same length) with plain vector loads and
/// streaming (non-temporal) stores.
///
/// Not `copy_from_slice`: glibc's `memcpy` uses `rep movsb` above about
/// 2 KiB on CPUs with fast short `rep movsb`, and on AMD Zen that runs at
/// well under half the speed of a vector loop when, as here, the source
/// (hyper's read buffer) and the destination (an aligned buffer) are
/// unaligned to each other. Streaming stores because nothing on this CPU
/// reads the destination again — the disk's DMA does — so its lines need
/// not be fetched into the cache first, nor evict the frames still to be
/// hashed. Profiled on an EPYC under a 1 GiB PATCH, the copy took 21% of
/// the server's CPU time with `memcpy`, 15% with cached vector stores and
/// 8% with streaming ones (the server's CPU time per GiB fell by 8%: median
/// of 8 ABBA pairs, 7 of them won).
fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        const STEP: usize = 64;
        let head = (dst.as_ptr().align_offset(STEP)).min(src.len());
        dst[..head].copy_from_slice(&src[..head]);
        let whole = head + (src.len() - head) / STEP * STEP;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = head;
        while i < whole {
            // SAFETY: `i + STEP <= len` for both slices, which do not
            // overlap (one is borrowed mutably); SSE2 is part of x86_64;
            // the loads take any alignment and `d + i` is 64-byte aligned.
            unsafe {
                let a = _mm_loadu_si128(s.add(i) as *const __m128i);
                let b = _mm_loadu_si128(s.add(i + 16) as *const __m128i);
                let c = _mm_loadu_si128(s.add(i + 32) as *const __m128i);
                let e = _mm_loadu_si128(s.add(i + 48) as *const __m128i);
                _mm_stream_si128(d.add(i) as *mut __m128i, a);
                _mm_stream_si128(d.add(i + 16) as *mut __m128i, b);
                _mm_stream_si128(d.add(i + 32) as *mut __m128i, c);
                _mm_stream_si128(d.add(i + 48) as *mut __m128i, e);
            }
            i += STEP;
        }
        // SAFETY: SSE is part of x86_64. Orders the streaming stores before
        // the buffer is handed to the thread that writes it out.
        unsafe { _mm_sfence() };
        dst[whole..].copy_from_slice(&src[whole..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Writes `buf` at `start`: its aligned part through `direct`, the rest
/// through `file`.
fn write_out(direct: &File, file: &File, buf: &[u8], start: u64) -> io::Result<()> {
    let aligned = buf.len() / ALIGN as usize * ALIGN as usize;
    if aligned > 0 {
        match direct.write_all_at(&buf[..aligned], start) {
            Ok(()) => {}
            // A filesystem that takes O_DIRECT at open but not these
            // writes: the ordinary descriptor does the same job.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                file.write_all_at(&buf[..aligned], start)?
            }
            Err(e) => return Err(e),
        }
    }
    if buf.len() > aligned {
        file.write_all_at(&buf[aligned..], start + aligned as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime for the writers' blocking threads.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    /// A staging file of `len` bytes at `path` and a writer on it. tmpfs
    /// refuses O_DIRECT; the plain descriptor then stands in, and the
    /// buffering logic is exercised all the same.
    fn writer(path: &std::path::Path, len: usize, rt: &tokio::runtime::Runtime) -> DirectWriter {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.set_len(len as u64).unwrap();
        let direct =
            crate::store::staging::open_direct(path).unwrap_or_else(|| file.try_clone().unwrap());
        DirectWriter::new(direct, Arc::new(file), rt.handle().clone())
    }

    /// A body let go of its buffers for being slow goes on with ordinary
    /// pages, whatever is kept, so it holds only the pages it fills; once it
    /// has filled a buffer whole, its new buffers are huge pages at aligned
    /// addresses, and only those are kept for other writers.
    #[test]
    fn huge_buffers_only_for_bodies_that_fill_one() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        let len = 3 * CAPACITY;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let mut w = writer(&path, len, &rt);
        let page = ALIGN as usize;
        w.write(&data[..page], 0).unwrap();
        w.flush().unwrap();
        w.release();
        // A huge buffer kept, which the slow body does not get.
        Aligned::map(true).unwrap().keep();
        w.write(&data[page..2 * page], page as u64).unwrap();
        assert!(
            !w.current.as_ref().unwrap().huge,
            "a slow body's buffer is ordinary"
        );
        w.ready(CAPACITY);
        w.write(&data[2 * page..CAPACITY + 2 * page], 2 * page as u64)
            .unwrap();
        let current = w.current.as_ref().unwrap();
        assert!(current.huge, "the buffer after a full one is huge");
        assert_eq!(
            current.ptr.as_ptr() as usize % CAPACITY,
            0,
            "aligned to its size"
        );
        w.ready(len - CAPACITY - 2 * page);
        w.write(&data[CAPACITY + 2 * page..], (CAPACITY + 2 * page) as u64)
            .unwrap();
        w.flush().unwrap();
        assert!(
            w.spare.iter().all(|b| b.huge),
            "the ordinary buffer was let go"
        );
        drop(w);
        assert!(POOL.lock().unwrap().iter().all(|b| b.huge));
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    /// The vector copy moves every byte, whatever the lengths and the
    /// alignments of source and destination.
    #[test]
    fn copy_moves_every_byte() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 131 % 251) as u8).collect();
        for len in [0, 1, 15, 63, 64, 65, 127, 128, 1000, 4095, 4097] {
            for (from, to) in [(0, 0), (1, 0), (0, 3), (17, 33), (63, 1)] {
                let mut dst = vec![0xAAu8; len + to + 8];
                copy(&mut dst[to..to + len], &src[from..from + len]);
                assert_eq!(&dst[to..to + len], &src[from..from + len], "len {len}");
                assert!(dst[..to].iter().chain(&dst[to + len..]).all(|b| *b == 0xAA));
            }
        }
    }

    /// Whatever the pieces and offsets, the file ends up with the bytes.
    #[test]
    fn pieces_land_where_they_belong() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        let len = 3 * CAPACITY + 5_000;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut w = writer(&path, len, &rt);
        // A first request from 0 that stops mid-page, a resumed one from
        // there in uneven pieces, and a gap written out of order.
        let cut = 10_001;
        w.write(&data[..cut], 0).unwrap();
        w.flush().unwrap();
        let mut at = cut;
        for piece in data[cut..2 * CAPACITY].chunks(77_777) {
            w.ready(piece.len());
            w.write(piece, at as u64).unwrap();
            at += piece.len();
        }
        w.ready(5_000);
        w.write(&data[3 * CAPACITY..], 3 * CAPACITY as u64).unwrap();
        w.ready(CAPACITY);
        w.write(&data[2 * CAPACITY..3 * CAPACITY], 2 * CAPACITY as u64)
            .unwrap();
        w.flush().unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }

    /// What is queued with `then` runs after the writes before it, without
    /// the caller waiting, and sees their bytes in the file.
    #[test]
    fn then_runs_once_the_bytes_before_it_are_written() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        let len = 2 * CAPACITY + 3 * ALIGN as usize;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let mut w = writer(&path, len, &rt);
        let (tx, rx) = std::sync::mpsc::channel();
        w.write(&data, 0).unwrap();
        let seen = path.clone();
        w.then(Box::new(move |written| {
            let bytes = std::fs::read(&seen).unwrap();
            tx.send((written.is_ok(), bytes)).unwrap();
        }));
        let (ok, bytes) = rx.recv().unwrap();
        assert!(ok);
        assert!(bytes == data);
        w.flush().unwrap();
    }

    /// A write that fails is reported by the next flush, and what is
    /// queued behind it learns that the bytes are not all there.
    #[test]
    fn a_failed_write_is_reported_and_fails_what_follows() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        std::fs::write(&path, vec![0u8; 2 * CAPACITY]).unwrap();
        // Descriptors that cannot write.
        let read_only = || File::open(&path).unwrap();
        let mut w = DirectWriter::new(read_only(), Arc::new(read_only()), rt.handle().clone());
        w.write(&vec![7u8; CAPACITY], 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        w.then(Box::new(move |written| tx.send(written.is_ok()).unwrap()));
        assert!(
            !rx.recv().unwrap(),
            "a commit behind a failed write must fail"
        );
        assert!(w.flush().is_err());
        assert!(std::fs::read(&path).unwrap().iter().all(|b| *b == 0));
    }
}
