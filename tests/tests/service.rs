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

#[tokio::test]
async fn http2_on_the_same_port() {
    let server = Server::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let job = Job::new(
        png(64, 32),
        serde_json::json!({"op": "image.thumbnail", "width": 16, "height": 16}),
    );
    let first = h2
        .put(server.url(&entry_path(&job.key)))
        .header(
            upcache_protocol::headers::UPLOAD_INPUT_HASH,
            job.hash.to_hex(),
        )
        .header(upcache_protocol::headers::UPLOAD_OPERATION, job.op_header())
        .body(job.input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2);
    assert_eq!(first.status(), StatusCode::OK);
    let thumb = first.bytes().await.unwrap();
    let img = image::load_from_memory(&thumb).unwrap();
    assert_eq!((img.width(), img.height()), (16, 8));
    // Many streams on one connection at once.
    let results = futures_util::future::join_all(
        (0..8).map(|_| h2.get(server.url(&result_path(&job.key))).send()),
    )
    .await;
    for r in results {
        let r = r.unwrap();
        assert_eq!(
            (r.version(), r.status()),
            (reqwest::Version::HTTP_2, StatusCode::OK)
        );
        assert_eq!(r.bytes().await.unwrap(), thumb);
    }
}
