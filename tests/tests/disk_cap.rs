//! The disk cap (`disk_cap`), on the real binary: room is reserved before
//! an upload writes, least recently used inputs and results are evicted to
//! stay under the cap, the use order survives a restart, and an upload the
//! cap cannot hold is refused with `507 disk-cap-exceeded`.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::{ProblemType, State};

const KIB: u64 = 1024;
/// The cap of these tests, and its hard limit (a tenth above).
const CAP: u64 = 1024 * KIB;
const HARD: u64 = CAP + CAP / 10;

/// Bytes under the data directory, the metadata database aside: inputs,
/// results, their records and staged uploads.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            if entry.file_name() != "db" {
                total += disk_usage(&entry.path());
            }
        } else {
            total += meta.len();
        }
    }
    total
}

async fn capped() -> Server {
    Server::start_with_config(&format!("disk_cap = \"{}KiB\"\n", CAP / KIB), &[]).await
}

/// A stored result: a one-shot identity upload of `len` bytes.
fn job(seed: u64, len: u64) -> Job {
    Job::identity(pseudo_random(len as usize, seed))
}

/// What `POST /v1/ops` says of `job` now.
async fn state_of(server: &Server, job: &Job) -> State {
    server.create(job, None).await.1.state
}

#[tokio::test]
async fn a_stream_larger_than_the_cap_stays_under_it_and_recent_results_still_hit() {
    let server = capped().await;
    let data = server.data_dir();
    // 40 results of 100 KiB: almost four times the cap.
    let jobs: Vec<Job> = (0..40).map(|i| job(i, 100 * KIB)).collect();
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(server.oneshot(j).await, j.input, "result {i}");
        let used = disk_usage(&data);
        assert!(
            used <= HARD,
            "after {i}: {used} bytes on disk, hard limit {HARD}"
        );
        // The result just made is still there.
        assert_eq!(state_of(&server, j).await, State::Complete, "result {i}");
    }
    eventually(
        "the evictor brings usage under the cap",
        Duration::from_secs(10),
        || async { (disk_usage(&data) <= CAP + 64 * KIB).then_some(()) },
    )
    .await;
    assert!(server.metric("upcache_disk_evictions_total").await >= 25.0);
    assert!(server.metric("upcache_disk_used_bytes").await <= CAP as f64);
    // The most recent ones hit...
    for j in &jobs[36..] {
        assert_eq!(state_of(&server, j).await, State::Complete);
        assert_eq!(server.wait_result(&j.key).await, j.input);
    }
    // ...the first ones were evicted: the input is asked for again, and the
    // result is made again once it is sent.
    let first = &jobs[0];
    let (_, status) = server.create(first, None).await;
    assert_eq!(status.state, State::Uploading, "evicted: upload again");
    assert_eq!(server.oneshot(first).await, first.input, "recomputed");
    assert_eq!(state_of(&server, first).await, State::Complete);
}

#[tokio::test]
async fn an_evicted_operation_result_is_recomputed_from_the_stored_input() {
    let server = capped().await;
    let picture = png(40, 30);
    let thumb = Job::new(
        picture.clone(),
        json!({"op": "image.thumbnail", "width": 20, "height": 20, "format": "png"}),
    );
    let made = server.oneshot(&thumb).await;
    // New inputs fill the cap while the picture itself keeps being used
    // (an identity hit on it); the thumbnail is not asked for again.
    let picture_itself = Job::identity(picture);
    server.oneshot(&picture_itself).await;
    for i in 0..14 {
        server.oneshot(&job(100 + i, 100 * KIB)).await;
        assert_eq!(state_of(&server, &picture_itself).await, State::Complete);
    }
    eventually("evictions", Duration::from_secs(10), || async {
        (server.metric("upcache_disk_evictions_total").await >= 4.0).then_some(())
    })
    .await;
    let completed = server.metric("upcache_operations_completed_total").await;
    let (_, status) = server.create(&thumb, None).await;
    assert_eq!(
        status.state,
        State::Processing,
        "the result, least recently used, was evicted; its input was not"
    );
    assert_eq!(server.wait_result(&thumb.key).await, made, "made again");
    assert_eq!(
        server.metric("upcache_operations_completed_total").await,
        completed + 1.0
    );
}

