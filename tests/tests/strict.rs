//! The protocol is strict where the spec says so (issue 8, part 4): what a
//! client sees when it sends what the API does not define — a method
//! override outside tus, unknown JSON members, concatenation of another
//! server's uploads, uploads to an entry that is past uploading. Every refusal is a typed problem, and
//! none changes anything.

use reqwest::{Method, StatusCode};
use serde_json::json;
use upcache_e2e::tus::{self, th, FILES};
use upcache_e2e::*;
use upcache_protocol::headers::{self as h, OFFSET_OCTET_STREAM, X_HTTP_METHOD_OVERRIDE};
use upcache_protocol::status::{entry_path, OPS_PATH};
use upcache_protocol::tus::Concat;
use upcache_protocol::{ProblemType, State};

const BS: u64 = 4096;

/// A server with one entry whose blocks 0 and 2 of 3 are in.
async fn uploading() -> (Server, Job, HeadInfo) {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(2 * BS as usize + 100, 11));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    server.put_block(&job, &layout, 0).await;
    server.put_block(&job, &layout, 2).await;
    let head = server.head_info(&job.key).await;
    (server, job, head)
}

#[tokio::test]
async fn a_method_override_outside_tus_deletes_and_appends_nothing() {
    let (server, job, before) = uploading().await;
    let url = server.url(&entry_path(&job.key));
    for method in ["DELETE", "PATCH", "PUT"] {
        let resp = server
            .client()
            .post(&url)
            .header(X_HTTP_METHOD_OVERRIDE, method)
            .header(h::UPLOAD_OFFSET, before.offset)
            .header(reqwest::header::CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .body(job.input[before.offset as usize..][..100].to_vec())
            .send()
            .await
            .unwrap();
        let (_, problem) = assert_problem(resp, ProblemType::InvalidHeader).await;
        let detail = problem.detail.unwrap_or_default();
        assert!(
            detail.contains("/files/"),
            "the detail says where: {detail}"
        );
        assert_eq!(server.head_info(&job.key).await, before, "{method}");
    }
    // Nor on the create path: a POST /v1/ops with an override is refused too.
    let resp = server
        .client()
        .post(server.url(OPS_PATH))
        .header(X_HTTP_METHOD_OVERRIDE, "DELETE")
        .body(job.create_request(Some(BS)).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::InvalidHeader).await;
    assert_eq!(server.head_info(&job.key).await, before);

    // At /files/ the override is what tus-js-client's overridePatchMethod needs.
    let location = server.tus_create(5, "").await;
    let patched = server
        .tus(Method::POST, &location)
        .header(X_HTTP_METHOD_OVERRIDE, "PATCH")
        .header(th::UPLOAD_OFFSET, 0)
        .header(reqwest::header::CONTENT_TYPE, OFFSET_OCTET_STREAM)
        .body(b"hello".to_vec());
    server.tus_patched(patched, 5).await;
}

#[tokio::test]
async fn unknown_members_are_refused_at_every_level() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(3000, 12));
    let good = job.create_request(None);
    let mut top = good.clone();
    top["colour"] = json!("blue");
    let mut nested = good.clone();
    nested["input"]["sha256"] = json!("00");
    for (what, body, member) in [("top level", top, "colour"), ("input", nested, "sha256")] {
        let resp = server.post_create(&body).await;
        let (_, problem) = assert_problem(resp, ProblemType::MalformedRequest).await;
        let detail = problem.detail.unwrap_or_default();
        assert!(detail.contains(member), "{what}: names {member}: {detail}");
    }
    let mut in_operation = good.clone();
    in_operation["operation"] = json!({"op": "image.pipeline", "steps": [
        {"op": "image.grayscale", "strength": 2}
    ]});
    let resp = server.post_create(&in_operation).await;
    let (_, problem) = assert_problem(resp, ProblemType::InvalidOperation).await;
    assert!(problem.detail.unwrap_or_default().contains("strength"));
    let missing = server.get_status(&job.key).await;
    assert_problem(missing, ProblemType::NotFound).await;
    assert_eq!(
        server.post_create(&good).await.status(),
        StatusCode::CREATED
    );
}

/// A complete partial tus upload of `bytes`; its location.
async fn partial(server: &Server, bytes: &[u8]) -> String {
    let (location, _) = server
        .tus_created(
            server
                .tus_create_request(bytes.len() as u64, "")
                .header(th::UPLOAD_CONCAT, "partial"),
        )
        .await;
    let patch = server.tus_patch(&location, 0, bytes.to_vec());
    server.tus_patched(patch, bytes.len() as u64).await;
    location
}

#[tokio::test]
async fn concatenation_refuses_another_hosts_uploads() {
    let server = Server::start().await;
    let part = partial(&server, b"hello ").await;
    let final_of = |urls: Vec<String>| {
        server
            .tus(Method::POST, FILES)
            .header(th::UPLOAD_CONCAT, Concat::Final(urls).encode())
    };
    for foreign in [
        format!("http://elsewhere.example{part}"),
        format!("http://127.0.0.2:{}{part}", server.addr().port()),
        format!(
            "http://{}{part}",
            std::net::SocketAddr::from(([127, 0, 0, 1], 1))
        ),
    ] {
        let resp = final_of(vec![part.clone(), foreign.clone()])
            .send()
            .await
            .unwrap();
        let (headers, problem) = tus::assert_tus_problem(resp, 400).await;
        assert_eq!(
            problem.kind(),
            Some(ProblemType::ForeignUpload),
            "{foreign}"
        );
        assert!(headers.get(reqwest::header::LOCATION).is_none());
    }
    // This server's uploads, as paths or as URLs of this server, still work.
    let own = format!("{}{part}", server.base_url());
    let (location, _) = server.tus_created(final_of(vec![part.clone(), own])).await;
    let head = server.tus_head_response(&location).await;
    assert_eq!(header(head.headers(), th::UPLOAD_LENGTH), "12");
}

#[tokio::test]
async fn an_entry_past_uploading_takes_no_patch_and_no_block() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(2 * BS as usize, 13));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    server.put_block(&job, &layout, 0).await;
    server.put_block(&job, &layout, 1).await;
    assert!(server.wait_result(&job.key).await == job.input);
    let before = server.head_info(&job.key).await;
    assert_eq!(before.state, State::Complete);

    // §7.5: an empty PATCH at the end offset (a client probing with PATCH).
    let empty = server.patch_request(&job.key, job.len(), Vec::new());
    let (headers, problem) =
        assert_problem(empty.send().await.unwrap(), ProblemType::NotUploading).await;
    assert!(problem.detail.unwrap_or_default().contains("complete"));
    assert!(headers.get(h::UPLOAD_OFFSET).is_none());
    let late = server.patch_request(&job.key, 0, job.input[..100].to_vec());
    assert_problem(late.send().await.unwrap(), ProblemType::NotUploading).await;
    // §7.6: a block, even one the entry holds.
    for n in [0, 1] {
        let block = server.block_request(&job, &layout, n);
        assert_problem(block.send().await.unwrap(), ProblemType::NotUploading).await;
    }
    assert_eq!(server.head_info(&job.key).await, before);
}
