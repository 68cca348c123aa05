//! Bad requests: each gets its own problem type, and none changes anything —
//! the entry's `HEAD` (or the absence of an entry) is the same afterwards.

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::{block_path, entry_path, OPS_PATH};
use upcache_protocol::{InputHash, Key, Operation, ProblemType};

const BS: u64 = 4096;

/// A server with one entry in the middle of an upload (blocks 0 and 2 of 5 in).
async fn uploading() -> (Server, Job, HeadInfo) {
    mid_upload(5, BS, 1).await
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let server = Server::start().await;
    let good = Job::identity(b"x".to_vec()).key.to_hex();
    for bad in [
        "abc".to_owned(),
        good[..63].to_owned(),
        format!("{good}0"),
        "zz".repeat(32),
    ] {
        let c = server.client();
        let requests = [
            c.get(server.url(&format!("/v1/ops/{bad}"))),
            c.delete(server.url(&format!("/v1/ops/{bad}"))),
            c.patch(server.url(&format!("/v1/ops/{bad}")))
                .header(h::UPLOAD_OFFSET, 0)
                .header("content-type", h::OFFSET_OCTET_STREAM)
                .body("x"),
            c.put(server.url(&format!("/v1/ops/{bad}/blocks/0")))
                .body("x"),
            c.get(server.url(&format!("/v1/ops/{bad}/result"))),
        ];
        for req in requests {
            assert_problem(req.send().await.unwrap(), ProblemType::InvalidKey).await;
        }
        let resp = c
            .head(server.url(&format!("/v1/ops/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "HEAD /v1/ops/{bad}");
    }
}

#[tokio::test]
async fn oneshot_key_must_match_input_and_operation() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10_000, 2));
    let other = job.with_op(json!({"op": "image.grayscale"}));
    let resp = server
        .client()
        .put(server.url(&entry_path(&other.key)))
        .header(h::UPLOAD_INPUT_HASH, job.hash.to_hex())
        .header(h::UPLOAD_OPERATION, job.op_header())
        .body(job.input.clone())
        .send()
        .await
        .unwrap();
    let (_, problem) = assert_problem(resp, ProblemType::KeyMismatch).await;
    assert_eq!(
        problem.extensions.get("key").and_then(|k| k.as_str()),
        Some(job.key.to_hex().as_str()),
        "the derived key"
    );
    assert_eq!(
        server.get_status(&job.key).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_status(&other.key).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// POSTs `operation` for a small input and PUTs it one-shot; both must be `kind`.
async fn assert_operation_refused(
    server: &Server,
    operation: serde_json::Value,
    kind: ProblemType,
) {
    let input = pseudo_random(1000, 3);
    let hash = InputHash::of(&input);
    let body = json!({"input": {"blake3": hash, "length": input.len()}, "operation": operation});
    assert_problem(server.post_create(&body).await, kind).await;

    // No key can be derived from a refused operation: PUT to any key.
    let key = Job::identity(input.clone()).key;
    let resp = server
        .client()
        .put(server.url(&entry_path(&key)))
        .header(h::UPLOAD_INPUT_HASH, hash.to_hex())
        .header(h::UPLOAD_OPERATION, h::encode_operation(&operation))
        .body(input)
        .send()
        .await
        .unwrap();
    assert_problem(resp, kind).await;
    assert_eq!(
        server.get_status(&key).await.status(),
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
}

#[tokio::test]
async fn unknown_operation() {
    let server = Server::start().await;
    assert_operation_refused(
        &server,
        json!({"op": "nope"}),
        ProblemType::UnknownOperation,
    )
    .await;
    assert_operation_refused(
        &server,
        json!({"op": "image.sharpen"}),
        ProblemType::UnknownOperation,
    )
    .await;
}

#[tokio::test]
async fn invalid_operation() {
    let server = Server::start().await;
    for op in [
        json!({"op": "identity", "extra": 1}),
        json!({"op": "image.thumbnail", "width": 0, "height": 10}),
        json!({"op": "image.thumbnail", "width": 10}),
        json!({"op": "image.rotate", "degrees": 45}),
        json!({"op": "image.grayscale", "format": "png", "quality": 50}),
        json!({"op": "image.pipeline", "steps": [{"op": "image.flip", "format": "png"}]}),
        json!({"op": 5}),
        json!(["identity"]),
    ] {
        assert!(
            Operation::parse(&op).is_err(),
            "the protocol crate refuses {op} too"
        );
        assert_operation_refused(&server, op, ProblemType::InvalidOperation).await;
    }
}

#[tokio::test]
async fn unsupported_operation_version() {
    let server = Server::start().await;
    assert_operation_refused(
        &server,
        json!({"op": "identity", "v": 2}),
        ProblemType::UnsupportedVersion,
    )
    .await;
    assert_operation_refused(
        &server,
        json!({"op": "identity", "v": 1.0}),
        ProblemType::UnsupportedVersion,
    )
    .await;
    assert_operation_refused(
        &server,
        json!({"op": "image.blur", "v": 9, "sigma": 1}),
        ProblemType::UnsupportedVersion,
    )
    .await;
}

#[tokio::test]
async fn invalid_block_size_creates_nothing() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10_000, 4));
    for bs in [0u64, 512, 1000, 3000, 4097, 2 << 30] {
        let resp = server.post_create(&job.create_request(Some(bs))).await;
        assert_problem(resp, ProblemType::InvalidBlockSize).await;
    }
    assert_eq!(
        server.get_status(&job.key).await.status(),
        StatusCode::NOT_FOUND
    );
    let (code, _) = server.create(&job, Some(1024)).await;
    assert_eq!(
        code,
        StatusCode::CREATED,
        "the refused requests created nothing"
    );
}

