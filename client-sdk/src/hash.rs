//! Hashing inputs block by block: files memory-mapped and hashed on all
//! cores, readers streamed (and spooled to a temporary file so that they can
//! be uploaded). The input's BLAKE3 is merged from the blocks' chaining
//! values, which the upload then sends as the blocks' hashes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use blake3::hazmat::HasherExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use upcache_protocol::blocks::DEFAULT_BLOCK_SIZE;
use upcache_protocol::{tree, InputHash, Layout};

use crate::error::Result;
use crate::progress::{Event, Reporter};

/// Largest piece hashed between two progress events (and the resident
/// window of the mapping: pages already hashed are released).
const SLICE: usize = 16 << 20;

/// An input hashed block by block: its BLAKE3 and each block's chaining
/// value in the input's tree, for a block size. The chaining values are
/// what a block `PUT` sends in `Upload-Block-Hash: cv=…`: the server checks
/// them against the value it computes anyway, so neither side hashes a
/// block twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hashed {
    pub input: InputHash,
    pub length: u64,
    pub block_size: u64,
    pub cvs: Vec<[u8; 32]>,
}

impl Hashed {
    /// The chaining value to send with block `n` of `layout`, if this hash
    /// was made with that layout.
    pub fn cv(&self, layout: &Layout, n: u64) -> Option<[u8; 32]> {
        (layout.block_size == self.block_size && layout.length == self.length)
            .then(|| self.cvs.get(n as usize).copied())
            .flatten()
    }
}

/// Hashes a file with BLAKE3 on all cores, reading it through a memory map.
pub async fn hash_file(path: &Path) -> Result<InputHash> {
    Ok(
        hash_file_reporting(path, DEFAULT_BLOCK_SIZE, &Reporter::default())
            .await?
            .input,
    )
}

/// One block's chaining value (its root hash if it is the whole input).
/// Large blocks are spread over all cores; small ones are left to the
/// caller's threads.
fn block_cv(layout: &Layout, n: u64, bytes: &[u8], parallel: bool) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(n * layout.block_size);
    for piece in bytes.chunks(SLICE) {
        if parallel {
            hasher.update_rayon(piece);
        } else {
            hasher.update(piece);
        }
    }
    if layout.blocks() == 1 {
        *hasher.finalize().as_bytes()
    } else {
        hasher.finalize_non_root()
    }
}

pub(crate) async fn hash_file_reporting(
    path: &Path,
    block_size: u64,
    progress: &Reporter,
) -> Result<Hashed> {
    let path = path.to_owned();
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || -> Result<Hashed> {
        let file = std::fs::File::open(&path)?;
        let length = file.metadata()?.len();
        let layout = Layout { length, block_size };
        if length == 0 {
            progress.emit(Event::Hashing { done: 0, total: 0 });
            return Ok(Hashed {
                input: InputHash::of(b""),
                length,
                block_size,
                cvs: Vec::new(),
            });
        }
        // SAFETY: the map is read-only and private to this call. If another
        // process truncates the file meanwhile, reading past the new end
        // would fault; uploads of files being rewritten are unsupported,
        // and the server's whole-input check rejects a changed file anyway.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let blocks = layout.blocks();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        // Few blocks: one at a time, each on all cores. Many: a block per core.
        let parallel_within = blocks < threads * 2;
        let workers = if parallel_within { 1 } else { threads };
        let next = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let cvs = std::sync::Mutex::new(vec![[0u8; 32]; blocks as usize]);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= blocks {
                        return;
                    }
                    let range = layout.range(n);
                    let (start, end) = (range.start as usize, range.end as usize);
                    let cv = block_cv(&layout, n, &map[start..end], parallel_within);
                    cvs.lock().expect("cvs lock")[n as usize] = cv;
                    // The hashed pages are file-backed and clean: drop them from
                    // this process so a large file does not inflate its
                    // resident memory.
                    // SAFETY: the range lies inside the map and is not read again here.
                    unsafe {
                        let _ = map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            start,
                            end - start,
                        );
                    }
                    let d = done.fetch_add(end as u64 - start as u64, Ordering::Relaxed)
                        + (end - start) as u64;
                    progress.emit(Event::Hashing {
                        done: d,
                        total: length,
                    });
                });
            }
        });
        let cvs = cvs.into_inner().expect("cvs lock");
        Ok(Hashed {
            input: InputHash::from(tree::root(&layout, &cvs)),
            length,
            block_size,
            cvs,
        })
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Hashes a reader block by block while copying it into `spool` (a file
/// the caller owns).
pub(crate) async fn spool_reader<R: AsyncRead + Unpin>(
    mut reader: R,
    spool: &mut tokio::fs::File,
    block_size: u64,
    progress: &Reporter,
) -> Result<Hashed> {
    let mut blocks = StreamingBlocks::new(block_size);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        blocks.update(&buf[..n]);
        spool.write_all(&buf[..n]).await?;
        total += n as u64;
        progress.emit(Event::Hashing { done: total, total });
    }
    spool.flush().await?;
    Ok(blocks.finish())
}

