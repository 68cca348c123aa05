//! The termination extension: `DELETE /files/{id}`.

use super::*;

#[tokio::test]
async fn termination_removes_the_upload() {
    let server = Server::start().await;
    let location = server.tus_create(100, "").await;
    server
        .tus_patched(server.tus_patch(&location, 0, HELLO.to_vec()), 5)
        .await;
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "DELETE");
    tus::assert_resumable(resp.headers(), "DELETE");

    assert_eq!(
        server.tus_head_response(&location).await.status(),
        StatusCode::NOT_FOUND,
        "HEAD after termination"
    );
    let resp = server
        .tus_patch(&location, 5, HELLO.to_vec())
        .send()
        .await
        .unwrap();
    tus::assert_tus_problem(resp, 404).await;
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    tus::assert_tus_problem(resp, 404).await;
}

#[tokio::test]
async fn terminating_a_finished_upload_keeps_its_result() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(10_000, 4));
    let (location, _) = server.tus_upload(&job.input, "").await;
    assert!(server.tus_result(&location).await.1 == job.input);
    let resp = server.tus(Method::DELETE, &location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server.tus_head_response(&location).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        server.wait_result(&job.key).await == job.input,
        "the result the upload produced stays"
    );
}
