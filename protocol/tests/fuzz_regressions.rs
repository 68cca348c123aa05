//! Every input that broke a property, found by the fuzzers (fuzz/README.md)
//! or while writing them, as a named test.

use upcache_protocol::props;

/// Eight little-endian bytes each of length, block size and block limit, as
/// the `ranges` target reads them.
fn layout_input(length: u64, block_size: u64, max_blocks: u64) -> Vec<u8> {
    [length, block_size, max_blocks]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect()
}

/// `Layout::range` of the last block computed `start + block_size`, which
/// overflows for an input within one block of `u64::MAX` bytes.
#[test]
fn last_block_of_a_huge_input_does_not_overflow() {
    props::ranges(&layout_input(u64::MAX, 1024, u64::MAX));
    props::ranges(&layout_input(u64::MAX - 1, 1 << 30, u64::MAX));
}
