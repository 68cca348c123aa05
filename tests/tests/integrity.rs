//! What the server never does: publish a result under a key whose input did not
//! hash to the claimed value, or hide that an operation failed. Failures are
//! reported with their problem type and can be retried without re-uploading.

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::{InputHash, Key, Operation, ProblemType, State};

const BS: u64 = 16 * 1024;

/// A job that claims the hash of `claimed` but whose bytes are `actual`.
fn lying_job(claimed: &[u8], actual: Vec<u8>) -> Job {
    assert_eq!(claimed.len(), actual.len());
    let op = json!({"op": "identity"});
    let hash = InputHash::of(claimed);
    let parsed = Operation::parse(&op).unwrap();
    Job {
        key: Key::derive(&hash, &parsed),
        hash,
        op_json: op,
        op: parsed,
        input: actual,
    }
}

/// The entry failed with `kind`, and its result is that problem, not bytes.
async fn assert_failed_with(server: &Server, key: &Key, kind: ProblemType) {
    let status = server.status(key).await;
    assert_eq!(status.state, State::Failed);
    let error = status.error.expect("a failed status carries its problem");
    assert_eq!(error.type_uri, kind.uri());
    let resp = server.result_request(key, Some(0)).send().await.unwrap();
    assert_problem(resp, kind).await;
}

#[tokio::test]
async fn patched_bytes_that_do_not_match_the_claimed_hash_are_not_published() {
    let server = Server::start().await;
    let real = pseudo_random(100 * 1024, 1);
    let liar = lying_job(&real, pseudo_random(100 * 1024, 2));
    server.create(&liar, Some(BS)).await;
    let last_byte_answer = server
        .patch_request(&liar.key, 0, liar.input.clone())
        .send()
        .await
        .unwrap();
    assert_failed_with(&server, &liar.key, ProblemType::InputHashMismatch).await;

    // A POST restarts the upload; the real bytes then give the result.
    let honest = Job::identity(real);
    assert_eq!(honest.key, liar.key);
    let (_, status) = server.create(&honest, Some(BS)).await;
    assert_eq!(
        status.state,
        State::Uploading,
        "an input-hash mismatch is retried by uploading again"
    );
    assert_eq!(status.offset, 0, "none of the wrong bytes are kept");
    let resp = server
        .patch_request(&honest.key, 0, honest.input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(server.wait_result(&honest.key).await == honest.input);

    // The PATCH that delivered the last (wrong) byte was answered with the problem.
    assert_problem(last_byte_answer, ProblemType::InputHashMismatch).await;
}

#[tokio::test]
async fn blocks_that_do_not_make_the_claimed_input_are_not_published() {
    let server = Server::start().await;
    let real = pseudo_random(5 * BS as usize, 3);
    let mut actual = real.clone();
    actual[3 * BS as usize + 5] ^= 0x80; // one bit off in block 3
    let liar = lying_job(&real, actual);
    let layout = liar.layout(BS);
    server.create(&liar, Some(BS)).await;
    // Each block matches its own Upload-Block-Hash; only the whole is wrong.
    for n in 0..layout.blocks() - 1 {
        server.put_block(&liar, &layout, n).await;
    }
    let resp = server
        .block_request(&liar, &layout, layout.blocks() - 1)
        .send()
        .await
        .unwrap();
    assert_failed_with(&server, &liar.key, ProblemType::InputHashMismatch).await;
    // The request that delivered the last byte is answered with the problem.
    assert_problem(resp, ProblemType::InputHashMismatch).await;
}

#[tokio::test]
async fn oneshot_bytes_that_do_not_match_the_claimed_hash_are_not_published() {
    let server = Server::start().await;
    let real = pseudo_random(50_000, 4);
    let liar = lying_job(&real, pseudo_random(50_000, 5));
    let resp = server.oneshot_request(&liar).send().await.unwrap();
    assert_problem(resp, ProblemType::InputHashMismatch).await;
    let resp = server
        .result_request(&liar.key, Some(0))
        .send()
        .await
        .unwrap();
    assert_ne!(
        resp.status(),
        StatusCode::OK,
        "nothing is served under the key"
    );

    // The honest client is not blocked by the liar.
    let honest = Job::identity(real);
    assert!(server.oneshot(&honest).await == honest.input);
}

#[tokio::test]
async fn non_image_input_to_an_image_operation_fails_and_keeps_the_input() {
    let server = Server::start().await;
    let job = Job::new(
        pseudo_random(20_000, 6),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let resp = server.oneshot_request(&job).send().await.unwrap();
    assert_problem(resp, ProblemType::InvalidImage).await;
    assert_failed_with(&server, &job.key, ProblemType::InvalidImage).await;
    assert_eq!(
        server.metric(metrics::OPERATIONS_FAILED).await,
        1.0,
        "the failure is counted"
    );

    // Within failure_ttl a POST reports the failure instead of retrying.
    let (code, status) = server.create(&job, None).await;
    assert_eq!((code, status.state), (StatusCode::OK, State::Failed));
    assert_eq!(
        status.error.map(|e| e.type_uri),
        Some(ProblemType::InvalidImage.uri())
    );

    // The failure is cached (not re-run) for the next client.
    let started = server.metric(metrics::OPERATIONS_STARTED).await;
    let resp = server.oneshot_request(&job).send().await.unwrap();
    assert_problem(resp, ProblemType::InvalidImage).await;
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await,
        started,
        "a cached failure does not run again"
    );

    // The input was kept: another operation on it needs no upload.
    let identity = job.with_op(json!({"op": "identity"}));
    let (_, status) = server.create(&identity, None).await;
    assert_ne!(status.state, State::Uploading, "the stored input is reused");
    assert!(server.wait_result(&identity.key).await == job.input);
}

#[tokio::test]
async fn non_image_input_uploaded_by_patch_reports_the_failure_to_waiters() {
    let server = Server::start().await;
    let job = Job::new(
        b"definitely not an image".repeat(100),
        json!({"op": "image.grayscale"}),
    );
    server.create(&job, None).await;
    let resp = server
        .patch_request(&job.key, 0, job.input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "the upload itself succeeds"
    );
    // A waiter is woken by the failure and gets the problem.
    let resp = server
        .result_request(&job.key, Some(30))
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::InvalidImage).await;
    assert_eq!(server.head_info(&job.key).await.state, State::Failed);
}

