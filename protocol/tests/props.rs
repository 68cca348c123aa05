//! The fuzz properties (`upcache_protocol::props`) as property tests that run
//! in CI on stable Rust: arbitrary bytes, and structured values that reach
//! the accepting paths, through every parser; and every committed fuzz
//! corpus file replayed, so the corpus is a regression suite without
//! nightly or cargo-fuzz.

use std::path::PathBuf;

use proptest::prelude::*;
use upcache_protocol::blocks::{encode_range_pairs, parse_ranges};
use upcache_protocol::headers::{BlockHash, Prefer};
use upcache_protocol::props::{self, TARGETS};
use upcache_protocol::range::ByteRange;
use upcache_protocol::tus::{Checksum, ChecksumAlgorithm, Concat, Metadata};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_committed_corpus_file_keeps_the_properties() {
    for (target, check) in TARGETS {
        let dir = corpus_dir(target);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in files {
            // A fuzzer running at the same time may replace corpus files.
            let Ok(data) = std::fs::read(&file) else {
                continue;
            };
            let run = std::panic::catch_unwind(|| check(&data));
            assert!(
                run.is_ok(),
                "{target}: {} breaks a property",
                file.display()
            );
        }
    }
}

/// A metadata key as tus allows it: visible ASCII, no comma.
fn key() -> impl Strategy<Value = String> {
    "[!-+\\--~]{1,8}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_parser_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        for (_, check) in TARGETS {
            check(&data);
        }
    }

    #[test]
    fn no_parser_panics_on_header_like_text(s in "[ -~]{0,80}") {
        for (_, check) in TARGETS {
            check(s.as_bytes());
        }
    }

    #[test]
    fn range_lists_reach_the_accepting_path(s in "[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3}(-[0-9]{1,3})?){0,6}") {
        props::ranges(s.as_bytes());
    }

    #[test]
    fn range_pairs_encode_canonically(set in proptest::collection::btree_set(0u64..64, 0..40)) {
        let singles: Vec<(u64, u64)> = set.iter().map(|&n| (n, n)).collect();
        let encoded = encode_range_pairs(singles.iter().copied());
        let parsed = parse_ranges(&encoded).unwrap();
        prop_assert_eq!(encode_range_pairs(parsed.iter().copied()), encoded.clone());
        let flat: Vec<u64> = parsed.iter().flat_map(|&(a, b)| a..=b).collect();
        prop_assert_eq!(flat, set.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn byte_ranges_round_trip(first in any::<u64>(), span in proptest::option::of(any::<u32>()), suffix in any::<bool>()) {
        let range = match suffix {
            true => ByteRange::Suffix(first),
            false => ByteRange::From { first, last: span.map(|s| first.saturating_add(s.into())) },
        };
        prop_assert_eq!(ByteRange::parse(&range.encode()), Ok(Some(range)));
        props::ranges(range.encode().as_bytes());
    }

    #[test]
    fn layouts_tile_their_input(length in any::<u64>(), shift in 0u32..64, max in any::<u64>()) {
        let mut data = length.to_le_bytes().to_vec();
        data.extend((1u64 << shift).to_le_bytes());
        data.extend(max.to_le_bytes());
        props::ranges(&data);
    }

    #[test]
    fn prefer_round_trips(wait in proptest::option::of(any::<u64>()), minimal in any::<bool>(), r#async in any::<bool>()) {
        let p = Prefer { wait, return_minimal: minimal, respond_async: r#async };
        prop_assert_eq!(Prefer::parse([p.encode().as_str()]), p);
    }

    #[test]
    fn block_hashes_round_trip(bytes in any::<[u8; 32]>(), chaining in any::<bool>()) {
        let h = match chaining {
            true => BlockHash::Chaining(bytes),
            false => BlockHash::Alone(upcache_protocol::InputHash(bytes)),
        };
        prop_assert_eq!(BlockHash::parse(&h.to_header()), Ok(h));
        props::headers(h.to_header().to_uppercase().as_bytes());
    }

    #[test]
    fn metadata_round_trips(pairs in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 0..24), 0..6)) {
        let m = Metadata::new(pairs.clone()).unwrap();
        let parsed = Metadata::parse(&m.encode()).unwrap();
        prop_assert_eq!(&parsed, &m);
        for (k, v) in &pairs {
            prop_assert_eq!(parsed.get(k), Some(v.as_slice()));
        }
        props::tus(m.encode().as_bytes());
    }

    #[test]
    fn concat_round_trips(urls in proptest::collection::vec("[!-~]{1,20}", 1..4)) {
        let c = Concat::Final(urls);
        prop_assert_eq!(Concat::parse(&c.encode()), Ok(c.clone()));
        props::tus(c.encode().as_bytes());
    }

    #[test]
    fn checksums_round_trip(which in 0usize..3, bytes in any::<[u8; 32]>()) {
        let algorithm = ChecksumAlgorithm::ALL[which].1;
        let c = Checksum { algorithm, digest: bytes[..algorithm.digest_len()].to_vec() };
        prop_assert_eq!(Checksum::parse(&c.encode()), Ok(c.clone()));
        props::tus(c.encode().as_bytes());
    }

    #[test]
    fn operations_normalize_idempotently(
        op in prop_oneof![
            Just("identity"), Just("image.thumbnail"), Just("image.resize"), Just("image.crop"),
            Just("image.rotate"), Just("image.flip"), Just("image.grayscale"), Just("image.blur"),
        ],
        width in 0u32..20000, height in 0u32..20000, degrees in prop_oneof![Just(90), Just(180), Just(45)],
        sigma in 0.0f64..120.0, format in prop_oneof![Just("png"), Just("jpeg"), Just("webp"), Just("gif")],
        quality in proptest::option::of(0u32..120),
    ) {
        let mut v = serde_json::json!({
            "op": op, "width": width, "height": height, "format": format,
        });
        match op {
            "image.rotate" => { v = serde_json::json!({"op": op, "degrees": degrees}); }
            "image.blur" => { v = serde_json::json!({"op": op, "sigma": sigma}); }
            "identity" | "image.grayscale" | "image.flip" => { v = serde_json::json!({"op": op}); }
            _ => {}
        }
        if let Some(q) = quality {
            v["quality"] = q.into();
        }
        props::operation(v.to_string().as_bytes());
        let create = serde_json::json!({"input": {"blake3": "00".repeat(32), "length": width}, "operation": v});
        props::bodies(create.to_string().as_bytes());
    }
}
