//! The protocol is strict where the spec says so (issue 8, part 4): what a
//! client sees when it sends what the API does not define — a method
//! override outside tus, unknown JSON members, heads hyper cannot parse or
//! that are too large, concatenation of another server's uploads, uploads to
//! an entry that is past uploading. Every refusal is a typed problem, and
//! none changes anything.

use reqwest::{Method, StatusCode};
use serde_json::json;
use upcache_e2e::raw::RawConn;
use upcache_e2e::tus::{self, th, FILES};
use upcache_e2e::*;
use upcache_protocol::headers::{self as h, OFFSET_OCTET_STREAM, X_HTTP_METHOD_OVERRIDE};
use upcache_protocol::status::{entry_path, OPS_PATH};
use upcache_protocol::tus::Concat;
use upcache_protocol::{ProblemType, State};

const BS: u64 = 4096;

/// A server with one entry whose blocks 0 and 2 of 3 are in.
async fn uploading() -> (Server, Job, HeadInfo) {
    mid_upload(3, BS, 11).await
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

/// Sends `head` on a new connection and reads the answer.
async fn answer(server: &Server, head: &[u8]) -> upcache_e2e::raw::RawResponse {
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send(head).await;
    conn.read_response().await
}

#[tokio::test]
async fn heads_hyper_cannot_parse_are_answered_with_problems() {
    let server = Server::start().await;
    let bad_lengths = [
        "content-length: abc\r\n",
        "content-length: -1\r\n",
        "content-length: 1\r\ncontent-length: 2\r\n",
        "content-length: 99999999999999999999999\r\n",
    ];
    for length in bad_lengths {
        let head = format!("PUT /v1/ops HTTP/1.1\r\nhost: x\r\n{length}\r\nab");
        let resp = answer(&server, head.as_bytes()).await;
        resp.assert_problem(ProblemType::MalformedRequest);
        assert_eq!(resp.header("connection"), Some("close"), "{length:?}");
    }
    let garbage = answer(&server, b"GET /healthz HTTP/1.1\r\nhost x\r\n\r\n").await;
    garbage.assert_problem(ProblemType::MalformedRequest);
    // After a good request on the same connection, too.
    let mut conn = RawConn::connect(server.addr()).await;
    conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\ncontent-length: x\r\n\r\n")
        .await;
    assert_eq!(conn.read_response().await.status, 200);
    conn.read_response()
        .await
        .assert_problem(ProblemType::MalformedRequest);
}

#[tokio::test]
async fn long_targets_and_large_heads_are_problems_at_every_size() {
    let server = Server::start().await;
    // Over our limit (8 KiB), and over hyper's own (64 KiB).
    for len in [9_000, 70_000] {
        let head = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(len));
        let problem = answer(&server, head.as_bytes())
            .await
            .assert_problem(ProblemType::UriTooLong);
        assert_eq!(problem.status, 414, "{len}");
    }
    let fields = |n: usize| (0..n).map(|i| format!("x-{i}: y\r\n")).collect::<String>();
    let heads = [
        ("150 fields", fields(150)),
        ("1200 fields", fields(1200)),
        (
            "a 100 KiB field",
            format!("x: {}\r\n", "y".repeat(100 << 10)),
        ),
        ("a 2 MiB field", format!("x: {}\r\n", "y".repeat(2 << 20))),
    ];
    for (what, extra) in heads {
        let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{extra}\r\n");
        let resp = answer(&server, head.as_bytes()).await;
        assert_eq!(resp.status, 431, "{what}: {}", resp.status_line);
        resp.assert_problem(ProblemType::HeadersTooLarge);
    }
    // Within the limits, a large head is served.
    let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n", fields(90));
    assert_eq!(answer(&server, head.as_bytes()).await.status, 200);
}

#[tokio::test]
async fn http2_heads_over_our_limits_are_problems_too() {
    let server = Server::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Between our limit (64 KiB) and the list size announced to h2 (256 KiB).
    let resp = h2
        .get(server.url("/healthz"))
        .header("x-big", "y".repeat(100 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_problem(resp, ProblemType::HeadersTooLarge).await;
    let resp = h2
        .get(server.url(&format!("/{}", "a".repeat(9_000))))
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::UriTooLong).await;
    // Beyond it the h2 library answers alone, before our code: a bare 431
    // without a body (spec §12.1 says so; this pins it).
    let resp = h2
        .get(server.url("/healthz"))
        .header("x-big", "y".repeat(300 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(resp.headers().get(reqwest::header::CONTENT_TYPE).is_none());
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
    // Behind a reverse proxy that rewrites Host, the public name comes as
    // X-Forwarded-Host.
    let public = format!("https://files.example{part}");
    let proxied = final_of(vec![public]).header(h::X_FORWARDED_HOST, "files.example");
    let (location, _) = server.tus_created(proxied).await;
    let head = server.tus_head_response(&location).await;
    assert_eq!(header(head.headers(), th::UPLOAD_LENGTH), "6");
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