#[tokio::test]
async fn a_truncated_image_is_invalid() {
    let server = Server::start().await;
    let mut bytes = png(300, 200);
    bytes.truncate(bytes.len() / 2);
    let job = Job::new(
        bytes,
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let resp = server.oneshot_request(&job).send().await.unwrap();
    assert_problem(resp, ProblemType::InvalidImage).await;
    assert_eq!(server.status(&job.key).await.state, State::Failed);
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small, valid PNG whose header claims `width` × `height` pixels: what a
/// decompression bomb looks like to a decoder that trusts the header.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(16, 16);
    // Signature (8) | IHDR length (4) | "IHDR" (4) | width (4) | height (4) | … | CRC
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[tokio::test]
async fn a_decompression_bomb_is_a_clear_422_and_the_server_carries_on() {
    let server = Server::start().await;
    let bomb = Job::new(
        png_claiming(100_000, 100_000),
        json!({"op": "image.thumbnail", "width": 64, "height": 64}),
    );
    let resp = server.oneshot_request(&bomb).send().await.unwrap();
    let (_, problem) = assert_problem(resp, ProblemType::ImageTooLarge).await;
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("100000"),
        "the problem says what was too large: {detail}"
    );
    assert_failed_with(&server, &bomb.key, ProblemType::ImageTooLarge).await;

    // The server is unharmed: a normal image right after works.
    let fine = Job::new(
        png(40, 20),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let out = server.oneshot(&fine).await;
    let img = image::load_from_memory(&out).unwrap();
    assert_eq!((img.width(), img.height()), (10, 5));
}
