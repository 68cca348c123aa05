//! Large results answered with a `307` to a presigned URL of the S3 tier
//! (`s3.redirect_above`), against a real SeaweedFS reached through a fault
//! proxy: the bytes (and byte ranges) come from the bucket, the Rust SDK
//! follows and resumes and checks the BLAKE3; small results, results whose
//! copy to the bucket is still queued, a remote tier behind an open breaker
//! and a node without the setting are served by the node itself. The
//! result URL of a tus upload redirects like `/v1/ops/{key}/result`, but for
//! a file uploaded with a name or type, which the bucket would not send.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, ETAG, IF_NONE_MATCH, LOCATION, RANGE,
};
use reqwest::{redirect::Policy, Client as Http, StatusCode};
use upcache_client::{Client, Options};
use upcache_e2e::s3::{BUCKET, SECRET_KEY};
use upcache_e2e::sdk::fast_options;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::result_path;
use upcache_protocol::Key;

const API_KEY: &str = "redirect-api-key";
/// `redirect_above` of these tests.
const THRESHOLD: usize = 1 << 20;
const BIG: usize = 3 * THRESHOLD;
const REDIRECTS: &str = "upcache_result_redirects_total";
const DEPTH: &str = "upcache_write_behind_depth";
const UPLOADED: &str = "upcache_write_behind_uploads_total";
const BREAKER: &str = "upcache_remote_breaker_state";

/// A node whose S3 tier is a SeaweedFS behind a fault proxy, with API keys
/// (so that every client sends an `Authorization` the bucket must not see).
struct Node {
    s3: SeaweedFs,
    proxy: FaultProxy,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn node(redirect_above: Option<&str>) -> Node {
    node_with(redirect_above, true, "").await
}

/// A node as [`node`] makes, with API keys or open to all, and `extra`
/// top-level settings.
async fn node_with(redirect_above: Option<&str>, keys: bool, extra: &str) -> Node {
    let s3 = SeaweedFs::start().await;
    let target: SocketAddr = s3.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(target).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET_KEY).unwrap();
    let redirect = redirect_above.map_or(String::new(), |r| {
        format!("redirect_above = \"{r}\"\nredirect_ttl = 120\n")
    });
    let keys = if keys {
        format!("{extra}api_keys = [\"{API_KEY}\"]\n")
    } else {
        extra.to_owned()
    };
    let config = format!(
        "{keys}[s3]\nendpoint = \"{}\"\nbucket = \"{BUCKET}\"\n\
         region = \"us-east-1\"\npath_style = true\nprefix = \"redirect/\"\n\
         access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n\
         write_behind_concurrency = 2\nbreaker_failures = 3\nbreaker_cooldown = 1\n{redirect}",
        proxy.base_url(),
        s3.config("redirect/").access_key_id.unwrap(),
        secret.display()
    );
    let server = Server::start_with_config(&config, &[]).await;
    Node {
        s3,
        proxy,
        server,
        _dir: dir,
    }
}

/// A client with the API key that follows redirects, or not.
fn http(follow: bool) -> Http {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(AUTHORIZATION, format!("Bearer {API_KEY}").parse().unwrap());
    Http::builder()
        .default_headers(headers)
        .redirect(if follow {
            Policy::limited(5)
        } else {
            Policy::none()
        })
        .no_proxy()
        .build()
        .unwrap()
}

fn sdk(server: &Server) -> Client {
    Client::with_options(
        &server.base_url(),
        Options {
            bearer_token: Some(API_KEY.into()),
            ..fast_options()
        },
    )
    .unwrap()
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = http(false)
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_counter(&text, name)
}

/// Puts `input` through the SDK (identity: the result is the input).
async fn put(server: &Server, input: &[u8]) -> Key {
    sdk(server)
        .put_reader(input, &serde_json::json!({"op": "identity"}), None)
        .await
        .expect("put")
        .key
}

async fn drained(server: &Server, uploads: f64) {
    eventually(
        "the write-behind queue drains",
        Duration::from_secs(60),
        || async {
            (metric(server, DEPTH).await == 0.0 && metric(server, UPLOADED).await >= uploads)
                .then_some(())
        },
    )
    .await;
}

async fn get(
    server: &Server,
    key: &Key,
    follow: bool,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http(follow).get(server.url(&result_path(key)));
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", blake3::hash(bytes).to_hex())
}

