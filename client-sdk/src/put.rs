//! The main call: hash, probe, upload only what is missing, wait, fetch.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use upcache_protocol::blocks::parse_ranges;
use upcache_protocol::headers::BlockHash;
use upcache_protocol::{InputRef, Key, Layout, Operation, ProblemType, State, Status};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::hash::{hash_file_reporting, spool_reader, Hashed};
use crate::progress::{Event, ProgressFn, Reporter};
use crate::retry::Retrier;

/// An upload in progress: the entry, the file and its block hashes.
struct Upload<'a> {
    status: &'a Status,
    file: Arc<std::fs::File>,
    hashed: &'a Hashed,
}

/// A complete entry, ready to be fetched.
#[derive(Debug, Clone)]
pub struct Done {
    client: Client,
    /// The entry's key.
    pub key: Key,
    /// Its status: `state` is complete and `result` says what the result is.
    pub status: Status,
    /// Whether the result came without uploading a byte.
    pub hit: bool,
    /// Input bytes put on the wire by this call (retries included).
    pub bytes_sent: u64,
}

impl Client {
    /// Makes sure `operation` of the file at `path` is computed, uploading
    /// only what the server is missing, and waits until it is complete.
    pub async fn put_file(
        &self,
        path: impl AsRef<Path>,
        operation: &serde_json::Value,
    ) -> Result<Done> {
        self.put_file_with(path, operation, None).await
    }

    /// [`Client::put_file`] with progress reporting.
    pub async fn put_file_with(
        &self,
        path: impl AsRef<Path>,
        operation: &serde_json::Value,
        progress: Option<ProgressFn>,
    ) -> Result<Done> {
        let op = Operation::parse(operation)?.resolve_auto(Some(&self.options.accept));
        let reporter = Reporter::new(progress);
        let hashed =
            hash_file_reporting(path.as_ref(), self.hashing_block_size(), &reporter).await?;
        self.put_hashed(path.as_ref(), hashed, &op, &reporter).await
    }

    /// Like [`Client::put_file`], for bytes from a reader. The reader is
    /// hashed as it streams and spooled to a temporary file, from which the
    /// missing blocks are sent.
    pub async fn put_reader<R: AsyncRead + Unpin>(
        &self,
        reader: R,
        operation: &serde_json::Value,
        progress: Option<ProgressFn>,
    ) -> Result<Done> {
        let op = Operation::parse(operation)?.resolve_auto(Some(&self.options.accept));
        let reporter = Reporter::new(progress);
        let spool = tempfile::NamedTempFile::new()?;
        let mut file = tokio::fs::File::from_std(spool.reopen()?);
        let hashed = spool_reader(reader, &mut file, self.hashing_block_size(), &reporter).await?;
        drop(file);
        self.put_hashed(spool.path(), hashed, &op, &reporter).await
    }

    /// The block size inputs are hashed with: the one this client asks for,
    /// or the protocol's default. (If the entry turns out to use another,
    /// blocks are sent with their BLAKE3 alone instead of their chaining
    /// values: correct, with one more hash of each block on both sides.)
    fn hashing_block_size(&self) -> u64 {
        self.options
            .block_size
            .unwrap_or(upcache_protocol::blocks::DEFAULT_BLOCK_SIZE)
    }

