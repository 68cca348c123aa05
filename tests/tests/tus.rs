//! tus 1.0 at `/files/` (spec/tus.md), over raw HTTP: discovery, creation,
//! appending, checksums, expiry, termination, deferred lengths,
//! concatenation, resuming across a restart, CORS — and every status code of
//! the spec's error table. A finished tus upload is an ordinary entry: its
//! `Upload-Key` is the key `upcache key` prints, and its result is the
//! operation's result.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image::{GenericImageView, ImageFormat};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::json;
use upcache_e2e::tus::{self, th, FILES};
use upcache_e2e::*;
use upcache_protocol::headers::OFFSET_OCTET_STREAM;
use upcache_protocol::status::{entry_path, result_path};
use upcache_protocol::tus::{Checksum, ChecksumAlgorithm, Concat};
use upcache_protocol::State;

const MIB: u64 = 1024 * 1024;
/// A well-known test vector, with its well-known digests.
const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
const FOX_SHA1: &str = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12";
const FOX_MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";
const FOX_SHA256: &str = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592";
const HELLO: &[u8] = b"hello";
const HELLO_SHA1: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

/// `Upload-Checksum` for `algorithm` and a hex digest.
fn checksum(algorithm: &str, hex_digest: &str) -> String {
    Checksum {
        algorithm: ChecksumAlgorithm::named(algorithm).expect("a tus algorithm"),
        digest: hex::decode(hex_digest).expect("a hex digest"),
    }
    .encode()
}

/// The comma-separated tokens of a header, trimmed and lower-cased.
fn tokens(headers: &HeaderMap, name: &str) -> BTreeSet<String> {
    header(headers, name)
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A random upload id nobody created.
fn unknown_location() -> String {
    format!("{FILES}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The `/v1` key of `input` under `op`, as a client derives it.
fn key_of(input: &[u8], op: serde_json::Value) -> String {
    Job::new(input.to_vec(), op).key.to_hex()
}

fn grayscale_png() -> serde_json::Value {
    json!({"op": "image.grayscale", "format": "png"})
}

// ---------------------------------------------------------------- discovery

#[tokio::test]
async fn options_advertises_tus_1_0_its_extensions_and_limits() {
    let server = Server::start_with(&["--max-input-size", "64MiB"]).await;
    let location = server.tus_create(10, "").await;
    // A client asks before it knows the version: no Tus-Resumable needed.
    for path in [FILES, location.as_str()] {
        let resp = server.tus_bare(Method::OPTIONS, path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "OPTIONS {path}");
        let headers = resp.headers();
        tus::assert_resumable(headers, "OPTIONS");
        assert!(
            tokens(headers, th::TUS_VERSION).contains(tus::VERSION),
            "Tus-Version {:?}",
            headers.get(th::TUS_VERSION)
        );
        let want: BTreeSet<String> = [
            "creation",
            "creation-with-upload",
            "creation-defer-length",
            "expiration",
            "checksum",
            "termination",
            "concatenation",
        ]
        .map(String::from)
        .into();
        assert_eq!(tokens(headers, th::TUS_EXTENSION), want, "Tus-Extension");
        assert_eq!(
            header_u64(headers, th::TUS_MAX_SIZE),
            64 * MIB,
            "Tus-Max-Size is the configured max input size"
        );
        let algorithms = tokens(headers, th::TUS_CHECKSUM_ALGORITHM);
        for alg in ["sha1", "md5", "sha256"] {
            assert!(
                algorithms.contains(alg),
                "Tus-Checksum-Algorithm {algorithms:?} lacks {alg}"
            );
        }
    }
}

#[tokio::test]
async fn options_needs_no_api_key_but_uploads_do() {
    let server = Server::start_with_config("api_keys = [\"secret-key\"]\n", &[]).await;
    let resp = server
        .tus_bare(Method::OPTIONS, FILES)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "OPTIONS without a key"
    );
    assert!(tokens(resp.headers(), th::TUS_VERSION).contains(tus::VERSION));

    let anonymous = server.tus_create_request(10, "").send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "POST without a key"
    );
    let (location, _) = server
        .tus_created(server.tus_create_request(10, "").bearer_auth("secret-key"))
        .await;
    let head = server
        .tus(Method::HEAD, &location)
        .bearer_auth("secret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

// ------------------------------------------------------------ the main path

#[tokio::test]
async fn creation_head_and_patches_in_chunks_give_an_identity_entry() {
    let server = Server::start().await;
    let input = pseudo_random(300_000, 1);
    let meta = tus::metadata(&[
        ("filename", b"photo 1.bin"),
        ("filetype", b"application/x-test"),
    ]);
    let (location, created) = server
        .tus_created(server.tus_create_request(input.len() as u64, &meta))
        .await;
    let week = Duration::from_secs(7 * 24 * 3600 + 60);
    tus::assert_expires_within(&created, week);
    let other = server.tus_create(input.len() as u64, &meta).await;
    assert_ne!(location, other, "every creation gets its own id");

    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, 0);
    assert_eq!(head.length, Some(input.len() as u64));
    assert!(!head.deferred);
    assert_eq!(head.key, None, "no key before the last byte");
    let echoed = tus::parse_metadata(header(&head.headers, th::UPLOAD_METADATA));
    assert_eq!(
        echoed.get("filename").map(Vec::as_slice),
        Some(&b"photo 1.bin"[..])
    );
    assert_eq!(
        echoed.get("filetype").map(Vec::as_slice),
        Some(&b"application/x-test"[..])
    );
    tus::assert_expires_within(&head.headers, week);

    // Nothing to wait for yet: the upload is not bound to an entry.
    let early = server
        .tus_result_request(&location, Some(0))
        .send()
        .await
        .unwrap();
    assert_eq!(
        early.status(),
        StatusCode::ACCEPTED,
        "result of an unfinished upload"
    );

    let cuts = [0usize, 65_536, 200_001, input.len()];
    for w in cuts.windows(2) {
        let (from, to) = (w[0], w[1]);
        let headers = server
            .tus_patched(
                server.tus_patch(&location, from as u64, input[from..to].to_vec()),
                to as u64,
            )
            .await;
        if to < input.len() {
            tus::assert_expires_within(&headers, week);
            assert_eq!(server.tus_head(&location).await.offset, to as u64);
        }
    }

    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, input.len() as u64);
    assert_eq!(head.length, Some(input.len() as u64));
    let identity = json!({"op": "identity"});
    let key = tus::cli_key(&input, &identity).await;
    assert_eq!(
        key,
        key_of(&input, identity),
        "the CLI and the protocol crate agree"
    );
    assert_eq!(
        head.key.as_deref(),
        Some(key.as_str()),
        "Upload-Key of a finished upload without an operation: identity"
    );
    let (headers, result) = server.tus_result(&location).await;
    assert!(
        result == input,
        "the identity result is the input, byte for byte"
    );
    assert_eq!(
        header(&headers, "content-type"),
        "application/x-test",
        "an identity result is served as the filetype its upload gave"
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        "inline; filename=\"photo 1.bin\""
    );
    // The entry is an ordinary /v1 entry.
    let v1 = server
        .client()
        .get(server.url(&result_path(&Job::identity(input.clone()).key)))
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), StatusCode::OK);
    assert!(v1.bytes().await.unwrap() == input);
}