/// Asserts a result answered by the node itself, whole.
async fn served_locally(server: &Server, key: &Key, input: &[u8], what: &str) {
    let resp = get(server, key, false, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "{what}");
    assert!(resp.headers().get(LOCATION).is_none(), "{what}");
    assert_eq!(resp.bytes().await.unwrap(), input, "{what}");
}

#[tokio::test]
async fn a_large_result_is_redirected_to_the_bucket_whole_or_in_part() {
    let n = node(Some("1MiB")).await;
    let input = pseudo_random(BIG, 1);
    let key = put(&n.server, &input).await;
    drained(&n.server, 1.0).await;

    let resp = get(&n.server, &key, false, &[]).await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let hs = resp.headers();
    let location = header(hs, LOCATION.as_str()).to_owned();
    assert!(
        location.starts_with(&format!("{}/{BUCKET}/redirect/", n.proxy.base_url()))
            && location.contains("X-Amz-Signature="),
        "a presigned URL of the object: {location}"
    );
    assert_eq!(header(hs, ETAG.as_str()), etag_of(&input));
    assert_eq!(header(hs, h::UPLOAD_KEY), key.to_hex());
    let cache = header(hs, CACHE_CONTROL.as_str());
    assert!(
        cache.starts_with("private, max-age=") && !cache.contains("immutable"),
        "the redirect expires with its URL: {cache}"
    );
    assert_eq!(header_u64(hs, CONTENT_LENGTH.as_str()), 0);

    // Followed, with the API key in the first request only: the bucket's bytes.
    let resp = get(&n.server, &key, true, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "the bucket answers");
    let body = resp.bytes().await.unwrap();
    assert_eq!(etag_of(&body), etag_of(&input), "BLAKE3 of what came back");
    assert_eq!(body, input);

    // A range is carried to the bucket, which honours it.
    let resp = get(
        &n.server,
        &key,
        true,
        &[(RANGE.as_str(), "bytes=1000-1999")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), input[1000..2000]);
    let resp = get(&n.server, &key, true, &[(RANGE.as_str(), "bytes=-10")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), input[BIG - 10..]);
    assert_eq!(metric(&n.server, REDIRECTS).await, 4.0);

    // What the bucket cannot judge stays here: HEAD, If-None-Match, a range
    // outside the result.
    let resp = http(false)
        .head(n.server.url(&result_path(&key)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header_u64(resp.headers(), CONTENT_LENGTH.as_str()),
        BIG as u64
    );
    let etag = etag_of(&input);
    let resp = get(&n.server, &key, false, &[(IF_NONE_MATCH.as_str(), &etag)]).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = get(
        &n.server,
        &key,
        false,
        &[(RANGE.as_str(), "bytes=99999999-")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(metric(&n.server, REDIRECTS).await, 4.0);

    // The SDK follows (its bearer token stays behind), resumes with a
    // range through a second redirect when the bucket's answer is cut
    // short, and checks the BLAKE3 of the whole.
    n.proxy.fault_next(1, Fault::DropDownAfter(BIG as u64 / 3));
    let client = sdk(&n.server);
    let status = client.status(&key).await.unwrap();
    let mut out = Vec::new();
    let got = client.download(&status, &mut out).await.expect("download");
    assert_eq!(got, BIG as u64);
    assert_eq!(out, input);
    assert_eq!(n.proxy.struck(), 1, "the first answer was cut");
    assert!(
        metric(&n.server, REDIRECTS).await >= 6.0,
        "the resumption was redirected too"
    );
}

#[tokio::test]
async fn small_queued_and_breaker_blocked_results_are_served_by_the_node() {
    let mut n = node(Some("1MiB")).await;
    let small = pseudo_random(THRESHOLD - 1, 2);
    let small_key = put(&n.server, &small).await;
    let big = pseudo_random(BIG, 3);
    let big_key = put(&n.server, &big).await;
    drained(&n.server, 2.0).await;
    served_locally(&n.server, &small_key, &small, "below redirect_above").await;
    let resp = get(&n.server, &big_key, false, &[]).await;
    assert_eq!(
        resp.status(),
        StatusCode::TEMPORARY_REDIRECT,
        "confirmed: redirected"
    );

    // S3 goes away: a new large result stays queued for the bucket.
    n.s3.kill();
    let queued = pseudo_random(BIG, 4);
    let queued_key = put(&n.server, &queued).await;
    assert!(metric(&n.server, DEPTH).await >= 1.0, "its copy is queued");
    served_locally(
        &n.server,
        &queued_key,
        &queued,
        "its copy is not in the bucket",
    )
    .await;
    // Failing copies open the breaker: the confirmed one is served here too.
    eventually("the breaker opens", Duration::from_secs(60), || async {
        (metric(&n.server, BREAKER).await == 1.0).then_some(())
    })
    .await;
    served_locally(&n.server, &big_key, &big, "the bucket is unavailable").await;
    assert_eq!(metric(&n.server, REDIRECTS).await, 1.0);

    // S3 back: the queue drains and the new result goes to the bucket too
    // (once the restarted bucket answers for it).
    n.s3.restart().await;
    drained(&n.server, 3.0).await;
    eventually(
        "the queued result is redirected",
        Duration::from_secs(30),
        || async {
            let resp = get(&n.server, &queued_key, false, &[]).await;
            (resp.status() == StatusCode::TEMPORARY_REDIRECT).then_some(())
        },
    )
    .await;
    let resp = get(&n.server, &queued_key, true, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), queued);
    assert!(metric(&n.server, REDIRECTS).await >= 3.0);
}

#[tokio::test]
async fn without_redirect_above_nothing_is_redirected() {
    let n = node(None).await;
    let big = pseudo_random(BIG, 5);
    let key = put(&n.server, &big).await;
    drained(&n.server, 1.0).await;
    served_locally(&n.server, &key, &big, "redirects are off").await;
    let resp = get(&n.server, &key, false, &[(RANGE.as_str(), "bytes=10-19")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), big[10..20]);
    assert_eq!(metric(&n.server, REDIRECTS).await, 0.0);
}

#[tokio::test]
async fn the_result_of_a_tus_upload_is_redirected_too() {
    let n = node_with(Some("1MiB"), false, "").await;
    let input = pseudo_random(BIG, 6);
    let op = upcache_e2e::tus::op_metadata(&serde_json::json!({"op": "identity"}));
    let (location, _) = n.server.tus_upload(&input, &op).await;
    eventually(
        "the write-behind queue drains",
        Duration::from_secs(60),
        || async {
            (n.server.metric(DEPTH).await == 0.0 && n.server.metric(UPLOADED).await >= 1.0)
                .then_some(())
        },
    )
    .await;
    let url = n.server.url(&format!("{location}/result"));
    let manual = Http::builder()
        .redirect(Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let resp = manual
        .get(&url)
        .header(h::PREFER, "wait=30")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(resp.headers(), ETAG.as_str()), etag_of(&input));
    let resp = manual.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "HEAD is answered here");
    assert_eq!(
        header_u64(resp.headers(), CONTENT_LENGTH.as_str()),
        BIG as u64
    );
    let resp = n.server.client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), input, "from the bucket");
    assert_eq!(n.server.metric(REDIRECTS).await, 2.0);

    // A file uploaded with a name and type is served with them, which
    // the bucket would not send: here.
    let named = pseudo_random(BIG, 7);
    let meta =
        upcache_e2e::tus::metadata(&[("filename", b"big.bin"), ("filetype", b"application/x-big")]);
    let (location, _) = n.server.tus_upload(&named, &meta).await;
    eventually(
        "the write-behind queue drains",
        Duration::from_secs(60),
        || async {
            (n.server.metric(DEPTH).await == 0.0 && n.server.metric(UPLOADED).await >= 2.0)
                .then_some(())
        },
    )
    .await;
    let resp = manual
        .get(n.server.url(&format!("{location}/result")))
        .header(h::PREFER, "wait=30")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(resp.headers(), "content-disposition"),
        "inline; filename=\"big.bin\""
    );
    assert_eq!(header(resp.headers(), "content-type"), "application/x-big");
    assert_eq!(resp.bytes().await.unwrap(), named);
    assert_eq!(n.server.metric(REDIRECTS).await, 2.0);
}

#[tokio::test]
async fn a_redirect_is_a_use_that_keeps_a_result_from_expiring() {
    let n = node_with(Some("1MiB"), true, "result_ttl = 2\n").await;
    let big = pseudo_random(BIG, 8);
    let key = put(&n.server, &big).await;
    drained(&n.server, 1.0).await;
    // Read only through redirects for twice the time to live.
    for _ in 0..8 {
        let resp = get(&n.server, &key, false, &[]).await;
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "still there");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resp = get(&n.server, &key, true, &[]).await;
    assert_eq!(resp.bytes().await.unwrap(), big);
}
