//! The S3 blob store against a real S3 server (SeaweedFS, started by the
//! harness): the conformance suite every store passes, multipart objects,
//! metadata a fresh node can read, listings isolated by prefix, presigned
//! URLs, and errors a caller can tell apart — wrong credentials, a server
//! that is gone, a server that does not answer.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use upcache_e2e::s3::{ACCESS_KEY, SECRET_KEY};
use upcache_e2e::{pseudo_random, SeaweedFs, STEP_TIMEOUT};
use upcache_protocol::{InputHash, Key};
use upcache_server::store::blob::{
    is_unavailable, read_all, BlobMeta, BlobName, BlobStore, ByteStream, ResultOf,
};
use upcache_server::store::conformance;
use upcache_server::store::records::InputRecord;
use upcache_server::store::s3::{S3Store, S3Tuning, MIN_PART_SIZE};
use upcache_server::store::staging::Staging;

fn chunks(bytes: &[u8], size: usize) -> ByteStream {
    let parts: Vec<io::Result<Bytes>> = bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(parts))
}

async fn read(store: &S3Store, name: BlobName, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let body = store
        .get(name, range.clone())
        .await
        .unwrap_or_else(|e| panic!("get {name} {range:?}: {e}"))
        .unwrap_or_else(|| panic!("get {name}: not found"));
    read_all(body).await.unwrap()
}

fn result_meta(bytes: &[u8], input: &[u8], content_type: &str) -> BlobMeta {
    BlobMeta::result(
        InputHash::of(bytes),
        bytes.len() as u64,
        content_type,
        ResultOf {
            input: InputHash::of(input),
            input_length: input.len() as u64,
            operation: r#"{"height":64,"name":"image.thumbnail","v":1,"width":64}"#.into(),
            is_input: false,
        },
    )
}

#[tokio::test]
async fn the_s3_store_conforms() {
    let weed = SeaweedFs::start().await;
    let store = weed.store("conformance/").await;
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::open(dir.path()).unwrap();
    tokio::time::timeout(4 * STEP_TIMEOUT, conformance::check(&store, &staging))
        .await
        .expect("the conformance suite hung");
}

#[tokio::test]
async fn multipart_objects_round_trip_and_read_across_parts() {
    let weed = SeaweedFs::start().await;
    let tuning = S3Tuning {
        part_size: MIN_PART_SIZE,
        parts_in_flight: 3,
        ..S3Tuning::default()
    };
    let store = S3Store::with_tuning(&weed.config("multi/"), tuning)
        .await
        .unwrap();
    let part = MIN_PART_SIZE as usize;
    let bytes = pseudo_random(4 * part + 12_345, 11);
    let input = pseudo_random(1000, 12);

    // From a staged file, and from a stream cut at other boundaries.
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::open(dir.path()).unwrap();
    let from_file = BlobName::Result(Key([0x31; 32]));
    let staged = staging.output(&Key([0x31; 32]));
    std::fs::write(staged.path(), &bytes).unwrap();
    let meta = result_meta(&bytes, &input, "video/mp4");
    store
        .put_file(from_file, staged, meta.clone())
        .await
        .unwrap();
    let from_stream = BlobName::Input(InputHash::of(&bytes));
    let record = InputRecord {
        length: bytes.len() as u64,
        block_size: 1 << 22,
        digest: [9; 32],
    };
    store
        .put_stream(
            from_stream,
            chunks(&bytes, 1_000_003),
            BlobMeta::input(InputHash::of(&bytes), record),
        )
        .await
        .unwrap();

    for name in [from_file, from_stream] {
        assert!(
            read(&store, name, None).await == bytes,
            "{name} reads back whole"
        );
        let p = part as u64;
        for r in [
            p - 10..p + 10,
            2 * p - 1..3 * p + 1,
            0..4 * p + 1,
            4 * p..bytes.len() as u64,
        ] {
            let got = read(&store, name, Some(r.clone())).await;
            assert!(
                got == bytes[r.start as usize..r.end as usize],
                "{name}: range {r:?} across part boundaries"
            );
        }
    }

    // They really went up in parts: S3 tags a multipart object `<md5>-<parts>`.
    let url = store
        .presign()
        .unwrap()
        .get_url(from_file, Duration::from_secs(60))
        .await
        .unwrap();
    let got = reqwest::get(&url).await.unwrap();
    let etag = got.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.trim_matches('"').ends_with("-5"),
        "five parts: ETag {etag}"
    );
    assert_eq!(got.headers()["content-type"], "video/mp4");

    let head = store.head(from_file).await.unwrap().unwrap();
    assert_eq!(
        head.meta,
        Some(meta),
        "a multipart result keeps its metadata"
    );
}

