//! The S3 tier behind the disk, against a real SeaweedFS: results and
//! inputs are copied up by the write-behind queue; a node with an empty data
//! directory on the same bucket serves them; while S3 is down the node keeps
//! taking uploads and serving hits, and catches up when S3 is back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::s3::{BUCKET, SECRET_KEY};
use upcache_e2e::*;
use upcache_protocol::Key;
use upcache_protocol::State;
use upcache_server::store::blob::{BlobName, BlobStore};
use upcache_server::store::s3::S3Store;

const DEPTH: &str = "upcache_write_behind_depth";
const UPLOADED: &str = "upcache_write_behind_uploads_total";

fn thumbnail(seed: u64, width: u32) -> Job {
    Job::new(
        noisy_png(64, 48, seed),
        json!({"op": "image.thumbnail", "width": width, "height": width, "format": "png"}),
    )
}

/// The `[s3]` settings of a node on `s3` under `prefix`; the secret goes to
/// a file in `dir`.
fn settings(s3: &SeaweedFs, prefix: &str, dir: &std::path::Path) -> String {
    let c = s3.config(prefix);
    let secret = dir.join(format!("secret-{}", prefix.trim_end_matches('/')));
    std::fs::write(&secret, SECRET_KEY).unwrap();
    format!(
        "[s3]\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\nregion = \"us-east-1\"\npath_style = true\n\
         prefix = \"{prefix}\"\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n",
        s3.endpoint(),
        c.access_key_id.unwrap(),
        secret.display()
    )
}

async fn drained(server: &Server, uploads: f64) {
    eventually(
        "the write-behind queue drains",
        Duration::from_secs(60),
        || async {
            (server.metric(DEPTH).await == 0.0 && server.metric(UPLOADED).await >= uploads)
                .then_some(())
        },
    )
    .await;
}

/// Waits until `name` has left the bucket (its delete went through the
/// write-behind queue).
async fn leaves_the_bucket(store: &S3Store, name: BlobName) {
    eventually(
        &format!("{name} leaves the bucket"),
        Duration::from_secs(60),
        || async { store.head(name).await.unwrap().is_none().then_some(()) },
    )
    .await;
}

/// `key`'s result through a node.
async fn get_result(server: &Server, key: &Key) -> reqwest::Response {
    server.result_request(key, None).send().await.unwrap()
}

/// S3 requests a node has sent, by kind (its `upcache_remote_*_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Requests {
    head: u64,
    get: u64,
}

impl std::ops::Sub for Requests {
    type Output = Requests;
    fn sub(self, earlier: Requests) -> Requests {
        Requests {
            head: self.head - earlier.head,
            get: self.get - earlier.get,
        }
    }
}

async fn s3_requests(server: &Server) -> Requests {
    Requests {
        head: server.metric("upcache_remote_head_requests_total").await as u64,
        get: server.metric("upcache_remote_get_requests_total").await as u64,
    }
}

/// Asserts that a node started now, with an empty data directory, does not
/// find `key`'s result in the bucket.
async fn a_fresh_node_does_not_find(config: &str, key: &Key) {
    let fresh = Server::start_with_config(config, &[]).await;
    assert_eq!(
        get_result(&fresh, key).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_node_with_an_empty_data_directory_serves_what_is_in_the_bucket() {
    let s3 = SeaweedFs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&s3, "shared/", dir.path());
    let first = Server::start_with_config(&config, &[]).await;
    let job = thumbnail(1, 16);
    let made = first.oneshot(&job).await;
    // The input and the result.
    drained(&first, 2.0).await;
    assert!(
        first
            .metric("upcache_write_behind_upload_seconds_count")
            .await
            >= 2.0,
        "the uploads' latency is recorded"
    );
    let store = s3.store("shared/").await;
    let head = store
        .head(BlobName::Result(job.key))
        .await
        .unwrap()
        .expect("the result is in the bucket");
    assert_eq!(head.length, made.len() as u64);
    assert!(store
        .head(BlobName::Input(job.hash))
        .await
        .unwrap()
        .is_some());

    let second = Server::start_with_config(&config, &[]).await;
    let before = s3_requests(&second).await;
    let resp = get_result(&second, &job.key).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), made, "byte for byte");
    assert_eq!(
        s3_requests(&second).await - before,
        Requests { head: 1, get: 1 },
        "a cold hit: the result's metadata, then its bytes with their metadata"
    );
    assert_eq!(
        second.metric("upcache_remote_read_seconds_count").await,
        1.0,
        "one read from the bucket"
    );
    let (_, status) = second.create(&job, None).await;
    assert_eq!(
        status.state,
        State::Complete,
        "POST /v1/ops finds it complete"
    );

    // A new operation on an input in the bucket needs no upload.
    let other = Job::new(
        job.input.clone(),
        json!({"op": "image.thumbnail", "width": 12, "height": 12, "format": "png"}),
    );
    let (_, status) = second.create(&other, None).await;
    assert_ne!(status.state, State::Uploading, "the input is in the bucket");
    let bytes = second.wait_result(&other.key).await;
    assert!(!bytes.is_empty());

    // A node that never saw the result can invalidate it: the bucket's copy
    // goes, and a fresh node no longer finds it.
    let third = Server::start_with_config(&config, &[]).await;
    let resp = third.delete(&job.key).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    leaves_the_bucket(&store, BlobName::Result(job.key)).await;
    a_fresh_node_does_not_find(&config, &job.key).await;
}

