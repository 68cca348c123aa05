//! Every status code of the error table, and the expiration extension.

use super::*;

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