#[tokio::test]
async fn part_uploads_out_of_order_publish_once_complete() {
    let weed = SeaweedFs::start().await;
    let store = weed.store("parts/").await;
    let parts = store.parts().expect("S3 has part uploads");
    let size = parts.min_part_size() as usize;
    let bytes = pseudo_random(2 * size + 999, 41);
    let hash = InputHash::of(&bytes);
    let name = BlobName::Input(hash);
    let record = InputRecord {
        length: bytes.len() as u64,
        block_size: size as u64,
        digest: [4; 32],
    };
    let meta = BlobMeta::input(hash, record);
    let id = parts.begin(name, meta.clone()).await.unwrap();
    // Blocks arrive in any order, concurrently (block n is part n + 1).
    let send = |n: u32| {
        let block = &bytes[(n as usize - 1) * size..(n as usize * size).min(bytes.len())];
        parts.put_part(name, &id, n, block.len() as u64, chunks(block, 70_000))
    };
    let (t3, t1, t2) = tokio::join!(send(3), send(1), send(2));
    assert!(
        store.head(name).await.unwrap().is_none(),
        "nothing is visible before completion"
    );
    let short = parts
        .put_part(name, &id, 4, 10, chunks(&bytes[..9], 9))
        .await
        .unwrap_err();
    assert_eq!(short.kind(), io::ErrorKind::InvalidData, "{short}");
    let tags = [(1, t1.unwrap()), (2, t2.unwrap()), (3, t3.unwrap())];
    parts.complete(name, &id, &tags).await.unwrap();
    assert!(read(&store, name, None).await == bytes);
    let head = store.head(name).await.unwrap().unwrap();
    assert_eq!(head.meta, Some(meta.clone()), "metadata fixed at begin");

    // An aborted upload publishes nothing.
    let other = BlobName::Result(Key([0x77; 32]));
    let id = parts.begin(other, meta).await.unwrap();
    parts
        .put_part(other, &id, 1, 5, chunks(b"abcde", 2))
        .await
        .unwrap();
    parts.abort(other, &id).await.unwrap();
    assert!(store.head(other).await.unwrap().is_none());
}

#[tokio::test]
async fn default_parts_of_16_mib() {
    let weed = SeaweedFs::start().await;
    let store = weed.store("big/").await;
    let bytes = pseudo_random(2 * 16 * 1024 * 1024 + 1, 13);
    let name = BlobName::Input(InputHash::of(&bytes));
    let record = InputRecord {
        length: bytes.len() as u64,
        block_size: 1 << 23,
        digest: [1; 32],
    };
    store
        .put_stream(
            name,
            chunks(&bytes, 256 * 1024),
            BlobMeta::input(InputHash::of(&bytes), record),
        )
        .await
        .unwrap();
    assert!(read(&store, name, None).await == bytes);
    let edge = 16 * 1024 * 1024;
    assert!(
        read(&store, name, Some(edge - 1..edge + 2)).await
            == bytes[edge as usize - 1..edge as usize + 2]
    );
}

#[tokio::test]
async fn a_fresh_node_reads_what_a_result_is_from_the_bucket() {
    let weed = SeaweedFs::start().await;
    let input = pseudo_random(5000, 21);
    let output = pseudo_random(777, 22);
    let key = Key([0x42; 32]);
    let meta = result_meta(&output, &input, "image/avif");
    {
        let writer = weed.store("shared/").await;
        writer
            .put_stream(BlobName::Result(key), chunks(&output, 100), meta.clone())
            .await
            .unwrap();
    }
    // Another client, knowing nothing but the bucket and the prefix.
    let reader = weed.store("shared/").await;
    let head = reader.head(BlobName::Result(key)).await.unwrap().unwrap();
    assert_eq!(head.length, 777);
    let got = head.meta.expect("the object carries its metadata");
    assert_eq!(got, meta);
    assert_eq!(got.content_type, "image/avif");
    let of = got.result.unwrap();
    assert_eq!((of.input, of.input_length), (InputHash::of(&input), 5000));
    assert!(read(&reader, BlobName::Result(key), None).await == output);
    assert_eq!(
        reader.list("results/").await.unwrap(),
        vec![BlobName::Result(key)]
    );
}

#[tokio::test]
async fn prefixes_keep_stores_apart_and_listings_page() {
    let weed = SeaweedFs::start().await;
    let tuning = S3Tuning {
        list_page: 7,
        ..S3Tuning::default()
    };
    let a = S3Store::with_tuning(&weed.config("tenant-a/"), tuning.clone())
        .await
        .unwrap();
    let b = weed.store("tenant-b/").await;
    let mut in_a = Vec::new();
    for i in 0..20u8 {
        let bytes = [i; 3];
        let name = BlobName::Input(InputHash::of(&bytes));
        a.put_stream(name, chunks(&bytes, 3), BlobMeta::of_bytes(&bytes, "x/y"))
            .await
            .unwrap();
        in_a.push(name);
    }
    let mut k = [0u8; 32];
    k[0] = 0xab;
    let in_b = BlobName::Result(Key(k));
    b.put_stream(in_b, chunks(b"b", 1), BlobMeta::of_bytes(b"b", "x/y"))
        .await
        .unwrap();

    let mut listed = a.list("").await.unwrap();
    listed.sort();
    in_a.sort();
    assert_eq!(listed, in_a, "20 names over pages of 7, and none of b's");
    assert_eq!(a.list("results/").await.unwrap(), vec![]);
    assert_eq!(b.list("").await.unwrap(), vec![in_b]);
    assert_eq!(b.list("results/ab").await.unwrap(), vec![in_b]);
    assert_eq!(b.list("results/ac").await.unwrap(), vec![]);
    assert!(
        a.head(in_b).await.unwrap().is_none(),
        "a cannot see b's blob"
    );
    assert!(!a.delete(in_b).await.unwrap());
    assert!(b.head(in_b).await.unwrap().is_some(), "nor delete it");
    // A store without a prefix sees no blobs in the others' objects.
    let bare = weed.store("").await;
    assert_eq!(bare.list("").await.unwrap(), vec![]);
}