    async fn put_hashed(
        &self,
        path: &Path,
        hashed: Hashed,
        op: &Operation,
        reporter: &Reporter,
    ) -> Result<Done> {
        let input = hashed.input;
        let key = Key::derive(&input, op);
        reporter.emit(Event::Hashed { input, key });
        let file = Arc::new(std::fs::File::open(path)?);
        let length = file.metadata()?.len();
        let retrier = Retrier::new(self.options.retry.clone(), reporter.clone());
        let sent = Arc::new(AtomicU64::new(0));
        loop {
            let status = match self
                .create(
                    InputRef {
                        blake3: input,
                        length,
                    },
                    op,
                    self.options.block_size,
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    retrier.failed(e).await?;
                    continue;
                }
            };
            retrier.progressed();
            let missing = expand(&status.missing)?;
            reporter.emit(Event::Probed {
                state: status.state,
                blocks_missing: missing.len() as u64,
                blocks_total: status.blocks_total,
            });
            match status.state {
                State::Uploading => {
                    let upload = Upload {
                        status: &status,
                        file: file.clone(),
                        hashed: &hashed,
                    };
                    self.upload_blocks(upload, missing, &sent, &retrier, reporter)
                        .await?;
                }
                State::Failed => return Err(failure(&status)),
                State::Processing | State::Complete => {
                    let status = self.wait_with(&key, &retrier, reporter).await?;
                    let bytes_sent = sent.load(Ordering::Relaxed);
                    reporter.emit(Event::Complete {
                        hit: bytes_sent == 0,
                    });
                    return Ok(Done {
                        client: self.clone(),
                        key,
                        status,
                        hit: bytes_sent == 0,
                        bytes_sent,
                    });
                }
            }
        }
    }

    /// Sends the `missing` blocks of an upload from `file` over
    /// `concurrency` parallel requests, each block with its BLAKE3. Retries
    /// per the policy; stops early when the entry stops accepting blocks
    /// (another client finished it).
    ///
    /// A block whose request failed goes to the back of the queue, and is
    /// sent again only if a fresh status still lists it as missing: a request
    /// the network cut off may have delivered the block anyway — or still be
    /// delivering it, holding the block busy on the server — and sending it
    /// again costs a whole block.
    async fn upload_blocks(
        &self,
        upload: Upload<'_>,
        missing: Vec<u64>,
        sent: &Arc<AtomicU64>,
        retrier: &Retrier,
        reporter: &Reporter,
    ) -> Result<()> {
        let Upload {
            status,
            file,
            hashed,
        } = upload;
        let layout = Layout {
            length: status.input.length,
            block_size: status.block_size,
        };
        let total_blocks = layout.blocks();
        // Each block with whether a request for it failed.
        let queue = Mutex::new(
            missing
                .into_iter()
                .map(|n| (n, false))
                .collect::<VecDeque<_>>(),
        );
        let over = AtomicBool::new(false);
        let stored = AtomicU64::new(status.blocks_received * layout.block_size.min(layout.length));
        let done_blocks = AtomicU64::new(status.blocks_received);
        let (queue, over) = (&queue, &over);
        let block_stored = |n: u64| {
            retrier.progressed();
            let s = stored.fetch_add(layout.block_len(n), Ordering::Relaxed) + layout.block_len(n);
            let d = done_blocks.fetch_add(1, Ordering::Relaxed) + 1;
            reporter.emit(Event::Uploading {
                sent: sent.load(Ordering::Relaxed),
                stored: s.min(layout.length),
                total: layout.length,
                blocks_done: d.min(total_blocks),
                blocks_total: total_blocks,
            });
        };
        // After a failed request for block `n`: `Err` to give up.
        let failed = |n: u64, e: Error| {
            let kind = e.problem().and_then(|p| p.kind());
            let gone = matches!(
                kind,
                Some(ProblemType::NotUploading | ProblemType::NotFound)
            );
            if gone {
                // Finished (or expired) meanwhile: the next probe tells which.
                over.store(true, Ordering::Relaxed);
            } else {
                // To the back of the queue: the other blocks go on meanwhile.
                queue.lock().expect("queue lock").push_back((n, true));
            }
            async move {
                if gone {
                    return Ok(());
                }
                let retried = match kind {
                    Some(ProblemType::UploadBusy) => retrier.busy(e).await,
                    _ => retrier.failed(e).await,
                };
                retried.inspect_err(|_| {
                    over.store(true, Ordering::Relaxed);
                })
            }
        };
        let source = BlockSource::map(&file, layout)?;
        let source = &source;
        let worker = || async {
            loop {
                if over.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let Some((n, failed_before)) = queue.lock().expect("queue lock").pop_front() else {
                    return Ok(());
                };
                if failed_before {
                    match self.status(&status.key).await {
                        Ok(now) if now.state != State::Uploading => {
                            over.store(true, Ordering::Relaxed);
                            continue;
                        }
                        Ok(now) if !is_missing(&now.missing, n)? => {
                            block_stored(n);
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failed(n, e).await?;
                            continue;
                        }
                    }
                }
                // The block's chaining value from the hashing pass, if it was
                // made with this entry's layout; else its BLAKE3 alone.
                let put = match hashed.cv(&layout, n) {
                    Some(cv) => {
                        let hash = BlockHash::Chaining(cv);
                        self.put_block_hashed(&status.key, n, source.block(n), hash, sent)
                            .await
                    }
                    None => self.put_block(&status.key, n, source.block(n), sent).await,
                };
                match put {
                    Ok(now) => {
                        source.release(n);
                        block_stored(n);
                        if now != State::Uploading {
                            over.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => failed(n, e).await?,
                }
            }
        };
        let workers = self.options.concurrency.max(1);
        let results = futures_util::future::join_all((0..workers).map(|_| worker())).await;
        results.into_iter().collect()
    }

    /// Waits, with reconnects, until the entry is complete. A failed
    /// operation is returned as its problem.
    pub async fn wait(&self, key: &Key) -> Result<Status> {
        let retrier = Retrier::new(self.options.retry.clone(), Reporter::default());
        self.wait_with(key, &retrier, &Reporter::default()).await
    }

    async fn wait_with(&self, key: &Key, retrier: &Retrier, reporter: &Reporter) -> Result<Status> {
        loop {
            match self.wait_once(key).await {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {
                    // The server answered: it is alive and working.
                    retrier.progressed();
                    reporter.emit(Event::Waiting {
                        state: State::Processing,
                    });
                }
                Err(e) => retrier.failed(e).await?,
            }
        }
    }

    /// Writes the result of a complete entry to `out`, resuming after
    /// interruptions with ranges and checking the result's BLAKE3 at the end.
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        status: &Status,
        out: &mut W,
    ) -> Result<u64> {
        let info = status
            .result
            .as_ref()
            .ok_or_else(|| Error::Protocol("the entry has no result yet".into()))?;
        let retrier = Retrier::new(self.options.retry.clone(), Reporter::default());
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        while written < info.length {
            let resp = match self.fetch_result(&status.key, written).await {
                Ok(Some(r)) => r,
                Ok(None) => return Err(Error::Protocol("the result went away".into())),
                Err(e) => {
                    retrier.failed(e).await?;
                    continue;
                }
            };
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        hasher.update(&bytes);
                        out.write_all(&bytes).await?;
                        written += bytes.len() as u64;
                        retrier.progressed();
                    }
                    Err(e) => {
                        retrier.failed(e.into()).await?;
                        break;
                    }
                }
            }
        }
        out.flush().await?;
        let got = hasher.finalize().to_hex().to_string();
        if got != info.blake3.to_hex() {
            return Err(Error::CorruptResult {
                expected: info.blake3.to_hex(),
                got,
            });
        }
        Ok(written)
    }
}

