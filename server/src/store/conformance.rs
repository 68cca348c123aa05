//! The behaviour every [`BlobStore`] must have, as one suite that each
//! backend's tests run against an instance of it: `check(&store, &staging)`.
//! A new backend is done when this passes against the real service it talks
//! to. A store that keeps metadata ([`BlobStore::keeps_meta`]) is also held
//! to giving it back whole, and to refusing bytes that disagree with it.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;
use upcache_protocol::{InputHash, Key};

use super::blob::{read_all, BlobMeta, BlobName, BlobStore, ByteStream, ResultOf};
use super::records::InputRecord;
use super::staging::Staging;

fn stream_of(bytes: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = bytes
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

async fn get(
    store: &dyn BlobStore,
    name: BlobName,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let body = store
        .get(name, range.clone())
        .await
        .unwrap_or_else(|e| panic!("get {name} {range:?}: {e}"))
        .unwrap_or_else(|| panic!("get {name}: not found"));
    read_all(body).await.expect("read the blob")
}

fn meta_of(bytes: &[u8]) -> BlobMeta {
    BlobMeta::of_bytes(bytes, "application/octet-stream")
}

/// Runs every check against `store`; staged files come from `staging`.
/// Panics, naming the check, at the first failure.
pub async fn check(store: &dyn BlobStore, staging: &Staging) {
    absent_names(store).await;
    streams_round_trip(store).await;
    staged_files_are_taken_over(store, staging).await;
    ranges(store).await;
    empty_blobs(store).await;
    rewrites_are_whole(store).await;
    a_broken_stream_publishes_nothing(store).await;
    listing(store).await;
    reads_outlive_deletes(store).await;
    if store.keeps_meta() {
        metadata_round_trips(store, staging).await;
        streams_must_match_their_meta(store).await;
    }
}

async fn absent_names(store: &dyn BlobStore) {
    let name = BlobName::Result(Key([0xa0; 32]));
    assert!(
        store.head(name).await.unwrap().is_none(),
        "head of a missing blob"
    );
    assert!(
        store.get(name, None).await.unwrap().is_none(),
        "get of a missing blob"
    );
    assert!(
        store.fetch(name).await.unwrap().is_none(),
        "fetch of a missing blob"
    );
    assert!(
        !store.delete(name).await.unwrap(),
        "delete of a missing blob"
    );
}

async fn streams_round_trip(store: &dyn BlobStore) {
    let bytes = pattern(3 * 1024 * 1024 + 17, 1);
    let name = BlobName::Input(InputHash::of(&bytes));
    store
        .put_stream(name, stream_of(&bytes, 64 * 1024 + 3), meta_of(&bytes))
        .await
        .unwrap();
    assert_eq!(
        store.head(name).await.unwrap().map(|h| h.length),
        Some(bytes.len() as u64)
    );
    assert!(
        get(store, name, None).await == bytes,
        "a streamed blob reads back whole"
    );
    let (head, body) = store
        .fetch(name)
        .await
        .unwrap()
        .expect("fetch of a present blob");
    assert_eq!(head.length, bytes.len() as u64, "fetch says the length");
    assert!(
        read_all(body).await.unwrap() == bytes,
        "a fetched blob reads back whole"
    );
    assert!(
        store.delete(name).await.unwrap(),
        "delete of a present blob"
    );
    assert!(
        store.head(name).await.unwrap().is_none(),
        "a deleted blob is gone"
    );
}

async fn staged_files_are_taken_over(store: &dyn BlobStore, staging: &Staging) {
    let bytes = pattern(100_000, 2);
    let name = BlobName::Result(Key([0xb1; 32]));
    let staged = staging.output(&Key([0xb1; 32]));
    let path = staged.path().to_owned();
    std::fs::write(&path, &bytes).unwrap();
    store.put_file(name, staged, meta_of(&bytes)).await.unwrap();
    assert!(
        get(store, name, None).await == bytes,
        "a staged file reads back"
    );
    assert!(!path.exists(), "the store took the staged file over");
    store.delete(name).await.unwrap();
}

async fn ranges(store: &dyn BlobStore) {
    let bytes = pattern(1_000_000, 3);
    let name = BlobName::Result(Key([0xc2; 32]));
    store
        .put_stream(name, stream_of(&bytes, 100_000), meta_of(&bytes))
        .await
        .unwrap();
    for (a, b) in [
        (0, 1),
        (0, 1_000_000),
        (999_999, 1_000_000),
        (123_457, 765_432),
        (500, 500),
    ] {
        let got = get(store, name, Some(a..b)).await;
        assert!(got == bytes[a as usize..b as usize], "range {a}..{b}");
    }
    let past = store.get(name, Some(999_000..1_000_001)).await;
    assert_eq!(
        past.err().map(|e| e.kind()),
        Some(io::ErrorKind::InvalidInput),
        "a range past the end is refused"
    );
    store.delete(name).await.unwrap();
}

async fn empty_blobs(store: &dyn BlobStore) {
    let name = BlobName::Input(InputHash::of(b""));
    store
        .put_stream(name, stream_of(b"", 1), meta_of(b""))
        .await
        .unwrap();
    assert_eq!(store.head(name).await.unwrap().map(|h| h.length), Some(0));
    assert!(get(store, name, None).await.is_empty());
    store.delete(name).await.unwrap();
}

async fn rewrites_are_whole(store: &dyn BlobStore) {
    // Content-addressed names are rewritten only with the same bytes; a
    // rewrite must leave the blob whole for readers at every moment.
    let bytes = pattern(2_000_000, 4);
    let name = BlobName::Input(InputHash::of(&bytes));
    store
        .put_stream(name, stream_of(&bytes, 1 << 16), meta_of(&bytes))
        .await
        .unwrap();
    let reads = (0..4).map(|_| get(store, name, None));
    let (_, read) = tokio::join!(
        store.put_stream(name, stream_of(&bytes, 1 << 15), meta_of(&bytes)),
        futures_util::future::join_all(reads)
    );
    for r in read {
        assert!(r == bytes, "a read during a rewrite sees the whole blob");
    }
    store.delete(name).await.unwrap();
}

async fn a_broken_stream_publishes_nothing(store: &dyn BlobStore) {
    let name = BlobName::Result(Key([0xd3; 32]));
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(io::Error::other("the client went away")),
    ]));
    assert!(store
        .put_stream(name, broken, meta_of(b"partial"))
        .await
        .is_err());
    assert!(
        store.head(name).await.unwrap().is_none(),
        "nothing published"
    );
}