#[tokio::test]
async fn creation_with_upload_appends_the_body() {
    let server = Server::start().await;
    // The whole input in the creation request.
    let input = pseudo_random(50_000, 2);
    let (location, headers) = server
        .tus_created(
            server
                .tus_create_request(input.len() as u64, "")
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .body(input.clone()),
        )
        .await;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), input.len() as u64);
    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, input.len() as u64);
    assert_eq!(
        head.key,
        Some(key_of(&input, json!({"op": "identity"}))),
        "Upload-Key after a creation that carried every byte"
    );
    assert!(server.tus_result(&location).await.1 == input);

    // Part of it in the creation request, the rest in a PATCH.
    let input = pseudo_random(50_000, 3);
    let (location, headers) = server
        .tus_created(
            server
                .tus_create_request(input.len() as u64, "")
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .body(input[..12_345].to_vec()),
        )
        .await;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), 12_345);
    assert_eq!(server.tus_head(&location).await.offset, 12_345);
    server
        .tus_patched(
            server.tus_patch(&location, 12_345, input[12_345..].to_vec()),
            input.len() as u64,
        )
        .await;
    assert!(server.tus_result(&location).await.1 == input);
}

#[tokio::test]
async fn operation_metadata_runs_the_operation() {
    let server = Server::start().await;
    let input = png(64, 48);
    let op = grayscale_png();
    let meta = tus::metadata(&[
        ("operation", op.to_string().as_bytes()),
        ("filename", b"in.png"),
    ]);
    let (location, _) = server.tus_upload(&input, &meta).await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(tus::cli_key(&input, &op).await));
    let echoed = tus::parse_metadata(header(&head.headers, th::UPLOAD_METADATA));
    assert_eq!(
        echoed.get("filename").map(Vec::as_slice),
        Some(&b"in.png"[..])
    );

    let (headers, result) = server.tus_result(&location).await;
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(image::guess_format(&result).ok(), Some(ImageFormat::Png));
    let img = image::load_from_memory_with_format(&result, ImageFormat::Png).unwrap();
    assert_eq!(img.dimensions(), (64, 48));
    let rgb = img.to_rgb8();
    assert!(
        rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "the result is grayscale"
    );
}