/// Block chaining values of a stream whose length is known only at its
/// end: a full block is finalized once more bytes follow it, since the
/// only block of a one-block input is finalized as the root.
struct StreamingBlocks {
    block_size: u64,
    length: u64,
    current: blake3::Hasher,
    /// Bytes in the block `current` hashes.
    filled: u64,
    cvs: Vec<[u8; 32]>,
}

impl StreamingBlocks {
    fn new(block_size: u64) -> Self {
        Self {
            block_size,
            length: 0,
            current: blake3::Hasher::new(),
            filled: 0,
            cvs: Vec::new(),
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.filled == self.block_size {
                // More bytes follow a full block: it is not the only one.
                self.cvs.push(self.current.finalize_non_root());
                self.current = blake3::Hasher::new();
                self.current.set_input_offset(self.length);
                self.filled = 0;
            }
            let take = ((self.block_size - self.filled) as usize).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.filled += take as u64;
            self.length += take as u64;
            bytes = &bytes[take..];
        }
    }

    fn finish(mut self) -> Hashed {
        let layout = Layout {
            length: self.length,
            block_size: self.block_size,
        };
        if self.length > 0 {
            let last = if self.cvs.is_empty() {
                *self.current.finalize().as_bytes()
            } else {
                self.current.finalize_non_root()
            };
            self.cvs.push(last);
        }
        Hashed {
            input: InputHash::from(tree::root(&layout, &self.cvs)),
            length: self.length,
            block_size: self.block_size,
            cvs: self.cvs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i * 7 % 251) as u8 ^ (i >> 13) as u8)
            .collect()
    }

    /// What the server computes for block `n` (the protocol crate's hasher).
    fn server_cv(layout: &Layout, n: u64, input: &[u8]) -> [u8; 32] {
        let r = layout.range(n);
        let mut h = tree::BlockHasher::new(layout, n);
        h.update(&input[r.start as usize..r.end as usize]);
        h.finish()
    }

    #[tokio::test]
    async fn file_hash_and_block_values_match_blake3_and_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let bs = 1 << 16;
        // Empty, one partial block, exactly one block, a few (each on all
        // cores), many (a block per core), with a partial last block.
        for len in [0usize, 1, bs, bs + 1, 3 * bs - 5, 40 * bs + 12_345] {
            let input = data(len);
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &input).unwrap();
            let hashed = hash_file_reporting(&path, bs as u64, &Reporter::default())
                .await
                .unwrap();
            assert_eq!(hashed.input, InputHash::of(&input), "length {len}");
            let layout = Layout {
                length: len as u64,
                block_size: bs as u64,
            };
            assert_eq!(hashed.cvs.len() as u64, layout.blocks());
            for n in 0..layout.blocks() {
                assert_eq!(
                    hashed.cv(&layout, n),
                    Some(server_cv(&layout, n, &input)),
                    "length {len}, block {n}"
                );
            }
            let other = Layout {
                block_size: 2 * bs as u64,
                ..layout
            };
            assert_eq!(hashed.cv(&other, 0), None, "another layout's values");
            assert_eq!(hash_file(&path).await.unwrap(), InputHash::of(&input));
        }
    }

    #[tokio::test]
    async fn readers_are_hashed_block_by_block_and_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let bs = 1u64 << 16;
        for len in [
            0usize,
            5,
            bs as usize,
            bs as usize + 1,
            2 * bs as usize,
            3_000_000,
        ] {
            let input = data(len);
            let path = dir.path().join(format!("spool{len}"));
            let mut spool = tokio::fs::File::create(&path).await.unwrap();
            let hashed = spool_reader(&input[..], &mut spool, bs, &Reporter::default())
                .await
                .unwrap();
            assert_eq!(hashed.input, InputHash::of(&input), "length {len}");
            assert_eq!(hashed.length, len as u64);
            let layout = Layout {
                length: len as u64,
                block_size: bs,
            };
            for n in 0..layout.blocks() {
                assert_eq!(hashed.cv(&layout, n), Some(server_cv(&layout, n, &input)));
            }
            assert_eq!(std::fs::read(&path).unwrap(), input);
        }
    }
}