#[tokio::test]
async fn presigned_urls_read_and_are_refused_when_tampered_or_expired() {
    let weed = SeaweedFs::start().await;
    let store = weed.store("presign/").await;
    let bytes = pseudo_random(300_000, 31);
    let name = BlobName::Result(Key([0x55; 32]));
    store
        .put_stream(
            name,
            chunks(&bytes, 65_536),
            result_meta(&bytes, b"in", "image/png"),
        )
        .await
        .unwrap();
    let presign = store.presign().expect("S3 presigns");
    let url = presign
        .get_url(name, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(!url.contains(SECRET_KEY), "no secret in the URL");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert!(
        got.bytes().await.unwrap() == bytes,
        "the URL serves the bytes"
    );

    // Another object's name under the same signature.
    let other = store.object(BlobName::Result(Key([0x56; 32])));
    let moved = url.replace(&store.object(name), &other);
    assert_ne!(moved, url);
    assert_eq!(reqwest::get(&moved).await.unwrap().status(), 403, "renamed");
    // A changed signature.
    let (head, sig) = url.split_once("X-Amz-Signature=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{head}X-Amz-Signature={flipped}{}", &sig[1..]);
    assert_eq!(
        reqwest::get(&tampered).await.unwrap().status(),
        403,
        "re-signed"
    );

    // S3 counts expiry in whole seconds from the signing time, which the
    // URL states truncated to the second: 2 s leave at least 1 s to use it.
    let short = presign.get_url(name, Duration::from_secs(2)).await.unwrap();
    assert_eq!(reqwest::get(&short).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(reqwest::get(&short).await.unwrap().status(), 403, "expired");
}

#[tokio::test]
async fn wrong_credentials_are_permission_denied() {
    let weed = SeaweedFs::start().await;
    let name = BlobName::Input(InputHash::of(b"x"));
    for (key, secret, what) in [
        (ACCESS_KEY, "not-the-secret", "a wrong secret"),
        ("NO-SUCH-KEY", SECRET_KEY, "an unknown key"),
    ] {
        let store = S3Store::from_config(&weed.config_as("creds/", key, secret))
            .await
            .unwrap();
        for e in [
            store.head(name).await.unwrap_err(),
            store.get(name, None).await.err().unwrap(),
            store
                .put_stream(name, chunks(b"x", 1), BlobMeta::of_bytes(b"x", "x/y"))
                .await
                .unwrap_err(),
            store.list("").await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{what}: {e}");
            assert!(!is_unavailable(&e), "{what} is not an outage: {e}");
            assert!(e.to_string().contains("S3 "), "the message says where: {e}");
        }
    }
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_at_once_and_serves_again_on_restart() {
    let mut weed = SeaweedFs::start().await;
    let store = weed.store("outage/").await;
    let name = BlobName::Input(InputHash::of(b"kept"));
    store
        .put_stream(name, chunks(b"kept", 2), BlobMeta::of_bytes(b"kept", "x/y"))
        .await
        .unwrap();

    weed.kill();
    let bounded = Duration::from_secs(20);
    let head = tokio::time::timeout(bounded, store.head(name)).await;
    let e = head.expect("not a hang").unwrap_err();
    assert!(is_unavailable(&e), "a stopped server is unavailable: {e:?}");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    let put = tokio::time::timeout(
        bounded,
        store.put_stream(
            BlobName::Input(InputHash::of(b"new")),
            chunks(b"new", 3),
            BlobMeta::of_bytes(b"new", "x/y"),
        ),
    )
    .await;
    assert!(is_unavailable(&put.expect("not a hang").unwrap_err()));

    weed.restart().await;
    assert!(
        read(&store, name, None).await == b"kept",
        "the same client reads again"
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out() {
    let weed = SeaweedFs::start().await;
    let tuning = S3Tuning {
        read_timeout: Duration::from_secs(1),
        attempts: 2,
        ..S3Tuning::default()
    };
    let store = S3Store::with_tuning(&weed.config("hung/"), tuning)
        .await
        .unwrap();
    let name = BlobName::Input(InputHash::of(b"y"));
    store
        .put_stream(name, chunks(b"y", 1), BlobMeta::of_bytes(b"y", "x/y"))
        .await
        .unwrap();
    weed.pause();
    let got = tokio::time::timeout(Duration::from_secs(30), store.get(name, None)).await;
    weed.resume();
    let e = got
        .expect("the read timeout bounds the wait")
        .err()
        .unwrap();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(is_unavailable(&e));
}
