//! Single flight: many concurrent requests for one key run the operation once
//! and all get the same bytes.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;

/// A blur of a 2000×2000 image: long enough that requests pile up on it.
fn heavy_job() -> Job {
    Job::new(png(2000, 2000), json!({"op": "image.blur", "sigma": 8.0}))
}

const WAIT: &str = "wait=300";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_puts_run_the_operation_once() {
    let server = Server::start_with(&["--max-wait", "300"]).await;
    let job = heavy_job();
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    let answers = join_all((0..20).map(|_| async {
        let resp = server
            .oneshot_request(&job)
            .header(upcache_protocol::headers::PREFER, WAIT)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.bytes().await.unwrap())
    }))
    .await;

    let refused: Vec<String> = answers
        .iter()
        .filter(|(code, _)| *code != StatusCode::OK)
        .map(|(code, body)| {
            format!(
                "{code}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 20 concurrent PUTs did not get the result: {refused:#?}",
        refused.len()
    );
    let answers: Vec<_> = answers.into_iter().map(|(_, body)| body).collect();
    let first = &answers[0];
    assert!(
        answers.iter().all(|a| a == first),
        "every request gets identical bytes"
    );
    let img =
        image::load_from_memory_with_format(first, image::ImageFormat::Png).expect("a PNG result");
    assert_eq!((img.width(), img.height()), (2000, 2000));
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await - started,
        1.0,
        "the blur ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_for_one_upload_share_one_run() {
    let server = Server::start_with(&["--max-wait", "300"]).await;
    let job = heavy_job();
    server.create(&job, None).await;
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    // Twenty clients wait for the result while one uploads.
    let waiters = join_all((0..20).map(|_| async {
        let resp = server
            .result_request(&job.key, Some(300))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap()
    }));
    let upload = async {
        let resp = server
            .patch_request(&job.key, 0, job.input.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    };
    let (answers, ()) = tokio::join!(waiters, upload);

    let first = &answers[0];
    assert!(
        answers.iter().all(|a| a == first),
        "every waiter gets identical bytes"
    );
    assert!(image::load_from_memory(first).is_ok());
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await - started,
        1.0,
        "the blur ran exactly once"
    );
    // Asking again is a hit, not another run.
    assert!(server.oneshot(&job).await == first[..]);
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await - started,
        1.0
    );
}