#[tokio::test]
async fn the_same_bytes_and_operation_twice_run_once() {
    let server = Server::start().await;
    let input = png(40, 30);
    let op = grayscale_png();
    let meta = tus::op_metadata(&op);
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    let (first, _) = server.tus_upload(&input, &meta).await;
    let (_, first_result) = server.tus_result(&first).await;
    // The second upload sends every byte and completes normally.
    let (second, _) = server.tus_upload(&input, &meta).await;
    assert_ne!(first, second);
    let (_, second_result) = server.tus_result(&second).await;

    let key = key_of(&input, op);
    assert_eq!(
        server.tus_head(&first).await.key.as_deref(),
        Some(key.as_str())
    );
    assert_eq!(
        server.tus_head(&second).await.key.as_deref(),
        Some(key.as_str())
    );
    assert!(first_result == second_result);
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await - started,
        1.0,
        "the operation ran once for two identical uploads"
    );
    let job = Job::new(input, grayscale_png());
    assert_eq!(server.status(&job.key).await.state, State::Complete);
}

#[tokio::test]
async fn uploading_what_v1_already_computed_completes_without_running_again() {
    let server = Server::start().await;
    let job = Job::new(png(48, 32), grayscale_png());
    let v1_result = server.oneshot(&job).await;
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    let (location, _) = server
        .tus_upload(&job.input, &tus::op_metadata(&job.op_json))
        .await;
    assert_eq!(
        server.tus_head(&location).await.key,
        Some(job.key.to_hex()),
        "Upload-Key of an upload whose result already existed"
    );
    assert!(server.tus_result(&location).await.1 == v1_result);
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await,
        started,
        "nothing ran again"
    );
}

// ---------------------------------------------------------------- checksums

#[tokio::test]
async fn matching_checksums_of_every_algorithm_are_accepted() {
    let server = Server::start().await;
    let input = [FOX, HELLO, HELLO].concat();
    // sha256 on a creation with upload, md5 and sha1 on PATCHes.
    let (location, headers) = server
        .tus_created(
            server
                .tus_create_request(input.len() as u64, "")
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .header(th::UPLOAD_CHECKSUM, checksum("sha256", FOX_SHA256))
                .body(FOX.to_vec()),
        )
        .await;
    let mut offset = FOX.len() as u64;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), offset);
    for sum in [checksum("md5", HELLO_MD5), checksum("sha1", HELLO_SHA1)] {
        server
            .tus_patched(
                server
                    .tus_patch(&location, offset, HELLO.to_vec())
                    .header(th::UPLOAD_CHECKSUM, sum),
                offset + HELLO.len() as u64,
            )
            .await;
        offset += HELLO.len() as u64;
    }
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

#[tokio::test]
async fn checksum_mismatch_discards_the_body_and_a_retry_succeeds() {
    let server = Server::start().await;
    let input = [HELLO, FOX].concat();
    let location = server.tus_create(input.len() as u64, "").await;

    // The sha1 of another body: 460, and the offset does not move.
    let resp = server
        .tus_patch(&location, 0, HELLO.to_vec())
        .header(th::UPLOAD_CHECKSUM, checksum("sha1", FOX_SHA1))
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 460).await;
    assert_eq!(server.tus_head(&location).await.offset, 0);
    server
        .tus_patched(
            server
                .tus_patch(&location, 0, HELLO.to_vec())
                .header(th::UPLOAD_CHECKSUM, checksum("sha1", HELLO_SHA1)),
            5,
        )
        .await;

    // Again with md5, after some bytes are in.
    let resp = server
        .tus_patch(&location, 5, FOX.to_vec())
        .header(th::UPLOAD_CHECKSUM, checksum("md5", HELLO_MD5))
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 460).await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, 5, "a mismatched body is not committed");
    assert_eq!(head.key, None);
    server
        .tus_patched(
            server
                .tus_patch(&location, 5, FOX.to_vec())
                .header(th::UPLOAD_CHECKSUM, checksum("md5", FOX_MD5)),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

#[tokio::test]
async fn bad_checksum_headers_are_refused() {
    let server = Server::start().await;
    let location = server.tus_create(5, "").await;
    let sha1 = STANDARD.encode(hex::decode(HELLO_SHA1).unwrap());
    for bad in [
        format!("crc32 {sha1}"),
        format!("sha512 {sha1}"),
        "sha1".to_owned(),
        "sha1 !!not-base64!!".to_owned(),
    ] {
        let resp = server
            .tus_patch(&location, 0, HELLO.to_vec())
            .header(th::UPLOAD_CHECKSUM, &bad)
            .send()
            .await
            .unwrap();
        tus::assert_tus_problem(resp, 400).await;
    }
    assert_eq!(
        server.tus_head(&location).await.offset,
        0,
        "nothing was appended"
    );
}

// ------------------------------------------------------------ status codes

#[tokio::test]
async fn tus_resumable_must_be_1_0_0() {
    let server = Server::start().await;
    let location = server.tus_create(10, "").await;
    let no_version = [
        server
            .tus_bare(Method::POST, FILES)
            .header(th::UPLOAD_LENGTH, 10),
        server
            .tus_bare(Method::POST, FILES)
            .header(th::TUS_RESUMABLE, "0.2.2")
            .header(th::UPLOAD_LENGTH, 10),
        server
            .tus_bare(Method::PATCH, &location)
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(th::UPLOAD_OFFSET, 0)
            .body(HELLO.to_vec()),
        server
            .tus_bare(Method::PATCH, &location)
            .header(th::TUS_RESUMABLE, "1.0")
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(th::UPLOAD_OFFSET, 0)
            .body(HELLO.to_vec()),
        server.tus_bare(Method::DELETE, &location),
    ];
    for req in no_version {
        let (headers, _) = tus::assert_tus_problem(req.send().await.unwrap(), 412).await;
        assert!(
            tokens(&headers, th::TUS_VERSION).contains(tus::VERSION),
            "a 412 says which versions are spoken"
        );
    }
    let head = server
        .tus_bare(Method::HEAD, &location)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::PRECONDITION_FAILED,
        "HEAD without Tus-Resumable"
    );
    assert!(tokens(head.headers(), th::TUS_VERSION).contains(tus::VERSION));

    // Nothing was appended, nothing terminated.
    let head = server.tus_head(&location).await;
    assert_eq!(head.offset, 0);
}