#[tokio::test]
async fn block_index_out_of_range() {
    let (server, job, before) = uploading().await;
    for n in [5u64, 6, 1000, u32::MAX as u64 + 1] {
        let resp = server
            .client()
            .put(server.url(&block_path(&job.key, n)))
            .body(vec![0u8; 100])
            .send()
            .await
            .unwrap();
        assert_problem(resp, ProblemType::InvalidBlock).await;
    }
    for n in ["abc", "-1", "1.0"] {
        let url = server.url(&format!("{}/blocks/{n}", entry_path(&job.key)));
        let resp = server
            .client()
            .put(url)
            .body(vec![0u8; 100])
            .send()
            .await
            .unwrap();
        assert_problem(resp, ProblemType::InvalidBlock).await;
    }
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn block_hash_mismatch_leaves_the_block_missing() {
    let (server, job, before) = uploading().await;
    let layout = job.layout(BS);
    let put = |hash: String, body: Vec<u8>| {
        server
            .client()
            .put(server.url(&block_path(&job.key, 1)))
            .header(h::UPLOAD_BLOCK_HASH, hash)
            .body(body)
            .send()
    };
    let right_bytes = job.block(&layout, 1).to_vec();

    // The right bytes with the hash of other bytes.
    let wrong_hash = blake3::hash(b"something else").to_hex().to_string();
    assert_problem(
        put(wrong_hash, right_bytes.clone()).await.unwrap(),
        ProblemType::BlockHashMismatch,
    )
    .await;
    assert_eq!(
        server.head_info(&job.key).await,
        before,
        "block 1 stays missing"
    );

    // Bytes corrupted in transit: they no longer match the right hash.
    let mut corrupted = right_bytes.clone();
    corrupted[7] ^= 1;
    let resp = put(job.block_hash(&layout, 1), corrupted).await.unwrap();
    assert_problem(resp, ProblemType::BlockHashMismatch).await;
    assert_eq!(server.head_info(&job.key).await, before);

    // A malformed hash is a bad header.
    assert_problem(
        put("xyz".to_owned(), right_bytes).await.unwrap(),
        ProblemType::InvalidHeader,
    )
    .await;
    assert_eq!(server.head_info(&job.key).await, before);

    // The right block is then accepted.
    server.put_block(&job, &layout, 1).await;
    assert_eq!(server.head_info(&job.key).await.missing, "3-4");
}

#[tokio::test]
async fn a_block_checked_by_its_chaining_value() {
    let (server, job, before) = uploading().await;
    let layout = job.layout(BS);
    let put = |n: u64, hash: String, body: Vec<u8>| {
        server
            .client()
            .put(server.url(&block_path(&job.key, n)))
            .header(h::UPLOAD_BLOCK_HASH, hash)
            .body(body)
            .send()
    };
    let cv = |n: u64| h::BlockHash::Chaining(job.cv(&layout, n)).to_header();
    let block3 = job.block(&layout, 3).to_vec();

    // Block 3's bytes under the chaining value of block 4: a chaining value
    // binds the bytes to their place, so this is refused.
    let resp = put(3, cv(4), block3.clone()).await.unwrap();
    assert_problem(resp, ProblemType::BlockHashMismatch).await;
    // Bytes corrupted in transit.
    let mut corrupted = block3.clone();
    corrupted[100] ^= 0x40;
    let resp = put(3, cv(3), corrupted).await.unwrap();
    assert_problem(resp, ProblemType::BlockHashMismatch).await;
    // A malformed value.
    let resp = put(3, "cv=abc".into(), block3.clone()).await.unwrap();
    assert_problem(resp, ProblemType::InvalidHeader).await;
    assert_eq!(
        server.head_info(&job.key).await,
        before,
        "block 3 stays missing"
    );

    // The right chaining values are accepted, and the input completes.
    for n in [3, 4] {
        let resp = put(n, cv(n), job.block(&layout, n).to_vec()).await.unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::NO_CONTENT, "block {n}");
    }
    let resp = put(1, cv(1), job.block(&layout, 1).to_vec()).await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::NO_CONTENT);
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn block_of_the_wrong_length() {
    let (server, job, before) = uploading().await;
    let layout = job.layout(BS);
    let full = job.block(&layout, 1);
    let last = job.block(&layout, 4);
    assert_eq!(last.len(), 100);
    let cases: [(u64, &[u8]); 4] = [
        (1, &full[..full.len() - 1]),
        (1, &job.input[BS as usize..2 * BS as usize + 1]),
        (4, &last[..99]),
        (4, full),
    ];
    for (n, body) in cases {
        let resp = server
            .client()
            .put(server.url(&block_path(&job.key, n)))
            .header(h::UPLOAD_BLOCK_HASH, blake3::hash(body).to_hex().as_str())
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_problem(resp, ProblemType::BlockLengthMismatch).await;
    }
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn oneshot_body_cut_short_publishes_nothing() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(256 * 1024, 5));
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PUT", &entry_path(&job.key), &oneshot_headers(&job))
        .await;
    assert_eq!(conn.read_response().await.status, 100);
    conn.send(&job.input[..100 * 1024]).await;
    conn.shutdown_write().await;
    // The server may answer (HTTP/1.1 half-close) or just close; if it answers,
    // it is with the right problem.
    if let Ok(Some(resp)) = conn.try_read_response(STEP_TIMEOUT).await {
        resp.assert_problem(ProblemType::BodyLengthMismatch);
    }
    drop(conn);

    let resp = server
        .result_request(&job.key, Some(0))
        .send()
        .await
        .unwrap();
    assert_ne!(
        resp.status(),
        StatusCode::OK,
        "nothing is served from a cut-short body"
    );
    // A full upload afterwards works.
    assert!(server.oneshot(&job).await == job.input);
}

