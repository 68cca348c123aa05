//! Waiting for a result: a waiter blocks until the result exists, a client that
//! disconnected and came back is served like any other, and a short wait ends
//! in `202` + `Retry-After`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::result_path;
use upcache_protocol::{State, Status};

const BS: u64 = 16 * 1024;

fn wait_headers(secs: u64) -> Vec<(&'static str, String)> {
    vec![(h::PREFER, format!("wait={secs}"))]
}

#[tokio::test]
async fn a_reconnecting_waiter_gets_the_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(200 * 1024, 1));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    for n in 1..layout.blocks() {
        server.put_block(&job, &layout, n).await;
    }

    // A first waiter gives up and disconnects while the upload is unfinished.
    let mut first = RawConn::connect(server.addr()).await;
    first
        .send_head("GET", &result_path(&job.key), &wait_headers(30))
        .await;
    assert!(
        first.is_silent_for(Duration::from_millis(300)).await,
        "the waiter is answered before the result exists"
    );
    drop(first);

    // It comes back and waits again.
    let mut second = RawConn::connect(server.addr()).await;
    second
        .send_head("GET", &result_path(&job.key), &wait_headers(30))
        .await;
    assert!(
        second.is_silent_for(Duration::from_millis(300)).await,
        "the waiter is answered before the result exists"
    );

    server.put_block(&job, &layout, 0).await;
    let started = Instant::now();
    let resp = second.read_response().await;
    assert_eq!(resp.status, 200, "`{}`: {}", resp.status_line, resp.text());
    assert!(resp.body == job.input, "the waiter gets the result");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the waiter is woken, not left to its timeout"
    );
}

#[tokio::test]
async fn short_wait_ends_in_202_with_retry_after() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(100 * 1024, 2));
    server.create(&job, Some(BS)).await;

    let t = Instant::now();
    let resp = server
        .result_request(&job.key, Some(1))
        .send()
        .await
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(
        waited >= Duration::from_millis(900),
        "Prefer: wait=1 waits about a second, waited {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "Prefer: wait=1 waited {waited:?}"
    );
    let retry = header(resp.headers(), "retry-after");
    assert!(
        retry.parse::<u64>().is_ok(),
        "Retry-After is delta-seconds: {retry:?}"
    );
    let status: Status =
        serde_json::from_slice(&resp.bytes().await.unwrap()).expect("a status document");
    assert_eq!(status.state, State::Uploading);
    assert_eq!(status.key, job.key);

    // wait=0 answers at once.
    let t = Instant::now();
    let resp = server
        .result_request(&job.key, Some(0))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn result_of_an_unknown_key_is_not_found() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10, 3));
    let t = Instant::now();
    let resp = server
        .result_request(&job.key, Some(5))
        .send()
        .await
        .unwrap();
    assert_problem(resp, upcache_protocol::ProblemType::NotFound).await;
    assert!(t.elapsed() < Duration::from_secs(2), "nothing to wait for");
}
