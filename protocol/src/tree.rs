//! Whole-input BLAKE3 from per-block chaining values, without a second read.
//!
//! BLAKE3 is a tree hash. With power-of-two blocks of at least one chunk,
//! every block is a whole subtree of the input's tree, so each block's
//! chaining value (CV) can be computed as the block arrives, in any order
//! ([`BlockHasher`]); at the end [`root`] merges the CVs into the standard
//! `BLAKE3(input)` in O(blocks) work.
//!
//! A one-block input has no parent node: its hash is the block's root hash,
//! which [`BlockHasher::finish`] returns in place of the CV.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::blocks::Layout;

/// Hashes one block at its place in the input.
#[derive(Clone)]
pub struct BlockHasher {
    hasher: blake3::Hasher,
    whole_input: bool,
}

impl BlockHasher {
    /// Starts hashing block `n` of `layout`.
    pub fn new(layout: &Layout, n: u64) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(n * layout.block_size);
        Self {
            hasher,
            whole_input: layout.blocks() == 1,
        }
    }

    /// Feeds the next bytes of the block.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The block's chaining value — or, for a one-block input, the input's hash.
    pub fn finish(&self) -> [u8; 32] {
        if self.whole_input {
            *self.hasher.finalize().as_bytes()
        } else {
            self.hasher.finalize_non_root()
        }
    }
}

/// Merges the chaining values of all blocks, in block order, into the hash of
/// the whole input. `cvs.len()` must equal `layout.blocks()`.
pub fn root(layout: &Layout, cvs: &[ChainingValue]) -> blake3::Hash {
    assert_eq!(
        cvs.len() as u64,
        layout.blocks(),
        "one chaining value per block"
    );
    match cvs.len() {
        0 => blake3::hash(b""),
        1 => blake3::Hash::from_bytes(cvs[0]),
        n => {
            let split = left_blocks(n);
            merge_subtrees_root(&subtree(&cvs[..split]), &subtree(&cvs[split..]), Mode::Hash)
        }
    }
}

/// Largest power of two strictly below `n` (n ≥ 2): the left subtree's blocks.
/// Since blocks are whole power-of-two subtrees, BLAKE3's split (largest power
/// of two chunks leaving a non-empty right side) always falls on this boundary.
fn left_blocks(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let split = left_blocks(cvs.len());
    merge_subtrees_non_root(&subtree(&cvs[..split]), &subtree(&cvs[split..]), Mode::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
            .collect()
    }

    fn cvs_in_order(input: &[u8], layout: &Layout, order: &[usize]) -> Vec<ChainingValue> {
        let mut cvs = vec![[0u8; 32]; layout.blocks() as usize];
        for &n in order {
            let r = layout.range(n as u64);
            let mut h = BlockHasher::new(layout, n as u64);
            // Feed in uneven pieces, as network frames arrive.
            for piece in input[r.start as usize..r.end as usize].chunks(777) {
                h.update(piece);
            }
            cvs[n] = h.finish();
        }
        cvs
    }

    #[test]
    fn left_split() {
        assert_eq!(left_blocks(2), 1);
        assert_eq!(left_blocks(3), 2);
        assert_eq!(left_blocks(4), 2);
        assert_eq!(left_blocks(5), 4);
        assert_eq!(left_blocks(9), 8);
    }

    #[test]
    fn edge_sizes_match_blake3() {
        for len in [
            0usize,
            1,
            1023,
            1024,
            1025,
            2048,
            2049,
            4096 * 3,
            4096 * 3 + 1,
            65_536,
        ] {
            for shift in [10u32, 11, 12, 16] {
                let input = data(len, 7);
                let layout = Layout::new(len as u64, 1 << shift, u64::MAX).unwrap();
                let order: Vec<usize> = (0..layout.blocks() as usize).rev().collect();
                let cvs = cvs_in_order(&input, &layout, &order);
                assert_eq!(
                    root(&layout, &cvs),
                    blake3::hash(&input),
                    "len {len} block 2^{shift}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn merge_equals_blake3_in_any_order(
            len in 0usize..200_000,
            shift in 10u32..15,
            seed: u8,
            perm_seed: u64,
        ) {
            let input = data(len, seed);
            let layout = Layout::new(len as u64, 1 << shift, u64::MAX).unwrap();
            let mut order: Vec<usize> = (0..layout.blocks() as usize).collect();
            // A deterministic shuffle from the seed.
            let mut s = perm_seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let cvs = cvs_in_order(&input, &layout, &order);
            prop_assert_eq!(root(&layout, &cvs), blake3::hash(&input));
        }
    }
}
