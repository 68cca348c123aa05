//! The properties every parser of this crate keeps, as functions of
//! untrusted bytes that panic when one is broken. One function per fuzz
//! target of `fuzz/` (which calls them under libFuzzer); the property tests
//! and the corpus replay in `tests/` call the same functions, so the fuzzers,
//! CI and the committed corpus check one set of rules.
//!
//! For every parser: it never panics on any input. Where an encoder exists:
//! `parse(encode(v)) == v` for every accepted `v`, and an accepted value
//! re-encodes canonically (`encode(parse(encode(v))) == encode(v)`).

use crate::blocks::{encode_range_pairs, parse_ranges, Layout};
use crate::headers::{bearer, bearer_token, decode_operation, encode_operation, BlockHash, Prefer};
use crate::range::ByteRange;
use crate::token::{self, Claims, MintRequest, Presigned, Scope, SigningKey};
use crate::tus::{self, Checksum, Concat, Metadata};
use crate::{CreateRequest, Digest, InputHash, Key, Operation, Problem, Status};

/// A property check: panics when `data` breaks a property.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: each is a directory of `fuzz/corpus/`.
pub const TARGETS: [(&str, Check); 6] = [
    ("headers", headers),
    ("ranges", ranges),
    ("operation", operation),
    ("bodies", bodies),
    ("tus", tus),
    ("tokens", tokens),
];

/// Header values are text: invalid UTF-8 is read lossily so that the
/// fuzzer's byte mutations still reach the parsers.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `Upload-Block-Hash`, hex keys and input hashes, `Prefer`,
/// `Authorization: Bearer`, `Upload-Operation`.
pub fn headers(data: &[u8]) {
    let s = text(data);
    if let Ok(h) = BlockHash::parse(&s) {
        let encoded = h.to_header();
        assert_eq!(BlockHash::parse(&encoded), Ok(h), "{s:?}");
        assert_eq!(BlockHash::parse(&encoded).unwrap().to_header(), encoded);
    }
    if let Ok(k) = s.parse::<Key>() {
        assert_eq!(k.to_hex(), s.to_ascii_lowercase());
        assert_eq!(k.to_hex().parse::<Key>(), Ok(k));
    }
    if let Ok(h) = s.parse::<InputHash>() {
        assert_eq!(h.to_hex().parse::<InputHash>(), Ok(h));
    }
    let prefer = Prefer::parse(s.split('\n'));
    let encoded = prefer.encode();
    assert_eq!(Prefer::parse([encoded.as_str()]), prefer, "{s:?}");
    if let Some(token) = bearer_token(&s) {
        assert_eq!(bearer_token(&bearer(token)), Some(token), "{s:?}");
    }
    if let Ok(op) = decode_operation(&s) {
        let again = decode_operation(&encode_operation(op.normalized()));
        assert_eq!(again.as_ref(), Ok(&op), "{s:?}");
    }
}

/// Block-set ranges (`0-3,7`), block layouts, and byte ranges (`Range`).
pub fn ranges(data: &[u8]) {
    let s = text(data);
    if let Ok(pairs) = parse_ranges(&s) {
        for w in pairs.windows(2) {
            assert!(w[0].1 < w[1].0, "{s:?} parsed out of order");
        }
        let canonical = encode_range_pairs(pairs.iter().copied());
        let reparsed = parse_ranges(&canonical).expect("canonical ranges parse");
        assert_eq!(encode_range_pairs(reparsed.iter().copied()), canonical);
        assert_eq!(covered(&reparsed), covered(&pairs), "{s:?}");
    }
    if let Ok(Some(range)) = ByteRange::parse(&s) {
        assert_eq!(ByteRange::parse(&range.encode()), Ok(Some(range)), "{s:?}");
        let len = number(data, 0);
        if let Ok((first, last)) = range.resolve(len) {
            assert!(first <= last && last < len, "{s:?} against {len}");
        }
    }
    layout(number(data, 0), number(data, 8), number(data, 16));
}

/// How many block indices a parsed range list covers (as u128: a list may
/// cover every u64).
fn covered(pairs: &[(u64, u64)]) -> u128 {
    pairs.iter().map(|&(a, b)| (b - a) as u128 + 1).sum()
}

/// A little-endian u64 from 8 bytes of `data` at `at` (zero-padded).
fn number(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, byte) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *byte;
    }
    u64::from_le_bytes(b)
}

/// A layout, if accepted, tiles its input: the first and last blocks lie
/// inside it and the last one ends at its length.
fn layout(length: u64, block_size: u64, max_blocks: u64) {
    let Ok(l) = Layout::new(length, block_size, max_blocks) else {
        return;
    };
    let blocks = l.blocks();
    assert!(blocks <= max_blocks);
    if blocks == 0 {
        assert_eq!(length, 0);
        return;
    }
    let first = l.range(0);
    let last = l.range(blocks - 1);
    assert_eq!(first.start, 0);
    assert!(last.start < last.end && last.end == length, "{l:?}");
    assert!(l.block_len(blocks - 1) <= block_size);
    assert_eq!(l.block_of(length - 1), blocks - 1);
}

/// Operation JSON: parse, normalize, canonicalize, derive a key.
pub fn operation(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(op) = Operation::parse(&value) else {
        return;
    };
    let again = Operation::parse(op.normalized()).expect("a normalized operation parses");
    assert_eq!(again, op, "normalizing is idempotent for {value}");
    assert_eq!(again.canonical(), op.canonical());
    let from_canonical = Operation::from_json(op.canonical()).expect("canonical JSON parses");
    assert_eq!(from_canonical.canonical(), op.canonical());
    let input = InputHash::of(data);
    assert_eq!(Key::derive(&input, &op), Key::derive(&input, &again));
}

