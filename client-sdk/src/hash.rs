//! Hashing inputs: files memory-mapped and hashed on all cores, readers
//! streamed (and spooled to a temporary file so that they can be uploaded).

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use upcache_protocol::InputHash;

use crate::error::Result;
use crate::progress::{Event, Reporter};

/// Bytes hashed between two progress events (and the resident window of the
/// mapping: pages already hashed are released).
const SLICE: usize = 16 << 20;

/// Hashes a file with BLAKE3 on all cores, reading it through a memory map.
pub async fn hash_file(path: &Path) -> Result<InputHash> {
    hash_file_reporting(path, &Reporter::default()).await
}

pub(crate) async fn hash_file_reporting(path: &Path, progress: &Reporter) -> Result<InputHash> {
    let path = path.to_owned();
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || -> Result<InputHash> {
        let file = std::fs::File::open(&path)?;
        let total = file.metadata()?.len();
        let mut hasher = blake3::Hasher::new();
        if total == 0 {
            progress.emit(Event::Hashing { done: 0, total });
            return Ok(InputHash::from(hasher.finalize()));
        }
        // SAFETY: the map is read-only and private to this call. If another
        // process truncates the file meanwhile, reading past the new end
        // would fault; uploads of files being rewritten are unsupported,
        // and the server's whole-input check rejects a changed file anyway.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let mut done = 0usize;
        for slice in map.chunks(SLICE) {
            hasher.update_rayon(slice);
            // The hashed pages are file-backed and clean: drop them from this
            // process so a large file does not inflate its resident memory.
            // SAFETY: the range lies inside the map, and the slice is not used again.
            unsafe {
                let _ = map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    done,
                    slice.len(),
                );
            }
            done += slice.len();
            progress.emit(Event::Hashing {
                done: done as u64,
                total,
            });
        }
        Ok(InputHash::from(hasher.finalize()))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Hashes a reader while copying it into `spool` (a file the caller owns).
/// Returns the hash and the length.
pub(crate) async fn spool_reader<R: AsyncRead + Unpin>(
    mut reader: R,
    spool: &mut tokio::fs::File,
    progress: &Reporter,
) -> Result<(InputHash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        spool.write_all(&buf[..n]).await?;
        total += n as u64;
        progress.emit(Event::Hashing { done: total, total });
    }
    spool.flush().await?;
    Ok((InputHash::from(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_hash_matches_blake3_across_slices() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, SLICE - 1, SLICE + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            assert_eq!(
                hash_file(&path).await.unwrap(),
                InputHash::of(&data),
                "length {len}"
            );
        }
    }

    #[tokio::test]
    async fn readers_are_hashed_and_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut spool = tokio::fs::File::create(dir.path().join("spool"))
            .await
            .unwrap();
        let (hash, len) = spool_reader(&data[..], &mut spool, &Reporter::default())
            .await
            .unwrap();
        assert_eq!((hash, len), (InputHash::of(&data), data.len() as u64));
        assert_eq!(std::fs::read(dir.path().join("spool")).unwrap(), data);
    }
}
