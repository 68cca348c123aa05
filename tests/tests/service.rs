//! The service around the API: health, metrics, unknown paths and methods.

use reqwest::{Method, StatusCode};
use upcache_e2e::*;
use upcache_protocol::status::{block_path, entry_path, result_path, OPS_PATH};
use upcache_protocol::ProblemType;

#[tokio::test]
async fn health_and_metrics() {
    let server = Server::start().await;
    let resp = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap().trim(), "ok");

    let job = Job::identity(pseudo_random(3 * 1024, 1));
    let layout = job.layout(1024);
    server.create(&job, Some(1024)).await;
    for n in 0..3 {
        server.put_block(&job, &layout, n).await;
    }
    server.wait_result(&job.key).await;
    let text = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (name, at_least) in [
        (metrics::OPERATIONS_STARTED, 1.0),
        (metrics::OPERATIONS_COMPLETED, 1.0),
        (metrics::BLOCKS_STORED, 3.0),
        (metrics::BYTES_STORED, 3072.0),
        (metrics::HTTP_REQUESTS, 5.0),
    ] {
        let value = parse_counter(&text, name);
        assert!(
            value >= at_least,
            "{name} = {value}, expected at least {at_least}:\n{text}"
        );
    }
    assert_eq!(parse_counter(&text, metrics::OPERATIONS_FAILED), 0.0);
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let server = Server::start().await;
    let key = Job::identity(b"k".to_vec()).key;
    for path in [
        "/".to_owned(),
        "/nope".to_owned(),
        "/v1".to_owned(),
        "/v2/ops".to_owned(),
        format!("{}/nope", entry_path(&key)),
    ] {
        let resp = server.client().get(server.url(&path)).send().await.unwrap();
        assert_problem(resp, ProblemType::NotFound).await;
    }
}

#[tokio::test]
async fn wrong_methods_are_not_allowed() {
    let server = Server::start().await;
    let key = Job::identity(b"k".to_vec()).key;
    let cases = [
        (Method::DELETE, OPS_PATH.to_owned(), "POST"),
        (Method::PUT, OPS_PATH.to_owned(), "POST"),
        (Method::POST, entry_path(&key), "PATCH"),
        (Method::POST, result_path(&key), "GET"),
        (Method::DELETE, result_path(&key), "GET"),
        (Method::GET, block_path(&key, 0), "PUT"),
    ];
    for (method, path, allowed) in cases {
        let resp = server
            .client()
            .request(method.clone(), server.url(&path))
            .send()
            .await
            .unwrap();
        let (headers, _) = assert_problem(resp, ProblemType::MethodNotAllowed).await;
        let allow = header(&headers, "allow");
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} lacks {allowed}"
        );
    }
}