/// Request and response bodies: the create request, status documents and
/// problem documents; and the stored digest state (2048 bytes).
pub fn bodies(data: &[u8]) {
    if let Some(digest) = Digest::from_bytes(data) {
        assert_eq!(digest.to_bytes(), data, "a digest state restores exactly");
    }
    if let Ok(req) = serde_json::from_slice::<CreateRequest>(data) {
        let encoded = serde_json::to_vec(&req).expect("a create request serializes");
        let back: CreateRequest = serde_json::from_slice(&encoded).expect("it parses back");
        assert_eq!(back, req);
        // Whatever the request, its operation parses or is refused, never panics.
        let _ = Operation::parse(&req.operation);
    }
    if let Ok(status) = serde_json::from_slice::<Status>(data) {
        let encoded = serde_json::to_vec(&status).expect("a status serializes");
        let back: Status = serde_json::from_slice(&encoded).expect("it parses back");
        assert_eq!(back, status);
        let _ = parse_ranges(&status.missing);
    }
    if let Ok(problem) = serde_json::from_slice::<Problem>(data) {
        let encoded = serde_json::to_vec(&problem).expect("a problem serializes");
        let back: Problem = serde_json::from_slice(&encoded).expect("it parses back");
        assert_eq!(back, problem);
    }
}

/// The tus headers: `Upload-Metadata`, `Upload-Concat` (and the upload ids
/// its URLs name), `Upload-Checksum`, `Tus-Extension`.
pub fn tus(data: &[u8]) {
    let s = text(data);
    if let Ok(m) = Metadata::parse(&s) {
        let encoded = m.encode();
        let back = Metadata::parse(&encoded).expect("encoded metadata parses");
        assert_eq!(back, m, "{s:?}");
        assert_eq!(back.encode(), encoded);
    }
    if let Ok(c) = Concat::parse(&s) {
        let encoded = c.encode();
        assert_eq!(Concat::parse(&encoded).as_ref(), Ok(&c), "{s:?}");
        if let Concat::Final(urls) = &c {
            for url in urls {
                // A URL valid for some host is a path of ours, or names that host.
                let anywhere = tus::upload_id(url, &[]);
                let here = tus::upload_id(url, &["localhost:1"]);
                if here.is_ok() {
                    assert_eq!(here, anywhere, "{url:?}");
                }
            }
        }
    }
    if let Ok(c) = Checksum::parse(&s) {
        assert_eq!(c.digest.len(), c.algorithm.digest_len());
        assert_eq!(Checksum::parse(&c.encode()).as_ref(), Ok(&c), "{s:?}");
    }
    if let Ok(names) = tus::parse_extensions(&s) {
        let encoded = tus::encode_extensions(&names);
        assert_eq!(
            tus::parse_extensions(&encoded).as_ref(),
            Ok(&names),
            "{s:?}"
        );
    }
}

/// The signing key the `tokens` target verifies with: `k1` of
/// `spec/vectors/tokens.json`, so that the vectors seed the corpus.
fn fuzz_key() -> SigningKey {
    SigningKey::new("k1", (0u8..32).collect()).expect("a valid key")
}

/// Tokens (`upc1.…`), presigned URL queries, signing keys (`kid:hex`),
/// and the JSON of claims, scopes and mint requests.
pub fn tokens(data: &[u8]) {
    let s = text(data);
    let key = fuzz_key();
    // The time the vectors are checked at, so that they verify.
    let now = 1_800_000_000;
    if let Ok(claims) = token::verify(&s, |_| Some(&key), now) {
        assert!(now < claims.exp && claims.nbf.is_none_or(|nbf| nbf <= now));
        let again = token::sign(&key, &claims);
        assert_eq!(
            token::verify(&again, |_| Some(&key), now),
            Ok(claims),
            "{s:?}"
        );
    }
    if let Some(Ok(p)) = Presigned::parse(&s) {
        let at = InputHash::of(data).0;
        let url = token::presign_result(&key, &Key(at), p.exp);
        let (_, query) = url.split_once('?').expect("a query");
        let back = Presigned::parse(query)
            .expect("signature parameters")
            .expect("valid");
        assert_eq!((back.exp, back.kid), (p.exp, key.kid()));
        let verified = back.verify(&Key(at), |_| Some(&key), p.exp.saturating_sub(1));
        assert!(p.exp == 0 || verified.is_ok(), "{s:?}");
    }
    if let Ok(k) = s.parse::<SigningKey>() {
        assert!(
            !k.kid().is_empty() && !k.kid().contains(['.', ':']),
            "{s:?}"
        );
    }
    if let Ok(claims) = serde_json::from_slice::<Claims>(data) {
        let encoded = serde_json::to_vec(&claims).expect("claims serialize");
        assert_eq!(
            serde_json::from_slice::<Claims>(&encoded).ok(),
            Some(claims)
        );
    }
    if let Ok(scope) = serde_json::from_slice::<Scope>(data) {
        let encoded = serde_json::to_vec(&scope).expect("a scope serializes");
        assert_eq!(serde_json::from_slice::<Scope>(&encoded).ok(), Some(scope));
    }
    if let Ok(req) = serde_json::from_slice::<MintRequest>(data) {
        let encoded = serde_json::to_vec(&req).expect("a mint request serializes");
        assert_eq!(
            serde_json::from_slice::<MintRequest>(&encoded).ok(),
            Some(req)
        );
    }
}
