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

/// Upload-Metadata looked every key up in the pairs so far: 13,000 short
/// pairs (under the 64 KiB header limit) cost ~85 million comparisons, about
/// 2 s of CPU per request in a debug build. Keys are now kept in a set; this
/// parses in tens of milliseconds. (Found reading the code while writing the
/// tus target: a fuzzer's 4 KiB inputs are too small to show it.)
#[test]
fn metadata_with_thousands_of_keys_parses_in_linear_time() {
    use upcache_protocol::tus::Metadata;
    let keys: Vec<String> = (0..13_000).map(|i| format!("k{i}")).collect();
    let started = std::time::Instant::now();
    let m = Metadata::parse(&keys.join(",")).unwrap();
    assert_eq!(m.pairs().count(), 13_000);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let repeated = format!("{},k0", keys.join(","));
    assert!(Metadata::parse(&repeated).is_err());
}
