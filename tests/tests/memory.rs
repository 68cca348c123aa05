//! The memory tier, seen from outside: hits answered with the result's file
//! gone from the data directory, `memory_max_item` and `memory_cap = "0"`
//! respected, results of pinned operations kept through a stream of others
//! larger than the cap, fill-back after a restart, `DELETE` reaching the
//! memory copy, and the read latency histograms of the memory and disk tiers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::Key;

const HITS: &str = "upcache_memory_hits_total";
const MISSES: &str = "upcache_memory_misses_total";
const FILLBACKS: &str = "upcache_memory_fillbacks_total";
const EVICTIONS: &str = "upcache_memory_evictions_total";
const HELD: &str = "upcache_memory_held_bytes";
const PINNED: &str = "upcache_memory_pinned_bytes";

async fn get(server: &Server, key: &Key) -> (StatusCode, Vec<u8>) {
    let resp = server
        .result_request(key, None)
        .send()
        .await
        .expect("GET result");
    let code = resp.status();
    (code, resp.bytes().await.expect("read the body").to_vec())
}

fn thumbnail(seed: u64) -> Job {
    Job::new(
        noisy_png(64, 48, seed),
        json!({"op": "image.thumbnail", "width": 16, "height": 16, "format": "png"}),
    )
}

/// The file a result's bytes live in: its own, or the input (identity).
fn file_of(server: &Server, job: &Job) -> std::path::PathBuf {
    let data = server.data_dir();
    if job.op.name() == "identity" {
        data.join("inputs").join(job.hash.to_hex())
    } else {
        data.join("results").join(job.key.to_hex())
    }
}