impl Done {
    /// The result's bytes.
    pub async fn bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.client.download(&self.status, &mut out).await?;
        Ok(out)
    }

    /// Writes the result to `path` (through a temporary file in the same
    /// directory, renamed into place once complete and verified).
    pub async fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save(&self.client, &self.status, path.as_ref()).await
    }

    /// The result as a stream of chunks (one request, not resumed).
    pub async fn stream(&self) -> Result<impl Stream<Item = Result<Bytes>>> {
        let resp = self
            .client
            .fetch_result(&self.key, 0)
            .await?
            .ok_or_else(|| Error::Protocol("not ready".into()))?;
        Ok(resp.bytes_stream().map_err(Error::from))
    }
}

/// Writes a complete entry's result to `path`, atomically.
pub async fn save(client: &Client, status: &Status, path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    client.download(status, &mut file).await?;
    file.sync_all().await?;
    drop(file);
    tmp.persist(path).map_err(|e| Error::Io(e.error))?;
    Ok(())
}

fn failure(status: &Status) -> Error {
    match &status.error {
        Some(p) => Error::Problem {
            status: p.status,
            problem: Box::new(p.clone()),
        },
        None => Error::Protocol("the entry failed without a problem document".into()),
    }
}

/// Block indices of a `0-3,7` range list.
pub(crate) fn expand(ranges: &str) -> Result<Vec<u64>> {
    let ranges = parse_ranges(ranges).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(ranges.into_iter().flat_map(|(a, b)| a..=b).collect())
}