#[tokio::test]
async fn patch_needs_the_offset_octet_stream_type() {
    let server = Server::start().await;
    let location = server.tus_create(10, "").await;
    let requests = [
        server
            .tus(Method::PATCH, &location)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(th::UPLOAD_OFFSET, 0)
            .body(HELLO.to_vec()),
        server
            .tus(Method::PATCH, &location)
            .header(th::UPLOAD_OFFSET, 0)
            .body(HELLO.to_vec()),
    ];
    for req in requests {
        tus::assert_tus_problem(req.send().await.unwrap(), 415).await;
    }
    assert_eq!(server.tus_head(&location).await.offset, 0);
}

#[tokio::test]
async fn offsets_and_lengths_must_agree_with_the_upload() {
    let server = Server::start().await;
    let location = server.tus_create(20, "").await;
    server
        .tus_patched(server.tus_patch(&location, 0, b"0123456789".to_vec()), 10)
        .await;

    // Behind and ahead of the upload: 409, with the offset to resume from.
    for wrong in [0u64, 5, 11, 15] {
        let resp = server
            .tus_patch(&location, wrong, b"abcde".to_vec())
            .send()
            .await
            .unwrap();
        let (headers, _) = tus::assert_tus_problem(resp, 409).await;
        assert_eq!(
            header_u64(&headers, th::UPLOAD_OFFSET),
            10,
            "the 409 for Upload-Offset {wrong} carries the current offset"
        );
    }
    // A malformed or missing Upload-Offset: 400.
    for bad in [Some("ten"), Some("-1"), Some(""), None] {
        let mut req = server
            .tus(Method::PATCH, &location)
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .body(b"abcde".to_vec());
        if let Some(bad) = bad {
            req = req.header(th::UPLOAD_OFFSET, bad);
        }
        tus::assert_tus_problem(req.send().await.unwrap(), 400).await;
    }
    // An Upload-Length that contradicts the one given at creation: 400.
    let resp = server
        .tus_patch(&location, 10, b"abcde".to_vec())
        .header(th::UPLOAD_LENGTH, 25)
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 400).await;

    let head = server.tus_head(&location).await;
    assert_eq!(
        (head.offset, head.length),
        (10, Some(20)),
        "nothing changed"
    );
    server
        .tus_patched(server.tus_patch(&location, 10, b"abcdefghij".to_vec()), 20)
        .await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found() {
    let server = Server::start().await;
    let real = server.tus_create(10, "").await;
    let id = real.strip_prefix(FILES).unwrap().to_owned();
    let malformed = [
        format!("{FILES}abc"),
        format!("{FILES}{}", &id[..63]),
        format!("{FILES}{id}0"),
        format!("{FILES}{}", "zz".repeat(32)),
    ];
    let unknown = unknown_location();
    for location in malformed.iter().chain([&unknown]) {
        let requests = [
            server.tus_patch(location, 0, HELLO.to_vec()),
            server.tus(Method::DELETE, location),
            server.tus(Method::GET, &format!("{location}/result")),
        ];
        for req in requests {
            tus::assert_tus_problem(req.send().await.unwrap(), 404).await;
        }
        let head = server.tus_head_response(location).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "HEAD {location}");
        tus::assert_resumable(head.headers(), "HEAD of an unknown upload");
    }
    assert_eq!(server.tus_head(&real).await.offset, 0);
}