#[tokio::test]
async fn the_use_order_survives_a_restart() {
    let mut server = capped().await;
    // Nine results of 100 KiB fill most of the cap; the oldest is read
    // again, so the second oldest is now the least recently used.
    let jobs: Vec<Job> = (0..9).map(|i| job(200 + i, 100 * KIB)).collect();
    for j in &jobs {
        server.oneshot(j).await;
    }
    assert_eq!(server.wait_result(&jobs[0].key).await, jobs[0].input);
    server.terminate().await;
    server.restart().await;
    // Three more: the cap forces evictions, of the least recently used.
    for i in 0..3 {
        server.oneshot(&job(300 + i, 100 * KIB)).await;
    }
    eventually("evictions", Duration::from_secs(10), || async {
        (server.metric("upcache_disk_evictions_total").await >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        state_of(&server, &jobs[0]).await,
        State::Complete,
        "read just before the restart: kept"
    );
    assert_eq!(
        state_of(&server, &jobs[1]).await,
        State::Uploading,
        "the least recently used went first"
    );
}

#[tokio::test]
async fn an_upload_larger_than_the_cap_is_refused_with_507() {
    let server = capped().await;
    let big = job(1, CAP + 1);
    let resp = server.post_create(&big.create_request(None)).await;
    let (_, problem) = assert_problem(resp, ProblemType::DiskCapExceeded).await;
    assert_eq!(problem.status, 507);
    assert_eq!(problem.extensions["cap"], CAP);
    // A tus upload declaring as much is refused alike.
    let tus = server
        .client()
        .post(server.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", CAP + 1)
        .header(
            "upload-metadata",
            tus::op_metadata(&json!({"op": "identity"})),
        )
        .send()
        .await
        .unwrap();
    assert_problem(tus, ProblemType::DiskCapExceeded).await;
    // Nothing was kept of it; an upload that fits still works.
    assert_eq!(
        server.get_status(&big.key).await.status(),
        StatusCode::NOT_FOUND
    );
    let small = job(2, 10 * KIB);
    assert_eq!(server.oneshot(&small).await, small.input);
}

#[tokio::test]
async fn uploads_in_progress_hold_their_room_and_are_never_evicted() {
    let server = capped().await;
    // Two uploads of 600 KiB: the first holds its room while it waits for
    // its bytes; the second finds no room anything could be evicted for.
    let a = job(10, 600 * KIB);
    let b = job(11, 600 * KIB);
    assert_eq!(server.create(&a, None).await.1.state, State::Uploading);
    let reserved = || server.metric("upcache_disk_reserved_bytes");
    assert_eq!(reserved().await, (600 * KIB) as f64);
    let resp = server.post_create(&b.create_request(None)).await;
    assert_problem(resp, ProblemType::DiskCapExceeded).await;
    // Cancelling the first gives its room back.
    assert_eq!(server.delete(&a.key).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(reserved().await, 0.0, "DELETE gives the room back");
    assert_eq!(server.create(&b, None).await.1.state, State::Uploading);
    // Half of it sent, then deleted: the staged bytes go too.
    server
        .patch_request(&b.key, 0, b.input[..300 * KIB as usize].to_vec())
        .send()
        .await
        .unwrap();
    let staged = server.data_dir().join("staging").join(b.key.to_hex());
    assert!(staged.exists());
    assert_eq!(server.delete(&b.key).await.status(), StatusCode::NO_CONTENT);
    assert!(!staged.exists(), "DELETE removes the staged bytes");
    assert_eq!(reserved().await, 0.0);
}
