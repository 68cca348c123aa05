//! Sequential resumable uploads (`PATCH` + `Upload-Offset`): a connection that
//! breaks mid-body keeps what arrived, `HEAD` says where to resume, and the
//! resumed upload gives the exact input back.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::entry_path;
use upcache_protocol::{Key, ProblemType, State};

const BS: u64 = 64 * 1024;

/// An identity job of a little over 1 MiB (17 blocks of 64 KiB, the last one short).
fn job(seed: u64) -> Job {
    Job::identity(pseudo_random(1024 * 1024 + 1000, seed))
}

/// Sends the rest of the input from `offset` the way a resuming client does:
/// a 409 means the broken request is still being wound up, so take the offset
/// the server reports (or re-read it) and try again. Every offset the server
/// reports must stay within the `sent` bytes it can have received.
async fn resume(server: &Server, job: &Job, mut offset: u64, sent: u64) -> HeaderMap {
    for _ in 0..100 {
        assert!(
            offset <= sent,
            "the server reports offset {offset}, but only {sent} bytes were ever sent"
        );
        let rest = job.input[offset as usize..].to_vec();
        let resp = server
            .patch_request(&job.key, offset, rest)
            .send()
            .await
            .expect("PATCH");
        if resp.status() == StatusCode::NO_CONTENT {
            return resp.headers().clone();
        }
        let (_, problem) = any_problem(resp).await;
        match problem.kind() {
            Some(ProblemType::OffsetMismatch) => {
                offset = problem.extensions["offset"]
                    .as_u64()
                    .expect("an offset member");
            }
            Some(ProblemType::UploadBusy) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                offset = server.head_info(&job.key).await.offset;
            }
            _ => panic!("resuming at {offset}: {problem}"),
        }
    }
    panic!("the upload could not be resumed");
}

async fn offset_once_settled(
    server: &Server,
    key: &Key,
    what: &str,
    ok: impl Fn(u64) -> bool,
) -> u64 {
    eventually(what, Duration::from_secs(15), || async {
        let offset = server.head_info(key).await.offset;
        ok(offset).then_some(offset)
    })
    .await
}