#[tokio::test]
async fn expired_uploads_are_gone() {
    let server = Server::start_with_config("upload_ttl = 1\n", &[]).await;
    let (location, created) = server.tus_created(server.tus_create_request(100, "")).await;
    tus::assert_expires_within(&created, Duration::from_secs(5));
    server
        .tus_patched(server.tus_patch(&location, 0, HELLO.to_vec()), 5)
        .await;
    // The bytes received so far are staged on disk under the upload's id.
    let staged = server
        .data_dir()
        .join("staging")
        .join(location.rsplit('/').next().expect("an id"));
    assert_eq!(
        std::fs::metadata(&staged).map(|m| m.len()).ok(),
        Some(100),
        "the upload's staging file, sized to the upload"
    );

    // Leave it untouched past its expiry (a HEAD is a read, but do not rely
    // on that: look only every 1.5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    let status = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = server.tus_head_response(&location).await.status();
        if status != StatusCode::OK || Instant::now() > deadline {
            break status;
        }
    };
    assert_eq!(status, StatusCode::GONE, "HEAD of an expired upload");
    let resp = server
        .tus_patch(&location, 5, HELLO.to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 410).await;
    // Still gone after the expiry sweep (every second here) freed its bytes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = server
        .tus_patch(&location, 5, HELLO.to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 410).await;
    assert_eq!(
        server.tus_head_response(&location).await.status(),
        StatusCode::GONE
    );
    // Gone means gone: the sweep freed the staged bytes, not just the name.
    eventually(
        "the expiry sweep to delete the staged bytes",
        Duration::from_secs(10),
        || async { (!staged.exists()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn lengths_above_the_maximum_and_bodies_past_the_length_are_too_large() {
    let server = Server::start_with(&["--max-input-size", "64MiB"]).await;
    let resp = server
        .tus_create_request(64 * MIB + 1, "")
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 413).await;
    server.tus_create(64 * MIB, "").await; // the maximum itself is fine

    let location = server.tus_create(10, "").await;
    let resp = server
        .tus_patch(&location, 0, b"0123456789X".to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 413).await;
    assert_eq!(
        server.tus_head(&location).await.offset,
        0,
        "nothing was appended"
    );
    server
        .tus_patched(server.tus_patch(&location, 0, b"01234".to_vec()), 5)
        .await;
    let resp = server
        .tus_patch(&location, 5, b"567890".to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 413).await;
    assert_eq!(server.tus_head(&location).await.offset, 5);

    // A creation with more bytes than its Upload-Length.
    let resp = server
        .tus_create_request(4, "")
        .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
        .body(HELLO.to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 413).await;
}

#[tokio::test]
async fn malformed_creations_are_bad_requests() {
    let server = Server::start().await;
    let post = || server.tus(Method::POST, FILES);
    let cases = [
        ("Upload-Length abc", post().header(th::UPLOAD_LENGTH, "abc")),
        ("Upload-Length -1", post().header(th::UPLOAD_LENGTH, "-1")),
        ("Upload-Length 1.5", post().header(th::UPLOAD_LENGTH, "1.5")),
        ("empty Upload-Length", post().header(th::UPLOAD_LENGTH, "")),
        ("neither length header", post()),
        (
            "both length headers",
            post()
                .header(th::UPLOAD_LENGTH, 10)
                .header(th::UPLOAD_DEFER_LENGTH, 1),
        ),
        (
            "Upload-Defer-Length 2",
            post().header(th::UPLOAD_DEFER_LENGTH, 2),
        ),
        (
            "metadata that is not base64",
            post()
                .header(th::UPLOAD_LENGTH, 10)
                .header(th::UPLOAD_METADATA, "filename %%%not-base64%%%"),
        ),
        (
            "a malformed Upload-Concat",
            post()
                .header(th::UPLOAD_LENGTH, 10)
                .header(th::UPLOAD_CONCAT, "sideways"),
        ),
        (
            "an unsupported checksum algorithm on a creation with upload",
            post()
                .header(th::UPLOAD_LENGTH, 5)
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .header(th::UPLOAD_CHECKSUM, "crc32 AAAAAA==")
                .body(HELLO.to_vec()),
        ),
    ];
    for (what, req) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
        assert!(
            resp.headers().get(LOCATION).is_none(),
            "{what}: no upload was created"
        );
        tus::assert_tus_problem(resp, 400).await;
    }
}

#[tokio::test]
async fn an_invalid_operation_is_refused_at_creation() {
    let server = Server::start().await;
    let bad: [&[u8]; 3] = [
        br#"{"op":"no.such.operation"}"#,
        br#"{"op":"image.thumbnail"}"#,
        br#"{"op":"image.grayscale","format":"tiff"}"#,
    ];
    for op in bad {
        let resp = server
            .tus_create_request(10, &tus::metadata(&[("operation", op)]))
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get(LOCATION).is_none());
        tus::assert_tus_problem(resp, 422).await;
    }
    // Not JSON at all: refused too (422 like any invalid operation, or 400
    // like a malformed `Upload-Operation` on /v1).
    let resp = server
        .tus_create_request(10, &tus::metadata(&[("operation", b"this is not JSON")]))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        status == 422 || status == 400,
        "an operation that is not JSON: {status}"
    );
    assert!(resp.headers().get(LOCATION).is_none());
    tus::assert_tus_problem(resp, status).await;
}

// -------------------------------------------------------------- termination

