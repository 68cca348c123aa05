//! Hits cost no upload: a one-shot `PUT` with `Expect: 100-continue` gets its
//! final answer before a single body byte is sent when the result — or just the
//! input — is already stored; a miss gets `100 Continue` and then the result.

use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::{entry_path, result_path};
use upcache_protocol::State;

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", blake3::hash(bytes).to_hex())
}

#[tokio::test]
async fn complete_result_is_answered_before_the_body_is_sent() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(300 * 1024, 1));
    assert_eq!(server.oneshot(&job).await, job.input);

    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PUT", &entry_path(&job.key), &oneshot_headers(&job))
        .await;
    // No body byte is sent: the server must answer from what it has.
    let resp = conn.read_response().await;
    assert_eq!(
        resp.status, 200,
        "a hit gets its final answer at once, not `{}`",
        resp.status_line
    );
    assert!(
        resp.body == job.input,
        "the hit's body is the stored result"
    );
    assert_eq!(resp.header(h::UPLOAD_STATE), Some(State::Complete.as_str()));
    assert_eq!(resp.header(h::UPLOAD_KEY), Some(job.key.to_hex().as_str()));
    assert_eq!(resp.header("etag"), Some(etag_of(&job.input).as_str()));
}

#[tokio::test]
async fn stored_input_runs_another_operation_without_an_upload() {
    let server = Server::start().await;
    let original = Job::identity(png(64, 48));
    assert_eq!(server.oneshot(&original).await, original.input);
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    let thumb = original.with_op(json!({"op": "image.thumbnail", "width": 16, "height": 16}));
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PUT", &entry_path(&thumb.key), &oneshot_headers(&thumb))
        .await;
    let resp = conn.read_response().await;
    assert_eq!(
        resp.status,
        200,
        "input already stored: expected the result, got `{}`: {}",
        resp.status_line,
        resp.text()
    );
    assert_eq!(resp.header("content-type"), Some("image/png"));
    let img = image::load_from_memory_with_format(&resp.body, image::ImageFormat::Png)
        .expect("a PNG thumbnail");
    assert_eq!(
        (img.width(), img.height()),
        (16, 12),
        "64×48 fitted into 16×16"
    );
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await,
        started + 1.0,
        "the new operation ran once"
    );
}

#[tokio::test]
async fn miss_gets_100_continue_then_the_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(200 * 1024 + 3, 2));

    let mut conn = RawConn::connect(server.addr()).await;
    conn.send_head("PUT", &entry_path(&job.key), &oneshot_headers(&job))
        .await;
    let interim = conn.read_response().await;
    assert_eq!(
        interim.status,
        100,
        "a miss asks for the body: got `{}`: {}",
        interim.status_line,
        interim.text()
    );
    assert!(
        interim.status_line.starts_with("HTTP/1.1 100"),
        "{}",
        interim.status_line
    );

    conn.send(&job.input).await;
    let resp = conn.read_response().await;
    assert_eq!(
        resp.status,
        200,
        "after the body: `{}`: {}",
        resp.status_line,
        resp.text()
    );
    assert!(resp.body == job.input, "identity returns the input");
    assert_eq!(resp.header(h::UPLOAD_STATE), Some(State::Complete.as_str()));
    assert_eq!(resp.header("etag"), Some(etag_of(&job.input).as_str()));

    // Now it is a hit.
    let mut again = RawConn::connect(server.addr()).await;
    again
        .send_head("PUT", &entry_path(&job.key), &oneshot_headers(&job))
        .await;
    assert_eq!(again.read_response().await.status, 200);
}

#[tokio::test]
async fn return_minimal_redirects_to_the_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10_000, 3));
    server.oneshot(&job).await;

    let mut conn = RawConn::connect(server.addr()).await;
    let mut headers = oneshot_headers(&job);
    headers.push((h::PREFER, "return=minimal".to_owned()));
    conn.send_head("PUT", &entry_path(&job.key), &headers).await;
    let resp = conn.read_response().await;
    assert_eq!(resp.status, 303, "`{}`: {}", resp.status_line, resp.text());
    assert_eq!(
        resp.header("location"),
        Some(result_path(&job.key).as_str())
    );
}