async fn listing(store: &dyn BlobStore) {
    let mut names = Vec::new();
    for i in 0..5u8 {
        let mut k = [0xe0; 32];
        k[0] = 0x10 * (i % 2) + 0x0e;
        k[1] = i;
        let name = BlobName::Result(Key(k));
        store
            .put_stream(name, stream_of(&[i], 1), meta_of(&[i]))
            .await
            .unwrap();
        names.push(name);
    }
    let input = BlobName::Input(InputHash::of(b"listed"));
    store
        .put_stream(input, stream_of(b"listed", 3), meta_of(b"listed"))
        .await
        .unwrap();

    let mut all = store.list("results/").await.unwrap();
    all.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(all, want, "every result, and nothing else");
    let mut some = store.list("results/0e").await.unwrap();
    some.sort();
    let mut want: Vec<_> = names
        .iter()
        .copied()
        .filter(|n| n.path().starts_with("results/0e"))
        .collect();
    want.sort();
    assert_eq!(some, want, "a prefix within the name");
    assert_eq!(store.list("inputs/").await.unwrap(), vec![input]);
    let mut everything = store.list("").await.unwrap();
    everything.sort();
    assert_eq!(
        everything.len(),
        6,
        "the empty prefix lists all: {everything:?}"
    );

    for name in names.into_iter().chain([input]) {
        store.delete(name).await.unwrap();
    }
    assert!(store.list("").await.unwrap().is_empty(), "all deleted");
}

async fn reads_outlive_deletes(store: &dyn BlobStore) {
    let bytes = pattern(4 * 1024 * 1024, 5);
    let name = BlobName::Result(Key([0xf4; 32]));
    store
        .put_stream(name, stream_of(&bytes, 1 << 20), meta_of(&bytes))
        .await
        .unwrap();
    let mut body = store.get(name, None).await.unwrap().unwrap();
    let first = body.next().await.unwrap().unwrap();
    store.delete(name).await.unwrap();
    let mut got = first.to_vec();
    got.extend(read_all(body).await.unwrap());
    assert!(
        got == bytes,
        "a read begun before a delete reads to its end"
    );
}

async fn metadata_round_trips(store: &dyn BlobStore, staging: &Staging) {
    let input = pattern(70_000, 6);
    let hash = InputHash::of(&input);
    let record = InputRecord {
        length: input.len() as u64,
        block_size: 1 << 16,
        digest: [0x5a; 32],
    };
    let name = BlobName::Input(hash);
    let meta = BlobMeta::input(hash, record);
    store
        .put_stream(name, stream_of(&input, 8192), meta.clone())
        .await
        .unwrap();
    let head = store.head(name).await.unwrap().expect("the input is there");
    assert_eq!(head.length, input.len() as u64);
    assert_eq!(head.meta, Some(meta), "an input's metadata round-trips");

    let result = pattern(12_345, 7);
    let key = Key([0x6b; 32]);
    let of = ResultOf {
        input: hash,
        input_length: input.len() as u64,
        // Canonical JSON may hold any Unicode text.
        operation: r#"{"name":"image.thumbnail","text":"é ☃ \"%\"","v":1}"#.into(),
        is_input: false,
    };
    let meta = BlobMeta::result(InputHash::of(&result), 12_345, "image/webp", of);
    let staged = staging.output(&key);
    std::fs::write(staged.path(), &result).unwrap();
    store
        .put_file(BlobName::Result(key), staged, meta.clone())
        .await
        .unwrap();
    let head = store.head(BlobName::Result(key)).await.unwrap().unwrap();
    assert_eq!(
        head.meta,
        Some(meta.clone()),
        "a result's metadata round-trips"
    );
    assert!(get(store, BlobName::Result(key), None).await == result);
    // A fetch brings the same metadata with the bytes.
    let (head, body) = store.fetch(BlobName::Result(key)).await.unwrap().unwrap();
    assert_eq!(head.meta, Some(meta), "fetch brings a result's metadata");
    assert!(read_all(body).await.unwrap() == result);

    store.delete(name).await.unwrap();
    store.delete(BlobName::Result(key)).await.unwrap();
}

async fn streams_must_match_their_meta(store: &dyn BlobStore) {
    let bytes = pattern(50_000, 8);
    let name = BlobName::Result(Key([0x7c; 32]));
    let mut wrong_hash = meta_of(&bytes);
    wrong_hash.blake3 = InputHash::of(b"something else");
    let mut wrong_length = meta_of(&bytes);
    wrong_length.length += 1;
    for (what, meta) in [("hash", wrong_hash), ("length", wrong_length)] {
        let refused = store.put_stream(name, stream_of(&bytes, 4096), meta).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidData),
            "bytes with the wrong {what} are refused"
        );
        assert!(
            store.head(name).await.unwrap().is_none(),
            "nothing published with the wrong {what}"
        );
    }
}
