//! Input files: pseudo-random bytes (so neither the disk nor anything on the
//! way can take a shortcut on zeros), hashed while they are written and
//! fsynced before any timing starts — the write-back of the input must not
//! compete with the server's own fdatasyncs.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use upcache_protocol::InputHash;

/// Bytes generated and written per step.
const CHUNK: usize = 8 << 20;

/// A fast xorshift64 generator; the content only has to look random to
/// the storage, not to an adversary.
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator for `seed`; different seeds give different streams.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds start far apart (and never at 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` above zero; the slight modulo bias does not
    /// matter for picking scenarios and sizes).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Overwrites `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// An input file on disk.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub length: u64,
    pub hash: InputHash,
    /// Time taken to generate, hash, write and fsync it.
    pub made_in: Duration,
}

impl Input {
    /// Writes `length` bytes of the stream `seed` to `path`, hashing them on
    /// the way, and fsyncs the file. Blocking.
    pub fn generate(path: &Path, length: u64, seed: u64) -> std::io::Result<Self> {
        let started = Instant::now();
        let mut file = File::create(path)?;
        let mut rng = Xorshift::new(seed);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        let mut left = length;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            rng.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        Ok(Self {
            path: path.to_path_buf(),
            length,
            hash: hasher.finalize().into(),
            made_in: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_and_fill_odd_lengths() {
        let (mut a, mut b) = (vec![0u8; 1001], vec![0u8; 1001]);
        Xorshift::new(1).fill(&mut a);
        Xorshift::new(2).fill(&mut b);
        assert_ne!(a, b);
        assert!(a[1000] != 0 || a[999] != 0, "the tail is filled too");
        let mut again = vec![0u8; 1001];
        Xorshift::new(1).fill(&mut again);
        assert_eq!(a, again, "a seed always gives the same bytes");
    }

    #[test]
    fn the_hash_is_the_files_hash() {
        let dir = tempfile::tempdir().unwrap();
        let input = Input::generate(&dir.path().join("x"), (CHUNK + 4097) as u64, 9).unwrap();
        let bytes = std::fs::read(&input.path).unwrap();
        assert_eq!(bytes.len() as u64, input.length);
        assert_eq!(input.hash, InputHash::of(&bytes));
    }
}