#[tokio::test]
async fn input_larger_than_the_maximum_is_refused_before_upload() {
    let server = Server::start_with(&["--max-input-size", "1MiB"]).await;
    let too_big = Job::identity(pseudo_random(1024 * 1024 + 1, 6));
    let resp = server.post_create(&too_big.create_request(None)).await;
    assert_problem(resp, ProblemType::InputTooLarge).await;

    // The one-shot PUT is refused on its Content-Length, before any body byte.
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PUT", &entry_path(&too_big.key), &oneshot_headers(&too_big))
        .await;
    let resp = conn.read_response().await;
    resp.assert_problem(ProblemType::InputTooLarge);
    assert_eq!(
        server.get_status(&too_big.key).await.status(),
        StatusCode::NOT_FOUND
    );

    // Exactly the maximum is fine.
    let max = Job::identity(pseudo_random(1024 * 1024, 7));
    let (code, _) = server.create(&max, None).await;
    assert_eq!(code, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_create_requests() {
    let server = Server::start().await;
    let c = server.client();
    let post = |body: String| {
        c.post(server.url(OPS_PATH))
            .header("content-type", h::JSON)
            .body(body)
            .send()
    };
    let hash = InputHash::of(b"abc").to_hex();
    for body in [
        "{not json".to_owned(),
        "[]".to_owned(),
        json!({"operation": {"op": "identity"}}).to_string(),
        json!({"input": {"blake3": hash, "length": 3}}).to_string(),
        json!({"input": {"blake3": "zz", "length": 3}, "operation": {"op": "identity"}}).to_string(),
        json!({"input": {"blake3": hash, "length": -3}, "operation": {"op": "identity"}}).to_string(),
        json!({"input": {"blake3": hash, "length": 3}, "operation": {"op": "identity"}, "extra": 1}).to_string(),
    ] {
        assert_problem(post(body).await.unwrap(), ProblemType::MalformedRequest).await;
    }
    // Over the JSON body limit (64 KiB).
    let huge = json!({"input": {"blake3": hash, "length": 3}, "operation": {"op": "identity"}, "pad": "x".repeat(70_000)});
    assert_problem(
        post(huge.to_string()).await.unwrap(),
        ProblemType::RequestTooLarge,
    )
    .await;
}

#[tokio::test]
async fn oneshot_headers_are_required() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(5000, 8));
    let url = server.url(&entry_path(&job.key));
    let c = server.client();
    let cases = [
        c.put(&url).header(h::UPLOAD_OPERATION, job.op_header()),
        c.put(&url)
            .header(h::UPLOAD_OPERATION, job.op_header())
            .header(h::UPLOAD_INPUT_HASH, "not-a-hash"),
        c.put(&url).header(h::UPLOAD_INPUT_HASH, job.hash.to_hex()),
        c.put(&url)
            .header(h::UPLOAD_INPUT_HASH, job.hash.to_hex())
            .header(h::UPLOAD_OPERATION, "!!not base64!!"),
        c.put(&url)
            .header(h::UPLOAD_INPUT_HASH, job.hash.to_hex())
            .header(h::UPLOAD_OPERATION, "bm90IGpzb24"),
    ];
    for req in cases {
        assert_problem(
            req.body(job.input.clone()).send().await.unwrap(),
            ProblemType::InvalidHeader,
        )
        .await;
    }
    assert_eq!(
        server.get_status(&job.key).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn oneshot_without_content_length() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(5000, 9));
    let mut conn = RawConn::connect(server.addr()).await;
    let headers = [
        ("transfer-encoding", "chunked".to_owned()),
        (h::UPLOAD_INPUT_HASH, job.hash.to_hex()),
        (h::UPLOAD_OPERATION, job.op_header()),
    ];
    conn.send_head("PUT", &entry_path(&job.key), &headers).await;
    let mut body = format!("{:x}\r\n", job.input.len()).into_bytes();
    body.extend_from_slice(&job.input);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let _ = conn.try_send(&body).await; // the server may refuse before reading it
    conn.read_response()
        .await
        .assert_problem(ProblemType::LengthRequired);
    assert_eq!(
        server.get_status(&job.key).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn length_must_match_the_existing_entry() {
    let (server, job, before) = uploading().await;
    let mut body = job.create_request(Some(BS));
    body["input"]["length"] = json!(job.len() + 1);
    assert_problem(server.post_create(&body).await, ProblemType::LengthMismatch).await;
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn unknown_keys_are_not_found() {
    let server = Server::start().await;
    let key = Key::derive(
        &InputHash::of(b"never uploaded"),
        &Operation::parse(&json!({"op": "identity"})).unwrap(),
    );
    assert_problem(server.get_status(&key).await, ProblemType::NotFound).await;
    assert_problem(server.delete(&key).await, ProblemType::NotFound).await;
    assert_eq!(server.head(&key).await.status(), StatusCode::NOT_FOUND);
    let resp = server
        .client()
        .put(server.url(&block_path(&key, 0)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::NotFound).await;
}
