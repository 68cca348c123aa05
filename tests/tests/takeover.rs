//! A dead connection never locks an upload, and a trickle cannot hold one.
//!
//! A phone that moves from Wi-Fi to cellular mid-request leaves behind a
//! connection the server never hears close. The proxy's
//! [`Fault::VanishAfter`] plays that part: it closes the client's socket and
//! keeps the server's open and silent. The client's retry, on a new
//! connection, must go through at once — long before `body_idle_timeout`
//! (60 s by default, as in these tests) would end the old request — for a
//! block, a `/v1` PATCH and a tus PATCH alike.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use upcache_e2e::tus::op_metadata;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::{block_path, entry_path};
use upcache_protocol::ProblemType;

const BS: u64 = 1 << 20;
/// Generous bound for "at once": far below the 60 s idle timeout.
const AT_ONCE: Duration = Duration::from_secs(8);

/// Waits until the server has stored at least `bytes` more input bytes than
/// `before`: the vanished request is then really holding its block.
async fn stored_at_least(server: &Server, before: f64, bytes: u64) {
    eventually(
        "the server to receive the first request's bytes",
        Duration::from_secs(20),
        || async {
            let now = server.metric("upcache_bytes_stored_total").await;
            (now - before >= bytes as f64).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_block_left_by_a_vanished_connection_is_taken_over_at_once() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(2 * BS as usize, 21));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    let before = server.metric("upcache_bytes_stored_total").await;

    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_fault(Fault::VanishAfter(BS / 2));
    let cut = server
        .client()
        .put(proxy.url(&block_path(&job.key, 0)))
        .header(h::UPLOAD_BLOCK_HASH, job.block_hash(&layout, 0))
        .body(job.block(&layout, 0).to_vec())
        .send()
        .await;
    assert!(cut.is_err(), "the network took the first request away");
    stored_at_least(&server, before, BS / 4).await;

    let started = Instant::now();
    server.put_block(&job, &layout, 0).await;
    assert!(
        started.elapsed() < AT_ONCE,
        "the retried block waited {:?}",
        started.elapsed()
    );
    server.put_block(&job, &layout, 1).await;
    // The half block the old request wrote was dropped, not mixed in.
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn a_patch_left_by_a_vanished_connection_is_taken_over_at_once() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(3 * BS as usize + 777, 22));
    server.create(&job, Some(BS)).await;
    let before = server.metric("upcache_bytes_stored_total").await;

    let proxy = FaultProxy::start(server.addr()).await;
    let cut_at = BS + BS / 2;
    proxy.set_fault(Fault::VanishAfter(cut_at));
    let cut = server
        .client()
        .patch(proxy.url(&entry_path(&job.key)))
        .header(h::UPLOAD_OFFSET, 0)
        .header(reqwest::header::CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
        .body(job.input.clone())
        .send()
        .await;
    assert!(cut.is_err(), "the network took the first request away");
    stored_at_least(&server, before, BS + BS / 4).await;

    // What a resuming client does: ask for the offset, send the rest.
    let started = Instant::now();
    let offset = server.head_info(&job.key).await.offset;
    assert!(
        (BS..=cut_at).contains(&offset),
        "the durable prefix is kept: offset {offset}"
    );
    let resp = server
        .patch_request(&job.key, offset, job.input[offset as usize..].to_vec())
        .send()
        .await
        .expect("PATCH");
    let code = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(code, StatusCode::NO_CONTENT, "resumed PATCH: {body}");
    assert!(
        started.elapsed() < AT_ONCE,
        "resuming took {:?}",
        started.elapsed()
    );
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn a_tus_patch_left_by_a_vanished_connection_is_taken_over_at_once() {
    let server = Server::start().await;
    let input = pseudo_random(3 * BS as usize + 99, 23);
    let location = server
        .tus_create(
            input.len() as u64,
            &op_metadata(&serde_json::json!({"op": "identity"})),
        )
        .await;
    let before = server.metric("upcache_bytes_stored_total").await;

    let proxy = FaultProxy::start(server.addr()).await;
    let cut_at = 2 * BS;
    proxy.set_fault(Fault::VanishAfter(cut_at));
    let cut = server
        .client()
        .patch(proxy.url(&location))
        .header(h::TUS_RESUMABLE, h::TUS_PROTOCOL_VERSION)
        .header(h::UPLOAD_OFFSET, 0)
        .header(reqwest::header::CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
        .body(input.clone())
        .send()
        .await;
    assert!(cut.is_err(), "the network took the first request away");
    stored_at_least(&server, before, BS).await;

    let started = Instant::now();
    let offset = server.tus_head(&location).await.offset;
    // A tus upload's blocks are larger than this input: nothing but the
    // partial tail was durable, and it went with the connection.
    assert!(offset <= cut_at, "offset {offset}");
    server
        .tus_patched(
            server.tus_patch(&location, offset, input[offset as usize..].to_vec()),
            input.len() as u64,
        )
        .await;
    assert!(
        started.elapsed() < AT_ONCE,
        "resuming took {:?}",
        started.elapsed()
    );
    let (_, result) = server.tus_result(&location).await;
    assert!(result == input);
}

/// A body that sends a byte every half second, far below `body_min_rate`.
async fn trickle(conn: &mut RawConn, bytes: &[u8]) -> Option<RawResponse> {
    for b in bytes {
        if conn.try_send(std::slice::from_ref(b)).await.is_err() {
            break;
        }
        if let Ok(Some(resp)) = conn.try_read_response(Duration::from_millis(500)).await {
            return Some(resp);
        }
    }
    None
}

const SLOW: &str = "body_min_rate = \"1KiB\"\nbody_rate_window = 2\n";

#[tokio::test]
async fn a_trickling_block_is_ended_and_frees_its_block() {
    let server = Server::start_with_config(SLOW, &[]).await;
    let job = Job::identity(pseudo_random(BS as usize, 24));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;

    let mut conn = RawConn::connect(server.addr()).await;
    let headers = vec![
        ("content-length", BS.to_string()),
        (h::UPLOAD_BLOCK_HASH, job.block_hash(&layout, 0)),
    ];
    conn.send_head("PUT", &block_path(&job.key, 0), &headers)
        .await;
    let started = Instant::now();
    let resp = trickle(&mut conn, &job.input[..40])
        .await
        .expect("the server ends a trickling body with an answer");
    resp.assert_problem(ProblemType::BodyTooSlow);
    assert_eq!(resp.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended after {:?}",
        started.elapsed()
    );
    // The block is free and still missing.
    assert_eq!(server.head_info(&job.key).await.missing, "0");
    server.put_block(&job, &layout, 0).await;
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn a_trickling_patch_is_ended_and_keeps_what_arrived() {
    let server = Server::start_with_config(SLOW, &[]).await;
    let job = Job::identity(pseudo_random(BS as usize, 25));
    server.create(&job, Some(BS)).await;

    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PATCH", &entry_path(&job.key), &patch_headers(0, job.len()))
        .await;
    let resp = trickle(&mut conn, &job.input[..40])
        .await
        .expect("the server ends a trickling body with an answer");
    resp.assert_problem(ProblemType::BodyTooSlow);
    let offset = server.head_info(&job.key).await.offset;
    assert!(
        (1..40).contains(&offset),
        "the bytes that arrived are kept: {offset}"
    );
    let resp = server
        .patch_request(&job.key, offset, job.input[offset as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(server.wait_result(&job.key).await == job.input);
}

/// Block requests whose bodies come slowly, more of them than the runtime
/// has blocking threads (512): they are 1 KiB into 4 KiB blocks, within
/// `body_min_rate` for the test's few seconds.
const SLOW_BODIES: u64 = 600;

#[tokio::test]
async fn many_slow_bodies_do_not_hold_up_other_uploads() {
    let server = Server::start().await;
    let bs = 4096;
    let job = Job::identity(pseudo_random((SLOW_BODIES * bs) as usize, 26));
    let layout = job.layout(bs);
    server.create(&job, Some(bs)).await;
    let mut slow = Vec::new();
    for n in 0..SLOW_BODIES {
        let mut conn = RawConn::connect(server.addr()).await;
        let headers = vec![
            ("content-length", bs.to_string()),
            (h::UPLOAD_BLOCK_HASH, job.block_hash(&layout, n)),
        ];
        conn.send_head("PUT", &block_path(&job.key, n), &headers)
            .await;
        conn.send(&job.block(&layout, n)[..1024]).await;
        slow.push(conn);
    }

    // Another client's upload goes through while they wait for their bytes.
    let other = Job::identity(pseudo_random(100_000, 27));
    server.create(&other, None).await;
    let started = Instant::now();
    let resp = tokio::time::timeout(
        AT_ONCE,
        server
            .patch_request(&other.key, 0, other.input.clone())
            .send(),
    )
    .await
    .expect("an upload made while slow bodies wait is answered at once")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        started.elapsed() < AT_ONCE,
        "waited {:?}",
        started.elapsed()
    );
    assert!(server.wait_result(&other.key).await == other.input);

    // And the slow ones, once their bytes come, are all stored.
    for (n, conn) in slow.iter_mut().enumerate() {
        conn.send(&job.block(&layout, n as u64)[1024..]).await;
    }
    for conn in &mut slow {
        let resp = conn.read_response().await;
        assert!(resp.status < 300, "a slow block: {}", resp.text());
    }
    assert!(server.wait_result(&job.key).await == job.input);
}

/// Opens `count` block requests (4 MiB blocks of a new entry, the `fill`
/// byte repeated as its input hash) that each send `sent`, and waits until
/// the server has stored all of it. Returns the requests and the server's
/// RSS (kB) before them.
async fn block_bodies_stored(
    server: &Server,
    count: usize,
    sent: &[u8],
    fill: &str,
) -> (Vec<RawConn>, u64) {
    let bs: u64 = 4 << 20;
    let create = serde_json::json!({
        "input": {"blake3": fill.repeat(32), "length": count as u64 * bs},
        "block_size": bs,
        "operation": {"op": "identity"},
    });
    let resp = server.post_create(&create).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let status: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let key = status["key"].as_str().unwrap().parse().unwrap();
    let before = server.proc_status_kb("VmRSS");
    let stored = server.metric("upcache_bytes_stored_total").await;
    let mut conns = Vec::new();
    for n in 0..count as u64 {
        let mut conn = RawConn::connect(server.addr()).await;
        conn.send_head(
            "PUT",
            &block_path(&key, n),
            &[("content-length", bs.to_string())],
        )
        .await;
        conn.send(sent).await;
        conns.push(conn);
    }
    stored_at_least(server, stored, (count * sent.len()) as u64).await;
    (conns, before)
}

/// Asserts that the server's RSS comes to less than `most` kB above `before`.
async fn rss_settles_below(server: &Server, before: u64, most: u64, what: &str) {
    let grew = eventually(what, Duration::from_secs(20), || async {
        let grew = server.proc_status_kb("VmRSS").saturating_sub(before);
        (grew < most).then_some(grew)
    })
    .await;
    assert!(grew < most, "{grew} kB");
}

/// Block bodies that send their first 3 MiB at once, then stall.
const STALLED: usize = 100;

#[tokio::test]
async fn a_stalled_body_lets_its_buffers_go() {
    let server = Server::start().await;
    let sent = pseudo_random(3 << 20, 28);
    let (stalled, before) = block_bodies_stored(&server, STALLED, &sent, "ab").await;
    // Each stalled request keeps well under the 3 MiB of buffers it
    // filled (it used to keep them all): hyper's read buffer stays, up to
    // 400 KiB a connection, and the pool keeps a few buffers.
    let most = (STALLED as u64) * 1536;
    rss_settles_below(
        &server,
        before,
        most,
        "the stalled requests to let their buffers go",
    )
    .await;
    drop(stalled);
}

/// Block bodies that send 1.5 MiB at once, then trickle on.
const TRICKLING: usize = 100;

#[tokio::test]
async fn a_trickling_body_lets_its_buffers_go() {
    let server = Server::start().await;
    let sent = pseudo_random(3 << 19, 29);
    let (mut conns, before) = block_bodies_stored(&server, TRICKLING, &sent, "cd").await;
    // Then 1 KiB from each every 100 ms, far above the minimum rate and
    // never pausing long enough to count as stalled: too slow, though, to
    // fill a write buffer soon, so each must let its buffer go all the same.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let trickle = tokio::spawn(async move {
        let kib = [7u8; 1024];
        loop {
            for conn in &mut conns {
                conn.send(&kib).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stopped.changed() => return conns,
            }
        }
    });
    // Each keeps less than the 1.5 MiB of buffer it filled: hyper's read
    // buffer stays, up to 400 KiB a connection, and the pool keeps a few
    // buffers.
    let most = (TRICKLING as u64) * 1024;
    rss_settles_below(
        &server,
        before,
        most,
        "the trickling requests to let their buffers go",
    )
    .await;
    stop.send(true).unwrap();
    drop(trickle.await.unwrap());
}
