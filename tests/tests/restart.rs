//! Crash safety: `kill -9` at any point, restart on the same data directory,
//! and every acknowledged byte is still there — uploads resume, processing is
//! re-queued, results are still served.

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::State;

const BS: u64 = 64 * 1024;

#[tokio::test]
async fn kill9_mid_block_upload_keeps_acknowledged_blocks() {
    let mut server = Server::start().await;
    let job = Job::identity(pseudo_random(1024 * 1024 + 777, 1));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    let first = [0u64, 3, 4, 9, 16];
    for n in first {
        server.put_block(&job, &layout, n).await;
    }
    let before = server.head_info(&job.key).await;
    assert_eq!(before.missing, job.missing_after(&layout, &first));

    server.kill9();
    server.restart().await;

    let after = server.head_info(&job.key).await;
    assert_eq!(after, before, "every acknowledged block survives kill -9");
    assert_eq!(after.digest, job.digest_of(&layout, first));
    for n in (0..layout.blocks()).filter(|n| !first.contains(n)) {
        server.put_block(&job, &layout, n).await;
    }
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn kill9_mid_patch_keeps_the_acknowledged_offset() {
    let mut server = Server::start().await;
    let job = Job::identity(pseudo_random(700 * 1024, 2));
    server.create(&job, Some(BS)).await;
    // 200 KiB is 3 whole blocks and a partial one; the tail is acknowledged too.
    let acked = 200 * 1024 + 17;
    let resp = server
        .patch_request(&job.key, 0, job.input[..acked].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(resp.headers(), h::UPLOAD_OFFSET), acked as u64);

    server.kill9();
    server.restart().await;

    let head = server.head_info(&job.key).await;
    assert_eq!(head.state, State::Uploading);
    assert_eq!(
        head.offset, acked as u64,
        "the acknowledged offset survives kill -9"
    );
    let resp = server
        .patch_request(&job.key, head.offset, job.input[acked..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn kill9_while_processing_requeues_the_operation() {
    let mut server = Server::start().await;
    // A blur that takes seconds, so the kill lands while it runs.
    let job = Job::new(png(2000, 2000), json!({"op": "image.blur", "sigma": 40.0}));
    server.create(&job, None).await;
    let resp = server
        .patch_request(&job.key, 0, job.input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    // PATCH does not wait for the operation.
    assert_eq!(server.head_info(&job.key).await.state, State::Processing);
    server.kill9();

    server.restart().await;
    let state = server.head_info(&job.key).await.state;
    assert!(
        matches!(state, State::Processing | State::Complete),
        "state after restart: {state:?}"
    );
    let result = server.wait_result(&job.key).await;
    let img = image::load_from_memory_with_format(&result, image::ImageFormat::Png)
        .expect("a PNG result");
    assert_eq!((img.width(), img.height()), (2000, 2000));
    assert_eq!(server.status(&job.key).await.state, State::Complete);
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await,
        1.0,
        "the restarted server re-ran the operation"
    );
}

#[tokio::test]
async fn kill9_after_complete_still_serves_the_result() {
    let mut server = Server::start().await;
    let job = Job::identity(pseudo_random(300 * 1024, 3));
    assert_eq!(server.oneshot(&job).await, job.input);
    let etag = server
        .result_request(&job.key, None)
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .clone();

    server.kill9();
    server.restart().await;

    let resp = server.result_request(&job.key, None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], etag);
    assert!(resp.bytes().await.unwrap()[..] == job.input[..]);
    assert_eq!(server.head_info(&job.key).await.state, State::Complete);
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_keeps_everything() {
    let mut server = Server::start().await;
    let done = Job::identity(pseudo_random(100 * 1024, 4));
    server.oneshot(&done).await;
    let partial = Job::identity(pseudo_random(300 * 1024, 5));
    let layout = partial.layout(BS);
    server.create(&partial, Some(BS)).await;
    server.put_block(&partial, &layout, 1).await;

    let status = server.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    server.restart().await;

    assert!(server.wait_result(&done.key).await == done.input);
    assert_eq!(server.head_info(&partial.key).await.missing, "0,2-4");
}