#[tokio::test]
async fn a_hit_is_served_from_memory_with_the_file_gone() {
    let server = Server::start().await;
    let identity = Job::identity(pseudo_random(10 * 1024, 1));
    let thumb = thumbnail(2);
    let want_identity = server.oneshot(&identity).await;
    let want_thumb = server.oneshot(&thumb).await;
    for job in [&identity, &thumb] {
        std::fs::remove_file(file_of(&server, job)).expect("remove the result's file");
    }
    let before = server.metric(HITS).await;
    assert_eq!(
        get(&server, &identity.key).await,
        (StatusCode::OK, want_identity)
    );
    assert_eq!(
        get(&server, &thumb.key).await,
        (StatusCode::OK, want_thumb.clone())
    );
    assert_eq!(server.metric(HITS).await - before, 2.0, "two memory hits");

    // A range of a memory hit.
    let resp = server
        .result_request(&thumb.key, None)
        .header("range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &want_thumb[1..4]);
}

#[tokio::test]
async fn a_disk_hit_after_a_restart_fills_memory_back() {
    let mut server = Server::start().await;
    let job = thumbnail(3);
    let want = server.oneshot(&job).await;
    server.restart().await;
    assert_eq!(get(&server, &job.key).await, (StatusCode::OK, want.clone()));
    assert_eq!(server.metric(MISSES).await, 1.0, "memory starts empty");
    assert_eq!(
        server.metric(FILLBACKS).await,
        1.0,
        "the disk hit filled it"
    );
    std::fs::remove_file(file_of(&server, &job)).unwrap();
    assert_eq!(get(&server, &job.key).await, (StatusCode::OK, want));
    assert_eq!(server.metric(HITS).await, 1.0);
}

#[tokio::test]
async fn results_above_memory_max_item_are_read_from_disk() {
    let server = Server::start_with_config(r#"memory_max_item = "64KiB""#, &[]).await;
    let large = Job::identity(pseudo_random(64 * 1024 + 1, 4));
    let small = Job::identity(pseudo_random(64 * 1024, 5));
    server.oneshot(&large).await;
    server.oneshot(&small).await;
    let hits = server.metric(HITS).await;
    let misses = server.metric(MISSES).await;
    for _ in 0..3 {
        assert_eq!(
            get(&server, &large.key).await,
            (StatusCode::OK, large.input.clone())
        );
    }
    assert_eq!(
        server.metric(HITS).await,
        hits,
        "no memory hit for the large one"
    );
    assert_eq!(server.metric(MISSES).await - misses, 3.0);
    assert_eq!(
        get(&server, &small.key).await,
        (StatusCode::OK, small.input.clone())
    );
    assert_eq!(server.metric(HITS).await - hits, 1.0, "the small one is");
}

#[tokio::test]
async fn a_zero_memory_cap_turns_the_tier_off() {
    let server = Server::start_with_config(r#"memory_cap = "0""#, &[]).await;
    let job = thumbnail(6);
    let want = server.oneshot(&job).await;
    for _ in 0..2 {
        assert_eq!(get(&server, &job.key).await, (StatusCode::OK, want.clone()));
    }
    assert_eq!(server.metric(HITS).await, 0.0);
    assert_eq!(server.metric(FILLBACKS).await, 0.0);
    // Nothing in memory: the file is what is served. (A file removed behind
    // the disk store's back is noticed within a second: its kept open file
    // is checked that often.)
    std::fs::remove_file(file_of(&server, &job)).unwrap();
    eventually(
        "the bytes were on disk only: gone with the file",
        Duration::from_secs(5),
        || async { (get(&server, &job.key).await.0 == StatusCode::NOT_FOUND).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn results_of_pinned_operations_outlive_a_stream_larger_than_the_cap() {
    let server = Server::start_with_config(
        r#"
memory_cap = "256KiB"
memory_max_item = "32KiB"
memory_pin_operations = ["image.thumbnail"]
"#,
        &[],
    )
    .await;
    let pinned = thumbnail(7);
    let want = server.oneshot(&pinned).await;
    let first = Job::identity(pseudo_random(30 * 1024, 100));
    server.oneshot(&first).await;
    // 1.5 MiB of other results through a 256 KiB tier.
    for seed in 101..151 {
        let other = Job::identity(pseudo_random(30 * 1024, seed));
        assert_eq!(server.oneshot(&other).await.len(), 30 * 1024);
    }
    assert!(server.metric(EVICTIONS).await >= 30.0, "the stream evicted");
    // The gauges tell the tier's bytes: full to its cap, pinned beside it.
    let held = server.metric(HELD).await;
    assert!(
        (128.0 * 1024.0..=256.0 * 1024.0).contains(&held),
        "held {held}"
    );
    assert_eq!(server.metric(PINNED).await, want.len() as f64);
    // The unpinned first result was evicted: its next read is a miss.
    let misses = server.metric(MISSES).await;
    get(&server, &first.key).await;
    assert_eq!(server.metric(MISSES).await - misses, 1.0);
    // The pinned one is still in memory: served with its file gone.
    std::fs::remove_file(file_of(&server, &pinned)).unwrap();
    assert_eq!(get(&server, &pinned.key).await, (StatusCode::OK, want));
}

#[tokio::test]
async fn delete_reaches_the_memory_copy() {
    let server = Server::start().await;
    let thumb = thumbnail(8);
    let identity = Job::identity(pseudo_random(4096, 9));
    for job in [&thumb, &identity] {
        server.oneshot(job).await;
        let hits = server.metric(HITS).await;
        assert_eq!(get(&server, &job.key).await.0, StatusCode::OK);
        assert_eq!(server.metric(HITS).await - hits, 1.0, "in memory before");
        let held = server.metric(HELD).await;
        assert!(held > 0.0, "held {held}");
        assert_eq!(
            server.delete(&job.key).await.status(),
            StatusCode::NO_CONTENT
        );
        // A result of its own leaves memory; identity's bytes are the input,
        // which stays (other operations may use it).
        let after = server.metric(HELD).await;
        if job.op.name() == "identity" {
            assert_eq!(after, held, "the input stays in memory");
        } else {
            assert!(
                after < held,
                "the result's bytes left memory: {held} -> {after}"
            );
        }
        let (code, _) = get(&server, &job.key).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "deleted: {}", job.op.name());
        let head = server
            .client()
            .head(server.url(&upcache_protocol::status::result_path(&job.key)))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::NOT_FOUND);
    }
    // Created again, the result is made again and served.
    let again = server.oneshot(&thumb).await;
    assert_eq!(get(&server, &thumb.key).await, (StatusCode::OK, again));
}

#[tokio::test]
async fn head_of_a_result_reads_no_bytes_and_says_their_length() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(5000, 10));
    server.oneshot(&job).await;
    let hits = server.metric(HITS).await;
    let resp = server
        .client()
        .head(server.url(&upcache_protocol::status::result_path(&job.key)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "content-length"), "5000");
    assert_eq!(
        header(resp.headers(), "etag"),
        format!("\"{}\"", job.hash.to_hex())
    );
    assert_eq!(server.metric(HITS).await, hits, "HEAD read nothing");
}

async fn exposition(server: &Server) -> String {
    let resp = server.client().get(server.url("/metrics")).send().await;
    resp.expect("GET /metrics")
        .text()
        .await
        .expect("read /metrics")
}

/// The samples of histogram `name` in `text`: its cumulative `_bucket`
/// counts in order, its `_sum` and its `_count`.
fn histogram(text: &str, name: &str) -> (Vec<f64>, f64, f64) {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .collect();
    (
        buckets,
        parse_counter(text, &format!("{name}_sum")),
        parse_counter(text, &format!("{name}_count")),
    )
}

#[tokio::test]
async fn read_latency_histograms_move_per_tier() {
    let server = Server::start_with_config(r#"memory_max_item = "64KiB""#, &[]).await;
    let on_disk = Job::identity(pseudo_random(64 * 1024 + 1, 20));
    let in_memory = Job::identity(pseudo_random(1024, 21));
    server.oneshot(&on_disk).await;
    server.oneshot(&in_memory).await;
    // A produced result goes into memory after the answer: wait for it, or
    // the first read is a miss that fills from disk.
    eventually(
        "the small result in memory",
        Duration::from_secs(5),
        || async { (server.metric(HELD).await >= 1024.0).then_some(()) },
    )
    .await;
    let before = exposition(&server).await;
    for _ in 0..3 {
        assert_eq!(get(&server, &on_disk.key).await.1, on_disk.input);
    }
    for _ in 0..5 {
        assert_eq!(get(&server, &in_memory.key).await.1, in_memory.input);
    }
    let after = exposition(&server).await;
    for (name, reads) in [
        ("upcache_disk_read_seconds", 3.0),
        ("upcache_memory_read_seconds", 5.0),
    ] {
        let (b0, sum0, count0) = histogram(&before, name);
        let (b1, sum1, count1) = histogram(&after, name);
        assert_eq!(count1 - count0, reads, "{name}: one observation a read");
        assert!(sum1 > sum0, "{name}: time was recorded");
        assert_eq!(b1.len(), b0.len());
        assert!(b1.windows(2).all(|w| w[0] <= w[1]), "{name}: cumulative");
        assert_eq!(*b1.last().unwrap(), count1, "{name}: +Inf is the count");
    }
    let (_, _, remote) = histogram(&after, "upcache_remote_read_seconds");
    assert_eq!(remote, 0.0, "no remote tier, no remote reads");
}