#[tokio::test]
async fn an_identity_result_is_found_by_its_key_on_an_empty_node_until_deleted() {
    let s3 = SeaweedFs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&s3, "same/", dir.path());
    let first = Server::start_with_config(&config, &[]).await;
    let job = Job::new(pseudo_random(200_000, 7), json!({"op": "identity"}));
    let made = first.oneshot(&job).await;
    assert_eq!(made, job.input);
    // The input, and the link under the key: an empty object naming the input.
    drained(&first, 2.0).await;
    let store = s3.store("same/").await;
    let link = store
        .head(BlobName::Result(job.key))
        .await
        .unwrap()
        .expect("a link under the key");
    assert_eq!(link.length, 0, "the link holds no bytes of its own");
    let of = link
        .meta
        .and_then(|m| m.result)
        .expect("the link's metadata");
    assert!(of.is_input);
    assert_eq!(of.input, job.hash);

    let second = Server::start_with_config(&config, &[]).await;
    let before = s3_requests(&second).await;
    let resp = get_result(&second, &job.key).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[reqwest::header::ETAG],
        format!("\"{}\"", job.hash).as_str(),
        "an identity result's ETag is its input's BLAKE3"
    );
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        job.input,
        "byte for byte"
    );
    assert_eq!(
        s3_requests(&second).await - before,
        Requests { head: 1, get: 1 },
        "a cold hit: the link, then the input's bytes"
    );
    let (_, status) = second.create(&job, None).await;
    assert_eq!(status.state, State::Complete);

    // Deleting it on a node that knows it removes the link from the bucket:
    // a third empty node no longer finds it.
    let resp = second.delete(&job.key).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    leaves_the_bucket(&store, BlobName::Result(job.key)).await;
    a_fresh_node_does_not_find(&config, &job.key).await;
}

#[tokio::test]
async fn with_s3_down_the_node_keeps_working_and_catches_up() {
    let mut s3 = SeaweedFs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&s3, "down/", dir.path());
    let mut server = Server::start_with_config(&config, &[]).await;
    s3.kill();

    let jobs: Vec<Job> = (10..13).map(|i| thumbnail(i, 16)).collect();
    let mut made = Vec::new();
    for j in &jobs {
        made.push(server.oneshot(j).await);
    }
    for (j, m) in jobs.iter().zip(&made) {
        assert_eq!(
            &server.wait_result(&j.key).await,
            m,
            "hits while S3 is down"
        );
    }
    eventually("health says degraded", Duration::from_secs(60), || async {
        let body = server
            .client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.contains("degraded").then_some(())
    })
    .await;
    assert!(
        server.metric(DEPTH).await >= 6.0,
        "inputs and results queued"
    );

    // A crash with the queue full: the queue is on disk.
    server.kill9();
    server.restart().await;
    s3.restart().await;
    drained(&server, 6.0).await;
    let store = s3.store("down/").await;
    for (j, m) in jobs.iter().zip(&made) {
        let body = store
            .get(BlobName::Result(j.key), None)
            .await
            .unwrap()
            .expect("every result reached the bucket");
        let bytes = upcache_server::store::blob::read_all(body).await.unwrap();
        assert_eq!(&bytes, m);
    }
}

#[tokio::test]
async fn a_purge_on_any_node_reaches_the_results_other_nodes_made() {
    let s3 = SeaweedFs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&s3, "purged/", dir.path());
    let first = Server::start_with_config(&config, &[]).await;
    let thumb = thumbnail(3, 16);
    first.oneshot(&thumb).await;
    let ident = Job::new(pseudo_random(50_000, 9), json!({"op": "identity"}));
    first.oneshot(&ident).await;
    // Two inputs, the thumbnail, and the identity result's link.
    drained(&first, 4.0).await;
    let store = s3.store("purged/").await;
    let in_bucket = |name: BlobName| {
        let store = &store;
        async move { store.head(name).await.unwrap().is_some() }
    };
    assert!(in_bucket(BlobName::Result(thumb.key)).await);
    assert!(in_bucket(BlobName::Result(ident.key)).await);

    // A node that has seen none of it purges by operation...
    let second = Server::start_with_config(&config, &[]).await;
    let purge = |body: serde_json::Value| {
        let second = &second;
        async move {
            let resp = second
                .client()
                .post(second.url(upcache_protocol::admin::PURGE_PATH))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap()
        }
    };
    let report = purge(json!({"operation": "image.thumbnail"})).await;
    assert_eq!(report["entries"], 1, "{report}");
    leaves_the_bucket(&store, BlobName::Result(thumb.key)).await;
    assert!(
        in_bucket(BlobName::Result(ident.key)).await,
        "another operation's result stays"
    );

    // ...and then of everything: results and inputs.
    let report = purge(json!({"all": true})).await;
    assert_eq!(report["entries"], 1, "{report}");
    assert_eq!(report["inputs"], 2, "{report}");
    eventually("the bucket is empty", Duration::from_secs(60), || async {
        let left = store.list("").await.unwrap();
        left.is_empty().then_some(())
    })
    .await;
}