#[tokio::test]
async fn termination_removes_the_upload() {
    let server = Server::start().await;
    let location = server.tus_create(100, "").await;
    server
        .tus_patched(server.tus_patch(&location, 0, HELLO.to_vec()), 5)
        .await;
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "DELETE");
    tus::assert_resumable(resp.headers(), "DELETE");

    assert_eq!(
        server.tus_head_response(&location).await.status(),
        StatusCode::NOT_FOUND,
        "HEAD after termination"
    );
    let resp = server
        .tus_patch(&location, 5, HELLO.to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 404).await;
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    tus::assert_tus_problem(resp, 404).await;
}

#[tokio::test]
async fn terminating_a_finished_upload_keeps_its_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10_000, 4));
    let (location, _) = server.tus_upload(&job.input, "").await;
    assert!(server.tus_result(&location).await.1 == job.input);
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server.tus_head_response(&location).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        server.wait_result(&job.key).await == job.input,
        "the result the upload produced stays"
    );
}

// ----------------------------------------------------- creation-defer-length

#[tokio::test]
async fn a_deferred_length_is_given_with_a_later_patch() {
    let server = Server::start().await;
    let input = pseudo_random(30_000, 5);
    let (location, _) = server
        .tus_created(
            server
                .tus(Method::POST, FILES)
                .header(th::UPLOAD_DEFER_LENGTH, 1),
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "HEAD has Upload-Defer-Length: 1");
    assert_eq!(head.length, None, "and no Upload-Length");
    assert_eq!(head.offset, 0);

    server
        .tus_patched(
            server.tus_patch(&location, 0, input[..10_000].to_vec()),
            10_000,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred);
    assert_eq!((head.offset, head.length, head.key), (10_000, None, None));

    // A length below what is already there: 400, nothing changes.
    let resp = server
        .tus_patch(&location, 10_000, Vec::new())
        .header(th::UPLOAD_LENGTH, 5_000)
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 400).await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "a refused Upload-Length is not recorded");
    assert_eq!(head.offset, 10_000);
    // With bytes that would run past it too: refused either way (400 or 413).
    let resp = server
        .tus_patch(&location, 10_000, input[10_000..20_000].to_vec())
        .header(th::UPLOAD_LENGTH, 5_000)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(status == 400 || status == 413, "got {status}");
    tus::assert_tus_problem(resp, status).await;
    let head = server.tus_head(&location).await;
    assert!(head.deferred, "a refused Upload-Length is not recorded");
    assert_eq!(head.offset, 10_000);

    server
        .tus_patched(
            server
                .tus_patch(&location, 10_000, input[10_000..].to_vec())
                .header(th::UPLOAD_LENGTH, input.len()),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert!(!head.deferred, "the length is known now");
    assert_eq!(head.length, Some(input.len() as u64));
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

// ------------------------------------------------------------ concatenation

/// Creates a partial upload of `bytes` and sends them; returns its `Location`.
async fn partial(server: &Server, bytes: &[u8]) -> String {
    let (location, _) = server
        .tus_created(
            server
                .tus_create_request(bytes.len() as u64, "")
                .header(th::UPLOAD_CONCAT, Concat::Partial.encode()),
        )
        .await;
    server
        .tus_patched(
            server.tus_patch(&location, 0, bytes.to_vec()),
            bytes.len() as u64,
        )
        .await;
    location
}

/// Creates the final upload of `parts` (as written in `Upload-Concat`).
async fn final_upload(server: &Server, parts: &[String], metadata: &str) -> String {
    let mut req = server
        .tus(Method::POST, FILES)
        .header(th::UPLOAD_CONCAT, Concat::Final(parts.to_vec()).encode());
    if !metadata.is_empty() {
        req = req.header(th::UPLOAD_METADATA, metadata);
    }
    server.tus_created(req).await.0
}

/// Waits until the final upload at `location` is assembled (its `HEAD` has
/// `Upload-Offset` only from then on) and bound; returns its `HEAD`.
async fn assembled(server: &Server, location: &str, length: u64) -> tus::TusHead {
    eventually(
        "the final upload to be assembled",
        Duration::from_secs(15),
        || async {
            let resp = server.tus_head_response(location).await;
            assert_eq!(resp.status(), StatusCode::OK, "HEAD {location}");
            let headers = resp.headers();
            assert_eq!(
                header_u64(headers, th::UPLOAD_LENGTH),
                length,
                "Upload-Length of a final upload is the sum of its partials'"
            );
            if let Some(offset) = headers.get(th::UPLOAD_OFFSET) {
                let offset: u64 = offset.to_str().unwrap().parse().unwrap();
                assert!(offset <= length, "Upload-Offset {offset} of {length}");
            }
            let done = headers
                .get(th::UPLOAD_OFFSET)
                .is_some_and(|o| o == &length.to_string())
                && headers.get(th::UPLOAD_KEY).is_some();
            if done {
                Some(server.tus_head(location).await)
            } else {
                None
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_final_upload_concatenates_its_partials() {
    let server = Server::start().await;
    let a = pseudo_random(100_000, 6);
    let b = pseudo_random(70_001, 7);
    let (pa, pb) = (partial(&server, &a).await, partial(&server, &b).await);
    let head = server.tus_head(&pa).await;
    assert_eq!(
        Concat::parse(header(&head.headers, th::UPLOAD_CONCAT)),
        Ok(Concat::Partial)
    );
    assert_eq!(head.offset, a.len() as u64);
    assert_eq!(head.key, None, "a partial upload is not an input");

    let fin = final_upload(&server, &[pa.clone(), pb.clone()], "").await;
    let ab = [a.as_slice(), b.as_slice()].concat();
    let head = assembled(&server, &fin, ab.len() as u64).await;
    assert!(
        matches!(
            Concat::parse(header(&head.headers, th::UPLOAD_CONCAT)),
            Ok(Concat::Final(_))
        ),
        "Upload-Concat of the final upload: {:?}",
        head.headers.get(th::UPLOAD_CONCAT)
    );
    assert_eq!(head.key, Some(key_of(&ab, json!({"op": "identity"}))));
    assert!(server.tus_result(&fin).await.1 == ab, "the result is a‖b");

    // A final upload takes no bytes of its own: any PATCH is forbidden.
    for (offset, body) in [
        (ab.len() as u64, Vec::new()),
        (ab.len() as u64, HELLO.to_vec()),
        (0, HELLO.to_vec()),
    ] {
        let resp = server
            .tus_patch(&fin, offset, body.clone())
            .send()
            .await
            .unwrap();
        let what = format!(
            "PATCH of {} bytes at {offset} to a final upload",
            body.len()
        );
        assert_eq!(resp.status().as_u16(), 403, "{what}");
        tus::assert_tus_problem(resp, 403).await;
    }
    assert_eq!(server.tus_head(&fin).await.offset, ab.len() as u64);
}

#[tokio::test]
async fn a_final_upload_takes_absolute_urls_and_an_operation() {
    let server = Server::start().await;
    let img = png(32, 24);
    let (head_part, tail_part) = img.split_at(img.len() / 3);
    let pa = partial(&server, head_part).await;
    let pb = partial(&server, tail_part).await;
    let op = grayscale_png();
    let fin = final_upload(
        &server,
        &[server.url(&pa), server.url(&pb)],
        &tus::op_metadata(&op),
    )
    .await;
    let head = assembled(&server, &fin, img.len() as u64).await;
    assert_eq!(head.key, Some(key_of(&img, op)));
    let (headers, result) = server.tus_result(&fin).await;
    assert_eq!(header(&headers, "content-type"), "image/png");
    let out = image::load_from_memory_with_format(&result, ImageFormat::Png).unwrap();
    assert_eq!(out.dimensions(), (32, 24));
}

#[tokio::test]
async fn a_final_upload_of_unknown_partials_is_refused() {
    let server = Server::start().await;
    let known = partial(&server, HELLO).await;
    let resp = server
        .tus(Method::POST, FILES)
        .header(
            th::UPLOAD_CONCAT,
            Concat::Final(vec![known, unknown_location()]).encode(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "final of an unknown partial: {status}"
    );
    assert!(resp.headers().get(LOCATION).is_none());
    tus::assert_tus_problem(resp, status).await;
}

// ---------------------------------------------------------- restart, resume

#[tokio::test]
async fn an_upload_resumes_from_its_durable_offset_after_kill9() {
    let mut server = Server::start_with(&["--default-block-size", "1MiB"]).await;
    let input = pseudo_random((4 * MIB + 123) as usize, 8);
    let location = server.tus_create(input.len() as u64, "").await;
    let acked = (5 * MIB / 2) as usize;
    server
        .tus_patched(
            server.tus_patch(&location, 0, input[..acked].to_vec()),
            acked as u64,
        )
        .await;

    // Then a PATCH cut in the middle of its body, and kill -9.
    let sent = acked + 300 * 1024;
    let mut conn = RawConn::connect(server.addr()).await;
    let headers = [
        (th::TUS_RESUMABLE, tus::VERSION.to_owned()),
        ("content-type", OFFSET_OCTET_STREAM.to_owned()),
        (th::UPLOAD_OFFSET, acked.to_string()),
        ("content-length", (input.len() - acked).to_string()),
    ];
    conn.send_head("PATCH", &location, &headers).await;
    conn.send(&input[acked..sent]).await;
    drop(conn);
    server.kill9();
    server.restart().await;

    let head = server.tus_head(&location).await;
    assert!(
        head.offset >= acked as u64 && head.offset <= sent as u64,
        "after kill -9 the offset is {}: at least the {acked} acknowledged bytes, \
         at most the {sent} sent",
        head.offset
    );
    assert_eq!(head.length, Some(input.len() as u64));
    assert_eq!(head.key, None);
    server
        .tus_patched(
            server.tus_patch(
                &location,
                head.offset,
                input[head.offset as usize..].to_vec(),
            ),
            input.len() as u64,
        )
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}

// -------------------------------------------------------------------- CORS

const APP: &str = "https://app.example";

fn assert_lists(headers: &HeaderMap, name: &str, want: &[&str]) {
    let listed = tokens(headers, name);
    for w in want {
        assert!(
            listed.contains(*w) || listed.contains("*"),
            "{name} {listed:?} lacks {w}"
        );
    }
}

#[tokio::test]
async fn cors_lets_an_allowed_origin_use_tus() {
    let server = Server::start_with(&["--cors-origin", APP]).await;
    let location = server.tus_create(10, "").await;
    let asked = [
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-checksum",
        "upload-defer-length",
        "upload-concat",
        "content-type",
        "x-http-method-override",
    ];
    // Preflights carry no Tus-Resumable (browsers send none).
    for (path, method) in [(FILES, "POST"), (location.as_str(), "PATCH")] {
        let resp = server.preflight(path, APP, method, &asked.join(", ")).await;
        assert_eq!(
            resp.status(),
            StatusCode::NO_CONTENT,
            "preflight of {method} {path}"
        );
        let headers = resp.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), APP);
        let methods: BTreeSet<String> = tokens(headers, "access-control-allow-methods")
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        // GET, HEAD and POST are CORS-safelisted; these two are not.
        for m in ["PATCH", "DELETE"] {
            assert!(
                methods.contains(m),
                "Access-Control-Allow-Methods {methods:?} lacks {m}"
            );
        }
        assert_lists(headers, "access-control-allow-headers", &asked);
    }

    let resp = server
        .tus_create_request(10, "")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let headers = resp.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), APP);
    let exposed = [
        "location",
        "upload-offset",
        "upload-length",
        "upload-key",
        "upload-expires",
        "upload-metadata",
        "tus-resumable",
        "tus-version",
    ];
    assert_lists(headers, "access-control-expose-headers", &exposed);

    let resp = server
        .tus(Method::HEAD, &location)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
    assert_lists(resp.headers(), "access-control-expose-headers", &exposed);

    // Errors too: a browser must be able to read them.
    let resp = server
        .tus_bare(Method::PATCH, &location)
        .header("origin", APP)
        .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
        .header(th::UPLOAD_OFFSET, 0)
        .body(HELLO.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
    tus::assert_tus_problem(resp, 412).await;

    // And /v1.
    let job = Job::identity(HELLO.to_vec());
    let resp = server
        .client()
        .get(server.url(&entry_path(&job.key)))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), APP);
}

#[tokio::test]
async fn cors_ignores_other_origins() {
    let server = Server::start_with(&["--cors-origin", APP]).await;
    let evil = "https://evil.example";
    let resp = server
        .preflight(FILES, evil, "POST", "tus-resumable, upload-length")
        .await;
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "preflight from {evil}: {:?}",
        resp.headers()
    );
    let resp = server
        .tus_create_request(10, "")
        .header("origin", evil)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "POST from {evil}: {:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn cors_origins_from_the_config_file_and_the_wildcard() {
    let server = Server::start_with_config("cors_origins = [\"*\"]\n", &[]).await;
    let origin = "https://anywhere.example";
    let resp = server
        .preflight(FILES, origin, "POST", "tus-resumable, upload-length")
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let allowed = header(resp.headers(), "access-control-allow-origin");
    assert!(
        allowed == "*" || allowed == origin,
        "Access-Control-Allow-Origin {allowed:?}"
    );
    let resp = server
        .tus_create_request(10, "")
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let allowed = header(resp.headers(), "access-control-allow-origin");
    assert!(
        allowed == "*" || allowed == origin,
        "Access-Control-Allow-Origin {allowed:?}"
    );
    assert_lists(
        resp.headers(),
        "access-control-expose-headers",
        &["location", "upload-offset"],
    );
}

// ------------------------------------------------------------ method override

#[tokio::test]
async fn a_post_with_method_override_patch_appends() {
    let server = Server::start().await;
    let input = pseudo_random(20_000, 9);
    let location = server.tus_create(input.len() as u64, "").await;
    let over = |offset: usize, body: &[u8]| {
        server
            .tus(Method::POST, &location)
            .header(th::METHOD_OVERRIDE, "PATCH")
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(th::UPLOAD_OFFSET, offset)
            .body(body.to_vec())
    };
    server.tus_patched(over(0, &input[..7_000]), 7_000).await;
    assert_eq!(server.tus_head(&location).await.offset, 7_000);
    // The override is a PATCH in every respect: a wrong offset is a 409.
    let (headers, _) =
        tus::assert_tus_problem(over(0, &input[..7_000]).send().await.unwrap(), 409).await;
    assert_eq!(header_u64(&headers, th::UPLOAD_OFFSET), 7_000);
    server
        .tus_patched(over(7_000, &input[7_000..]), input.len() as u64)
        .await;
    let head = server.tus_head(&location).await;
    assert_eq!(head.key, Some(key_of(&input, json!({"op": "identity"}))));
    assert!(server.tus_result(&location).await.1 == input);
}
