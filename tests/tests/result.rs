//! Serving results: validators, ranges, caching headers, and invalidation.

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::result_path;
use upcache_protocol::{ProblemType, State};

async fn complete(server: &Server, seed: u64) -> Job {
    let job = Job::identity(pseudo_random(100_000, seed));
    assert!(server.oneshot(&job).await == job.input);
    job
}

#[tokio::test]
async fn result_headers_and_conditional_get() {
    let server = Server::start().await;
    let job = complete(&server, 1).await;

    let resp = server.result_request(&job.key, None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    let etag = format!("\"{}\"", blake3::hash(&job.input).to_hex());
    assert_eq!(
        header(&headers, "etag"),
        etag,
        "the ETag is the result's BLAKE3"
    );
    assert_eq!(header(&headers, "cache-control"), h::IMMUTABLE);
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(header_u64(&headers, "content-length"), job.len());
    assert!(headers.contains_key("content-type"));
    assert!(resp.bytes().await.unwrap()[..] == job.input[..]);

    for validator in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let resp = server
            .result_request(&job.key, None)
            .header("if-none-match", &validator)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {validator}"
        );
        assert_eq!(header(resp.headers(), "etag"), etag);
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    let resp = server
        .result_request(&job.key, None)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a different validator gets the body"
    );

    // HEAD on the result: GET's headers, no body.
    let resp = server
        .client()
        .head(server.url(&result_path(&job.key)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "etag"), etag);
    assert_eq!(header(resp.headers(), "cache-control"), h::IMMUTABLE);
    assert_eq!(header_u64(resp.headers(), "content-length"), job.len());
}

#[tokio::test]
async fn ranges() {
    let server = Server::start().await;
    let job = complete(&server, 2).await;
    let len = job.len();
    let cases = [
        ("bytes=100-199", 100..200),
        ("bytes=0-0", 0..1),
        ("bytes=-50", len - 50..len),
        ("bytes=99990-", 99_990..len),
        ("bytes=99990-200000", 99_990..len),
    ];
    for (range, want) in cases {
        let resp = server
            .result_request(&job.key, None)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "Range: {range}");
        let content_range = format!("bytes {}-{}/{len}", want.start, want.end - 1);
        assert_eq!(
            header(resp.headers(), "content-range"),
            content_range,
            "Range: {range}"
        );
        let body = resp.bytes().await.unwrap();
        assert!(
            body[..] == job.input[want.start as usize..want.end as usize],
            "Range: {range}"
        );
    }
    let resp = server
        .result_request(&job.key, None)
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    let (headers, _) = assert_problem(resp, ProblemType::RangeNotSatisfiable).await;
    assert_eq!(header(&headers, "content-range"), format!("bytes */{len}"));

    // Several ranges: the whole result.
    let resp = server
        .result_request(&job.key, None)
        .header("range", "bytes=0-9,20-29")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == job.input[..]);
}

#[tokio::test]
async fn head_of_an_entry() {
    let server = Server::start().await;
    let job = complete(&server, 3).await;
    let head = server.head_info(&job.key).await;
    assert_eq!(head.key, job.key.to_hex());
    assert_eq!(head.state, State::Complete);
    assert_eq!((head.offset, head.length), (job.len(), job.len()));
    assert_eq!(
        head.block_size,
        upcache_protocol::blocks::DEFAULT_BLOCK_SIZE,
        "one-shot uploads use the default"
    );
    assert_eq!(head.missing, "");
    assert_eq!(
        head.digest,
        job.digest_of(&job.layout(head.block_size), [0])
    );
    assert_eq!(
        head.cache_control, "no-store",
        "an entry's state changes; it must not be cached"
    );

    let status = server.status(&job.key).await;
    assert_eq!(status.state, State::Complete);
    assert_eq!(
        status.operation,
        *job.op.normalized(),
        "the status shows the normalized operation"
    );
    let result = status.result.expect("result info");
    assert_eq!(result.url, result_path(&job.key));
    assert_eq!((result.length, result.blake3), (job.len(), job.hash));
}

#[tokio::test]
async fn delete_invalidates_the_result() {
    let server = Server::start().await;
    let job = complete(&server, 4).await;
    assert_eq!(
        server.delete(&job.key).await.status(),
        StatusCode::NO_CONTENT
    );

    let resp = server.result_request(&job.key, None).send().await.unwrap();
    assert_problem(resp, ProblemType::NotFound).await;
    assert_problem(server.get_status(&job.key).await, ProblemType::NotFound).await;
    assert_eq!(server.head(&job.key).await.status(), StatusCode::NOT_FOUND);
    assert_problem(server.delete(&job.key).await, ProblemType::NotFound).await;

    // Asking again recomputes it.
    assert!(server.oneshot(&job).await == job.input);
}

#[tokio::test]
async fn delete_cancels_an_upload() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(50_000, 5));
    let layout = job.layout(4096);
    server.create(&job, Some(4096)).await;
    server.put_block(&job, &layout, 3).await;
    assert_eq!(
        server.delete(&job.key).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(server.head(&job.key).await.status(), StatusCode::NOT_FOUND);
    let resp = server.block_request(&job, &layout, 4).send().await.unwrap();
    assert_problem(resp, ProblemType::NotFound).await;
    let (code, status) = server.create(&job, Some(4096)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(status.blocks_received, 0, "a cancelled upload starts over");
}

#[tokio::test]
async fn image_results_carry_their_media_type() {
    let server = Server::start().await;
    let job = Job::new(
        png(40, 30),
        json!({"op": "image.grayscale", "format": "jpeg"}),
    );
    let resp = server.oneshot_request(&job).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(resp.headers(), "content-type"),
        job.op.content_type().unwrap()
    );
    let resp = server.result_request(&job.key, None).send().await.unwrap();
    assert_eq!(header(resp.headers(), "content-type"), "image/jpeg");
    let info = server.status(&job.key).await.result.unwrap();
    assert_eq!(info.content_type, "image/jpeg");
}

/// Downloads of a large result whose clients stop reading hold no buffer
/// of their own: the bytes come from a mapping of the file, which the page
/// cache owns.
#[tokio::test]
async fn stalled_downloads_hold_no_buffers() {
    const STALLED: u64 = 100;
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(20 << 20, 30));
    assert!(server.oneshot(&job).await == job.input);
    let before = server.proc_status_kb("RssAnon");
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut conn = RawConn::connect(server.addr()).await;
        conn.send_head("GET", &result_path(&job.key), &[]).await;
        stalled.push(conn);
    }
    // Long enough for every request to fill its socket and stall.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let grew = server.proc_status_kb("RssAnon").saturating_sub(before);
    // Each used to hold about 0.8 MiB of read buffers.
    assert!(
        grew < STALLED * 256,
        "{grew} kB for {STALLED} stalled downloads"
    );
    // They are still served, whole.
    for conn in stalled.iter_mut().take(3) {
        let resp = conn.read_response().await;
        assert_eq!(resp.status, 200);
        assert!(resp.body == job.input);
    }
}