#[tokio::test]
async fn interrupted_patch_resumes_from_the_reported_offset() {
    let server = Server::start().await;
    let job = job(1);
    let (code, status) = server.create(&job, Some(BS)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(status.state, State::Uploading);
    assert_eq!(
        (status.offset, status.block_size, status.blocks_total),
        (0, BS, 17)
    );
    assert_eq!(status.missing, "0-16");

    // Send the head and 300 KiB + 123 bytes of the body, then vanish.
    let sent = 300 * 1024 + 123;
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PATCH", &entry_path(&job.key), &patch_headers(0, job.len()))
        .await;
    conn.send(&job.input[..sent as usize]).await;
    drop(conn);

    // Every byte that arrived is kept, the partial tail of block 4 included.
    let offset = offset_once_settled(&server, &job.key, "all bytes sent to be kept", |o| {
        o == sent
    })
    .await;
    let head = server.head_info(&job.key).await;
    assert_eq!(head.state, State::Uploading);
    assert_eq!(
        head.missing, "4-16",
        "blocks 0-3 are whole, block 4 is partial"
    );
    assert_eq!(head.digest, job.digest_of(&job.layout(BS), 0..4));

    let headers = resume(&server, &job, offset, job.len()).await;
    assert_eq!(header_u64(&headers, h::UPLOAD_OFFSET), job.len());
    assert_eq!(header(&headers, h::UPLOAD_MISSING), "");
    assert!(
        server.wait_result(&job.key).await == job.input,
        "the resumed upload is byte-for-byte the input"
    );
}

/// Sends the whole input in one PATCH through a proxy that injects `fault`;
/// the request must fail. Returns the server and the proxy.
async fn patch_through(job: &Job, fault: Fault) -> (Server, FaultProxy) {
    let server = Server::start().await;
    server.create(job, Some(BS)).await;
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_fault(fault);
    let resp = server
        .client()
        .patch(proxy.url(&entry_path(&job.key)))
        .header(h::UPLOAD_OFFSET, 0)
        .header("content-type", h::OFFSET_OCTET_STREAM)
        .body(job.input.clone())
        .send()
        .await;
    assert!(
        resp.is_err(),
        "the proxy broke the request ({fault:?}), yet it got {:?}",
        resp.map(|r| r.status())
    );
    (server, proxy)
}

#[tokio::test]
async fn connection_dropped_by_the_network_resumes() {
    let job = job(2);
    let cut = 400_000;
    let (server, proxy) = patch_through(&job, Fault::DropAfter(cut)).await;
    assert_eq!(proxy.struck(), 1);

    // The request head is well under 1 KiB: nearly all of `cut` was body.
    let offset = offset_once_settled(&server, &job.key, "the body bytes to be kept", |o| {
        o > cut - 1024 && o <= cut
    })
    .await;
    resume(&server, &job, offset, cut).await;
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn connection_reset_by_the_network_resumes() {
    let job = job(3);
    let cut = 500_000;
    let (server, _proxy) = patch_through(&job, Fault::ResetAfter(cut)).await;

    // A reset may lose bytes in flight, never invent them.
    let offset = server.head_info(&job.key).await.offset;
    resume(&server, &job, offset, cut).await;
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn patches_in_pieces_report_progress() {
    let server = Server::start().await;
    let job = job(4);
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;

    let piece = 100 * 1024;
    let resp = server
        .patch_request(&job.key, 0, job.input[..piece].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let headers = resp.headers();
    assert_eq!(header_u64(headers, h::UPLOAD_OFFSET), piece as u64);
    assert_eq!(header(headers, h::UPLOAD_STATE), State::Uploading.as_str());
    assert_eq!(header(headers, h::UPLOAD_MISSING), "1-16");
    assert_eq!(
        header(headers, h::UPLOAD_DIGEST),
        job.digest_of(&layout, [0])
    );

    let resp = server
        .patch_request(&job.key, piece as u64, job.input[piece..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let headers = resp.headers();
    assert_eq!(header_u64(headers, h::UPLOAD_OFFSET), job.len());
    let state = header(headers, h::UPLOAD_STATE);
    assert!(
        state == State::Processing.as_str() || state == State::Complete.as_str(),
        "state after the last byte: {state}"
    );
    assert_eq!(
        header(headers, h::UPLOAD_DIGEST),
        job.digest_of(&layout, 0..17)
    );
    assert!(server.wait_result(&job.key).await == job.input);

    // §7.5: once the upload is over, every PATCH is refused — an empty one
    // at the end offset too; HEAD is how a client whose answer was lost
    // learns that all its bytes are in.
    let retry = server
        .patch_request(&job.key, job.len(), Vec::new())
        .send()
        .await
        .unwrap();
    assert_problem(retry, ProblemType::NotUploading).await;
    assert_eq!(server.head_info(&job.key).await.offset, job.len());
    let late = server
        .patch_request(&job.key, 0, job.input[..1024].to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(late, ProblemType::NotUploading).await;
}

#[tokio::test]
async fn wrong_offset_is_a_conflict_that_changes_nothing() {
    let server = Server::start().await;
    let job = job(5);
    server.create(&job, Some(BS)).await;
    let first = 100 * 1024u64;
    let resp = server
        .patch_request(&job.key, 0, job.input[..first as usize].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let before = server.head_info(&job.key).await;

    for wrong in [0, first - 1, first + 1, first + BS] {
        let end = (wrong + 1000) as usize;
        let resp = server
            .patch_request(&job.key, wrong, job.input[wrong as usize..end].to_vec())
            .send()
            .await
            .unwrap();
        let (headers, problem) = assert_problem(resp, ProblemType::OffsetMismatch).await;
        assert_eq!(
            header_u64(&headers, h::UPLOAD_OFFSET),
            first,
            "the conflict tells the real offset"
        );
        assert_eq!(
            problem.extensions.get("offset").and_then(|v| v.as_u64()),
            Some(first)
        );
        assert_eq!(
            server.head_info(&job.key).await,
            before,
            "a refused PATCH at {wrong} changed the entry"
        );
    }
}

#[tokio::test]
async fn wrong_content_type_is_refused() {
    let server = Server::start().await;
    let job = job(6);
    server.create(&job, Some(BS)).await;
    let before = server.head_info(&job.key).await;

    let body = job.input[..1000].to_vec();
    for content_type in [Some("application/octet-stream"), Some("text/plain"), None] {
        let mut req = server
            .client()
            .patch(server.url(&entry_path(&job.key)))
            .header(h::UPLOAD_OFFSET, 0);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body.clone()).send().await.unwrap();
        assert_problem(resp, ProblemType::UnsupportedMediaType).await;
    }
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn missing_offset_header_is_refused() {
    let server = Server::start().await;
    let job = job(7);
    server.create(&job, Some(BS)).await;
    let before = server.head_info(&job.key).await;

    for offset in [None, Some("abc"), Some("-1")] {
        let mut req = server
            .client()
            .patch(server.url(&entry_path(&job.key)))
            .header("content-type", h::OFFSET_OCTET_STREAM);
        if let Some(o) = offset {
            req = req.header(h::UPLOAD_OFFSET, o);
        }
        let resp = req.body(job.input[..1000].to_vec()).send().await.unwrap();
        assert_problem(resp, ProblemType::InvalidHeader).await;
    }
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn announced_body_beyond_the_input_is_refused_unread() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(100_000, 8));
    server.create(&job, Some(BS)).await;
    let before = server.head_info(&job.key).await;

    let mut longer = job.input.clone();
    longer.extend_from_slice(&[0u8; 5000]);
    // reqwest announces the length: the server refuses before reading a byte.
    let resp = server
        .patch_request(&job.key, 0, longer)
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::BodyLengthMismatch).await;
    assert_eq!(server.head_info(&job.key).await, before);
}

#[tokio::test]
async fn streamed_body_beyond_the_input_is_cut_and_the_input_part_kept() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(100_000, 10));
    server.create(&job, Some(BS)).await;

    let mut longer = job.input.clone();
    longer.extend_from_slice(&[0u8; 5000]);
    // A body of unannounced length (chunked).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        longer.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let resp = server
        .client()
        .patch(server.url(&entry_path(&job.key)))
        .header(h::UPLOAD_OFFSET, 0)
        .header("content-type", h::OFFSET_OCTET_STREAM)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::BodyLengthMismatch).await;
    // The bytes up to the input's length were kept: the upload is done.
    assert_eq!(server.head_info(&job.key).await.offset, job.len());
    assert!(server.wait_result(&job.key).await == job.input);
}

#[tokio::test]
async fn patch_of_an_unknown_entry_is_not_found() {
    let server = Server::start().await;
    let job = job(9);
    let resp = server
        .patch_request(&job.key, 0, job.input[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::NotFound).await;
    assert_eq!(server.head(&job.key).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stalled_patch_can_be_taken_over_by_a_resuming_client() {
    let server = Server::start().await;
    let job = job(11);
    server.create(&job, Some(BS)).await;
    let proxy = FaultProxy::start(server.addr()).await;
    let cut = 300_000;
    proxy.set_fault(Fault::StallAfter(cut));

    // The first connection goes silent mid-body, without closing.
    let client = server.client().clone();
    let url = proxy.url(&entry_path(&job.key));
    let body = job.input.clone();
    let stalled = tokio::spawn(async move {
        client
            .patch(url)
            .header(h::UPLOAD_OFFSET, 0)
            .header("content-type", h::OFFSET_OCTET_STREAM)
            .body(body)
            .send()
            .await
    });
    eventually(
        "the proxy to stall the upload",
        Duration::from_secs(10),
        || async { (proxy.struck() == 1).then_some(()) },
    )
    .await;

    // The client resumes on a new connection and does not have to wait for
    // the server to give up on the silent one.
    let started = tokio::time::Instant::now();
    let offset = server.head_info(&job.key).await.offset;
    resume(&server, &job, offset, cut).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "resuming took {:?}",
        started.elapsed()
    );
    assert!(server.wait_result(&job.key).await == job.input);
    stalled.abort();
}

#[tokio::test]
async fn a_body_cut_short_gets_an_answer_that_closes_the_connection() {
    let server = Server::start().await;
    let job = job(9);
    server.create(&job, Some(BS)).await;
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PATCH", &entry_path(&job.key), &patch_headers(0, job.len()))
        .await;
    conn.send(&job.input[..10_000]).await;
    // The client's side ends mid-body; the server can still answer it.
    conn.shutdown_write().await;
    let resp = conn.read_response().await;
    resp.assert_problem(ProblemType::BodyLengthMismatch);
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "after a body cut short the connection cannot be reused, and the answer says so"
    );
    // What arrived is kept.
    assert_eq!(server.head_info(&job.key).await.offset, 10_000);
}