/// Whether block `n` is in a `0-3,7` range list.
fn is_missing(ranges: &str, n: u64) -> Result<bool> {
    let ranges = parse_ranges(ranges).map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(ranges.iter().any(|&(a, b)| (a..=b).contains(&n)))
}

/// The blocks of an input file, as zero-copy slices of a read-only memory
/// map: nothing is copied into buffers of our own, and the pages of a block
/// are released once the server acknowledged it, so resident memory stays
/// near the blocks in flight.
struct BlockSource {
    map: Option<Arc<memmap2::Mmap>>,
    layout: Layout,
}

/// One block of the map, owning a reference to it.
struct MapSlice {
    map: Arc<memmap2::Mmap>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

impl BlockSource {
    fn map(file: &std::fs::File, layout: Layout) -> Result<Self> {
        if file.metadata()?.len() != layout.length {
            return Err(Error::Protocol(
                "the file changed size since it was hashed".into(),
            ));
        }
        // SAFETY: read-only and private to this call; a file truncated by
        // another process meanwhile would fault on access — uploading a file
        // that is being rewritten is unsupported (the server's whole-input
        // check would reject it anyway).
        let map = (layout.length > 0)
            .then(|| unsafe { memmap2::Mmap::map(file) })
            .transpose()?;
        Ok(Self {
            map: map.map(Arc::new),
            layout,
        })
    }

    fn block(&self, n: u64) -> Bytes {
        let r = self.layout.range(n);
        match &self.map {
            Some(map) => Bytes::from_owner(MapSlice {
                map: map.clone(),
                range: r.start as usize..r.end as usize,
            }),
            None => Bytes::new(),
        }
    }

    fn release(&self, n: u64) {
        if let Some(map) = &self.map {
            let r = self.layout.range(n);
            // SAFETY: a read-only, file-backed map: dropped pages are read
            // again from the file if touched later.
            unsafe {
                let _ = map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    r.start as usize,
                    (r.end - r.start) as usize,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use upcache_protocol::blocks::encode_ranges;

    proptest! {
        #[test]
        fn missing_ranges_expand_to_their_blocks(set in proptest::collection::btree_set(0u64..2000, 0..200)) {
            let encoded = encode_ranges(set.iter().copied());
            prop_assert_eq!(expand(&encoded).unwrap(), set.into_iter().collect::<Vec<_>>());
        }
    }

    proptest! {
        #[test]
        fn a_block_is_missing_iff_its_range_list_holds_it(
            set in proptest::collection::btree_set(0u64..300, 0..60),
            n in 0u64..310,
        ) {
            let encoded = encode_ranges(set.iter().copied());
            prop_assert_eq!(is_missing(&encoded, n).unwrap(), set.contains(&n));
        }
    }

    #[test]
    fn malformed_missing_is_a_protocol_error() {
        assert!(matches!(expand("3-1"), Err(Error::Protocol(_))));
        assert!(matches!(is_missing("3-1", 2), Err(Error::Protocol(_))));
    }
}
