//! Block layout and block-set ranges.
//!
//! An input of `length` bytes is cut into blocks of `block_size` bytes (a power
//! of two, at least one BLAKE3 chunk); block `n` covers
//! `[n·block_size, min((n+1)·block_size, length))`. Sets of block indices travel
//! as comma-separated ranges: `0-3,7` means blocks 0, 1, 2, 3 and 7.

use std::ops::Range;

/// Smallest block size: one BLAKE3 chunk, so every block is a whole subtree.
pub const MIN_BLOCK_SIZE: u64 = 1024;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u64 = 1 << 30;
/// Block size used when a client does not choose one.
pub const DEFAULT_BLOCK_SIZE: u64 = 8 << 20;

/// Why a layout was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("block size {0} must be a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}")]
    BlockSize(u64),
    #[error("{blocks} blocks exceed the limit of {max}; choose a larger block size")]
    TooManyBlocks { blocks: u64, max: u64 },
}

/// How an input of a given length is cut into blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub length: u64,
    pub block_size: u64,
}

impl Layout {
    /// Checks the block size and the number of blocks.
    pub fn new(length: u64, block_size: u64, max_blocks: u64) -> Result<Self, LayoutError> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(LayoutError::BlockSize(block_size));
        }
        let layout = Self { length, block_size };
        if layout.blocks() > max_blocks {
            return Err(LayoutError::TooManyBlocks {
                blocks: layout.blocks(),
                max: max_blocks,
            });
        }
        Ok(layout)
    }

    /// Number of blocks (0 for an empty input).
    pub fn blocks(&self) -> u64 {
        self.length.div_ceil(self.block_size)
    }

    /// The bytes block `n` covers. `n` must be below [`Layout::blocks`].
    pub fn range(&self, n: u64) -> Range<u64> {
        let start = n * self.block_size;
        // Not `(start + block_size).min(length)`: that overflows for the last
        // block of an input within one block of u64::MAX bytes.
        start..start + self.length.saturating_sub(start).min(self.block_size)
    }

    /// Length of block `n`.
    pub fn block_len(&self, n: u64) -> u64 {
        let r = self.range(n);
        r.end - r.start
    }

    /// The block holding byte `offset`.
    pub fn block_of(&self, offset: u64) -> u64 {
        offset / self.block_size
    }
}

/// Encodes sorted, distinct block indices as ranges (`0-3,7`); empty for none.
pub fn encode_ranges(sorted: impl IntoIterator<Item = u64>) -> String {
    encode_range_pairs(sorted.into_iter().map(|n| (n, n)))
}

/// Encodes ascending, non-overlapping inclusive ranges, merging adjacent
/// ones so that each maximal run is written once (the canonical form of
/// §5.2): `(0, 1), (2, 3), (7, 7)` is `0-3,7`.
pub fn encode_range_pairs(sorted: impl IntoIterator<Item = (u64, u64)>) -> String {
    let mut out = String::new();
    let mut run: Option<(u64, u64)> = None;
    let flush = |out: &mut String, (a, b): (u64, u64)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}-{b}"));
        }
    };
    for (a, b) in sorted {
        run = match run {
            Some((start, end)) if end.checked_add(1) == Some(a) => Some((start, b)),
            Some(r) => {
                flush(&mut out, r);
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

/// A malformed range list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed block ranges {0:?}: expected ascending ranges such as 0-3,7")]
pub struct RangesError(pub String);

/// Parses ranges (`0-3,7`) into inclusive `(start, end)` pairs, ascending and
/// not overlapping. An empty string is the empty set.
pub fn parse_ranges(s: &str) -> Result<Vec<(u64, u64)>, RangesError> {
    let err = || RangesError(s.to_owned());
    let mut out: Vec<(u64, u64)> = Vec::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?),
            None => {
                let n = part.parse().map_err(|_| err())?;
                (n, n)
            }
        };
        if a > b || out.last().is_some_and(|&(_, last)| a <= last) {
            return Err(err());
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_math() {
        let l = Layout::new(10_000, 4096, 100).unwrap();
        assert_eq!(l.blocks(), 3);
        assert_eq!(l.range(2), 8192..10_000);
        assert_eq!(l.block_len(0), 4096);
        assert_eq!(Layout::new(0, 4096, 100).unwrap().blocks(), 0);
        assert_eq!(Layout::new(4096, 4096, 100).unwrap().blocks(), 1);
        assert_eq!(Layout::new(1, 3000, 100), Err(LayoutError::BlockSize(3000)));
        assert_eq!(Layout::new(1, 512, 100), Err(LayoutError::BlockSize(512)));
        assert!(matches!(
            Layout::new(1 << 20, 1024, 10),
            Err(LayoutError::TooManyBlocks { .. })
        ));
    }

    #[test]
    fn ranges_examples() {
        assert_eq!(encode_ranges([0, 1, 2, 3, 7]), "0-3,7");
        assert_eq!(encode_ranges([]), "");
        assert_eq!(encode_ranges([5]), "5");
        assert_eq!(parse_ranges("0-3,7").unwrap(), vec![(0, 3), (7, 7)]);
        assert!(parse_ranges("3-1").is_err());
        assert!(parse_ranges("1,1").is_err());
        assert!(parse_ranges("4,2").is_err());
        assert!(parse_ranges("x").is_err());
    }

    proptest! {
        #[test]
        fn ranges_round_trip(set in proptest::collection::btree_set(0u64..500, 0..100)) {
            let encoded = encode_ranges(set.iter().copied());
            let decoded: Vec<u64> = parse_ranges(&encoded).unwrap()
                .into_iter().flat_map(|(a, b)| a..=b).collect();
            prop_assert_eq!(decoded, set.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn blocks_tile_the_input(length in 0u64..100_000, shift in 10u32..16) {
            let l = Layout::new(length, 1 << shift, u64::MAX).unwrap();
            let mut next = 0;
            for n in 0..l.blocks() {
                let r = l.range(n);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                prop_assert_eq!(l.block_of(r.start), n);
                next = r.end;
            }
            prop_assert_eq!(next, length);
        }
    }
}
