//! Purge through the admin endpoint (`POST /v1/admin/purge`) and `upcache
//! purge`, on the real binary: by key, by operation, by age and
//! everything, with the counts the server reports; admin keys apart from
//! API keys; the CLI's exit codes.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{json, Value};
use upcache_e2e::cli::{command, finish, run};
use upcache_e2e::*;
use upcache_protocol::admin::PURGE_PATH;
use upcache_protocol::status::entry_path;
use upcache_protocol::ProblemType;

const API_KEY: &str = "api-key-for-purge-tests";
const ADMIN_KEY: &str = "admin-key-for-purge-tests";

async fn server() -> Server {
    Server::start_with_config(
        &format!("api_keys = [\"{API_KEY}\"]\nadmin_keys = [\"{ADMIN_KEY}\"]\n"),
        &[],
    )
    .await
}

/// Stores `job`'s result with a one-shot upload; returns its bytes.
async fn put(server: &Server, job: &Job) -> Vec<u8> {
    let resp = server
        .oneshot_request(job)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.unwrap().to_vec()
}

async fn exists(server: &Server, job: &Job) -> bool {
    let resp = server
        .client()
        .get(server.url(&entry_path(&job.key)))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    resp.status() == StatusCode::OK
}

async fn purge(server: &Server, key: Option<&str>, body: Value) -> reqwest::Response {
    let req = server
        .client()
        .post(server.url(PURGE_PATH))
        .header("content-type", "application/json")
        .body(body.to_string());
    match key {
        Some(k) => req.bearer_auth(k),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

/// A purge with the admin key; its report.
async fn purged(server: &Server, body: Value) -> Value {
    let resp = purge(server, Some(ADMIN_KEY), body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

fn thumb(seed: u64) -> Job {
    Job::new(
        noisy_png(64, 48, seed),
        json!({"op": "image.thumbnail", "width": 32, "height": 32, "format": "png"}),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn purges_by_key_operation_age_and_everything_with_their_counts() {
    let server = server().await;
    let ids: Vec<Job> = (0..3)
        .map(|i| Job::identity(pseudo_random(10_000, i)))
        .collect();
    let (t1, t2) = (thumb(1), thumb(2));
    for j in &ids {
        put(&server, j).await;
    }
    let r1 = put(&server, &t1).await;
    let r2 = put(&server, &t2).await;

    // Only an admin key opens the endpoint.
    let anon = purge(&server, None, json!({"all": true})).await;
    assert_problem(anon, ProblemType::Unauthorized).await;
    let api = purge(&server, Some(API_KEY), json!({"all": true})).await;
    assert_problem(api, ProblemType::AdminKeyRequired).await;
    let two = purge(&server, Some(ADMIN_KEY), json!({"all": true, "before": 1})).await;
    assert_problem(two, ProblemType::MalformedRequest).await;
    assert!(
        exists(&server, &ids[0]).await,
        "refused purges removed nothing"
    );

    let by_key = purged(&server, json!({"key": t1.key.to_hex()})).await;
    assert_eq!(by_key["entries"], 1);
    assert_eq!(by_key["bytes"], r1.len(), "the result's bytes");
    assert!(!exists(&server, &t1).await);
    assert!(exists(&server, &t2).await);

    let by_op = purged(&server, json!({"operation": "image.thumbnail"})).await;
    assert_eq!(by_op["entries"], 1);
    assert_eq!(by_op["bytes"], r2.len());
    assert!(!exists(&server, &t2).await);

    let none = purged(&server, json!({"before": now() - 3600})).await;
    assert_eq!(none["entries"], 0, "nothing older than an hour");
    let aged = purged(&server, json!({"before": now() + 3600})).await;
    assert_eq!(aged["entries"], 3, "the identity entries");
    assert_eq!(
        aged["bytes"], 0,
        "their results are their inputs, which stay"
    );
    assert!(!exists(&server, &ids[0]).await);

    // Everything: a new entry, an idle upload, and every stored input.
    let last = Job::identity(pseudo_random(5_000, 9));
    put(&server, &last).await;
    let idle = Job::identity(pseudo_random(7_000, 10));
    let created = server
        .client()
        .post(server.url("/v1/ops"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(idle.create_request(None).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let all = purged(&server, json!({"all": true})).await;
    assert_eq!(all["entries"], 2);
    assert_eq!(
        all["inputs"],
        3 + 2 + 1,
        "three identity inputs, two pictures, one more"
    );
    let inputs: u64 = ids.iter().map(Job::len).sum::<u64>() + t1.len() + t2.len() + last.len();
    assert_eq!(all["bytes"], inputs);
    assert_eq!(all["in_flight"], 0);
    let left = std::fs::read_dir(server.data_dir().join("inputs"))
        .unwrap()
        .count()
        + std::fs::read_dir(server.data_dir().join("results"))
            .unwrap()
            .count();
    assert_eq!(left, 0, "nothing left on disk");
    assert!(!exists(&server, &last).await);
    assert!(!exists(&server, &idle).await);
    // And the cache works on: the next upload is stored again.
    put(&server, &last).await;
    assert!(exists(&server, &last).await);
}

#[tokio::test]
async fn upcache_purge_exit_codes() {
    let server = server().await;
    let url = server.base_url();
    let job = thumb(3);
    put(&server, &job).await;
    let key = job.key.to_hex();

    // Bad arguments: 2, before anything is sent.
    run(&["purge", "--server", &url, "--admin-key", ADMIN_KEY])
        .await
        .assert_code(2);
    run(&["purge", "--all", "--server", &url, "--admin-key", ADMIN_KEY])
        .await
        .assert_code(2);
    let bad_date = run(&["purge", "--before", "last week", "--server", &url]).await;
    bad_date.assert_code(2);
    assert!(
        bad_date.stderr.contains("YYYY-MM-DD"),
        "{}",
        bad_date.stderr
    );
    run(&["purge", "--key", "abc", "--server", &url])
        .await
        .assert_code(2);

    // The admin key refused: 6, with a hint.
    let none = run(&["purge", "--key", &key, "--server", &url]).await;
    none.assert_code(6);
    assert!(none.stderr.contains("--admin-key"), "{}", none.stderr);
    run(&[
        "purge",
        "--key",
        &key,
        "--server",
        &url,
        "--admin-key",
        API_KEY,
    ])
    .await
    .assert_code(6);
    assert!(exists(&server, &job).await);

    // Unreachable: 4.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    run(&[
        "purge",
        "--key",
        &key,
        "--server",
        &closed,
        "--admin-key",
        ADMIN_KEY,
    ])
    .await
    .assert_code(4);

    // Done: 0, the key from the environment.
    let mut cmd = command(&["purge", "--operation", "image.thumbnail", "--server", &url]);
    cmd.env("UPCACHE_ADMIN_KEY", ADMIN_KEY);
    let done = finish(cmd.spawn().unwrap()).await;
    done.assert_code(0);
    assert!(done.stdout.contains("purged 1 entries"), "{}", done.stdout);
    assert!(!exists(&server, &job).await);
    let dated = run(&[
        "purge",
        "--before",
        "2000-01-01",
        "--server",
        &url,
        "--admin-key",
        ADMIN_KEY,
    ])
    .await;
    dated.assert_code(0);
    assert!(
        dated.stdout.contains("purged 0 entries"),
        "{}",
        dated.stdout
    );
    run(&[
        "purge",
        "--all",
        "--yes",
        "--server",
        &url,
        "--admin-key",
        ADMIN_KEY,
    ])
    .await
    .assert_code(0);
}

#[tokio::test]
async fn an_upload_in_flight_is_left_alone_and_reported() {
    let server = server().await;
    let job = Job::identity(pseudo_random(200_000, 42));
    let created = server
        .client()
        .post(server.url("/v1/ops"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(job.create_request(Some(16 * 1024)).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // A PATCH that has sent part of its body and is still sending.
    let mut conn = RawConn::connect(server.addr()).await;
    let mut headers = patch_headers(0, job.len());
    headers.push(("authorization", format!("Bearer {API_KEY}")));
    conn.send_head("PATCH", &entry_path(&job.key), &headers)
        .await;
    conn.send(&job.input[..50_000]).await;
    eventually(
        "blocks of the running PATCH are stored",
        STEP_TIMEOUT,
        || async {
            let head = server
                .client()
                .head(server.url(&entry_path(&job.key)))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap();
            (header_u64(head.headers(), "upload-offset") >= 16 * 1024).then_some(())
        },
    )
    .await;

    let by_key = purged(&server, json!({"key": job.key.to_hex()})).await;
    assert_eq!(
        (by_key["entries"].as_u64(), by_key["in_flight"].as_u64()),
        (Some(0), Some(1))
    );
    let all = purged(&server, json!({"all": true})).await;
    assert_eq!(
        (all["entries"].as_u64(), all["in_flight"].as_u64()),
        (Some(0), Some(1))
    );

    // The upload goes on undisturbed, to the right result.
    conn.send(&job.input[50_000..]).await;
    let answer = conn.read_response().await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    let result = server
        .client()
        .get(server.url(&upcache_protocol::status::result_path(&job.key)))
        .bearer_auth(API_KEY)
        .header("prefer", "wait=30")
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), StatusCode::OK);
    assert_eq!(result.bytes().await.unwrap().to_vec(), job.input);
}
