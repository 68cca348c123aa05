//! The core protocol and creation: create, `HEAD`, `PATCH` in chunks, creation-with-upload, operations in the metadata, single flight with `/v1`.

use super::*;

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