#[tokio::test]
async fn lookup_by_post_reports_a_complete_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(50_000, 4));
    server.oneshot(&job).await;

    let (code, status) = server.create(&job, None).await;
    assert_eq!(code, reqwest::StatusCode::OK, "the entry existed");
    assert_eq!(status.state, State::Complete);
    let result = status.result.expect("a complete status links its result");
    assert_eq!(result.url, result_path(&job.key));
    assert_eq!(result.length, job.len());
    assert_eq!(result.blake3, job.hash, "identity's result is the input");
    let fetched = server
        .client()
        .get(server.url(&result.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(fetched[..] == job.input[..]);
}

/// After answering without reading the request body, the server must either
/// say `Connection: close` (RFC 9110 §15.2 / RFC 9112 §9.6) or keep the
/// connection usable: a pooling client otherwise sends its next request into a
/// connection the server is closing, and fails with an incomplete message.
async fn assert_connection_usable_or_closed(conn: &mut RawConn, resp: &RawResponse, what: &str) {
    if resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    {
        return;
    }
    let sent = conn
        .try_send(b"GET /healthz HTTP/1.1\r\nhost: upcache\r\n\r\n")
        .await;
    let next = match sent {
        Ok(()) => conn.try_read_response(STEP_TIMEOUT).await,
        Err(_) => Ok(None),
    };
    match next {
        Ok(Some(r)) => assert_eq!(r.status, 200, "{what}: the next request on the connection got `{}`", r.status_line),
        _ => panic!("{what}: the server closed the connection without `Connection: close`; a pooling client's next request fails"),
    }
}

#[tokio::test]
async fn hit_with_the_body_sent_leaves_the_connection_in_a_known_state() {
    let server = Server::start().await;
    for (size, seed) in [(20_000, 5), (1 << 20, 6)] {
        let job = Job::identity(pseudo_random(size, seed));
        server.oneshot(&job).await;

        // A client without `Expect` sends the body at once; the answer is a hit.
        let mut conn = RawConn::connect(server.addr()).await;
        let headers: Vec<_> = oneshot_headers(&job)
            .into_iter()
            .filter(|(n, _)| *n != "expect")
            .collect();
        conn.send_head("PUT", &entry_path(&job.key), &headers).await;
        let _ = conn.try_send(&job.input).await;
        let what = format!("one-shot hit with a {size}-byte body");
        let resp = match conn.try_read_response(STEP_TIMEOUT).await {
            Ok(Some(resp)) => resp,
            _ => panic!(
                "{what}: the answer never reached the client (the connection was closed or reset \
                 with the body unread, without a lingering close)"
            ),
        };
        assert_eq!(resp.status, 200);
        assert_connection_usable_or_closed(&mut conn, &resp, &what).await;
    }
}

#[tokio::test]
async fn early_refusal_leaves_the_connection_in_a_known_state() {
    let server = Server::start().await;
    for (size, seed) in [(20_000, 7), (1 << 20, 8)] {
        let job = Job::identity(pseudo_random(size, seed));
        server.create(&job, Some(4096)).await;

        // A PATCH announcing more than the input is refused before its body is read.
        let mut conn = RawConn::connect(server.addr()).await;
        conn.send_head(
            "PATCH",
            &entry_path(&job.key),
            &patch_headers(0, job.len() + 10),
        )
        .await;
        let _ = conn.try_send(&vec![0u8; size + 10]).await;
        let resp = conn.read_response().await;
        resp.assert_problem(upcache_protocol::ProblemType::BodyLengthMismatch);
        let what = format!("PATCH of {} bytes refused on its Content-Length", size + 10);
        assert_connection_usable_or_closed(&mut conn, &resp, &what).await;
    }
}
