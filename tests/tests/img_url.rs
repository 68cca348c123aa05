//! The image URL API, `GET /img/{signature}/{options}/{input}`, with
//! signatures made by an independent implementation of imgproxy's scheme
//! (Python's `hmac`, run as a process): signed URLs are served and share
//! entries with `POST /v1/ops`; keys rotate; bad or missing signatures,
//! unknown options and inputs that are not stored are clear problems.

use image::ImageFormat;
use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::pictures::{encode, inspect, quadrants};
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::ProblemType;

const KEY: &str = "943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881";
const SALT: &str = "520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5";
const OLD_KEY: &str = "0123456789abcdef";
const OLD_SALT: &str = "fedcba9876543210";

const CONFIG: &str = r#"
url_key = ["943b421c9eb07c830af81030552c86009268de4e532ba2ee2eab8247c6da0881", "0123456789abcdef"]
url_salt = ["520f986b998545b4785e0defbc4f3c1203f22de2374a3d53cb7a7fe9fea309c5", "fedcba9876543210"]

[url_presets]
small = "rs:fit:64:64/q:50"
"#;

/// imgproxy's signature of `path`, computed by Python.
fn sign(key: &str, salt: &str, path: &str) -> String {
    let script = "import base64, hashlib, hmac, sys\n\
        key, salt, path = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3].encode()\n\
        digest = hmac.new(key, salt + path, hashlib.sha256).digest()\n\
        print(base64.urlsafe_b64encode(digest).rstrip(b'=').decode())";
    let out = std::process::Command::new("python3")
        .args(["-c", script, key, salt, path])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Stores `input` (an identity upload) and returns its BLAKE3.
async fn store(server: &Server, input: Vec<u8>) -> String {
    let job = Job::identity(input);
    server.oneshot(&job).await;
    job.hash.to_hex()
}

async fn get(server: &Server, url: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = server.client().get(server.url(url));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn signed_urls_are_served_and_share_entries_with_the_api() {
    let server = Server::start_with_config(CONFIG, &[]).await;
    let input = encode(&quadrants(640, 480, false), ImageFormat::Jpeg);
    let hash = store(&server, input.clone()).await;
    let path = format!("/rs:fit:200:200/q:70/{hash}.webp");
    let url = format!("/img/{}{path}", sign(KEY, SALT, &path));
    let resp = get(&server, &url, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(header(&headers, "content-type"), "image/webp");
    assert!(header(&headers, "cache-control").contains("immutable"));
    assert!(headers.get("vary").is_none(), "the format is in the URL");
    let etag = header(&headers, "etag").to_owned();
    let seen = inspect(&resp.bytes().await.unwrap());
    assert_eq!((seen.format, seen.size), ("webp", (200, 150)));
    // The same entry as the equivalent operation of POST /v1/ops.
    let job = Job::new(
        input,
        json!({"op": "image.thumbnail", "width": 200, "height": 200, "format": "webp", "quality": 70}),
    );
    assert_eq!(header(&headers, h::UPLOAD_KEY), job.key.to_hex());
    // Revalidation by a CDN.
    let again = server
        .client()
        .get(server.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // A retired key still signs, and presets expand.
    let path = format!("/pr:small/f:png/{hash}");
    let url = format!("/img/{}{path}", sign(OLD_KEY, OLD_SALT, &path));
    let resp = get(&server, &url, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = inspect(&resp.bytes().await.unwrap());
    assert_eq!((seen.format, seen.size), ("png", (64, 48)));
}

#[tokio::test]
async fn without_a_format_the_url_follows_accept_and_says_so() {
    let server = Server::start_with_config(CONFIG, &[]).await;
    let hash = store(
        &server,
        encode(&quadrants(320, 240, false), ImageFormat::Png),
    )
    .await;
    let path = format!("/w:80/{hash}");
    let url = format!("/img/{}{path}", sign(KEY, SALT, &path));
    for (accept, want) in [
        (Some("image/avif,image/webp,*/*"), "avif"),
        (Some("image/webp,*/*"), "webp"),
        (None, "jpeg"),
    ] {
        let resp = get(&server, &url, accept).await;
        assert_eq!(resp.status(), StatusCode::OK, "{accept:?}");
        assert_eq!(header(resp.headers(), "vary"), "Accept");
        let seen = inspect(&resp.bytes().await.unwrap());
        assert_eq!((seen.format, seen.size), (want, (80, 60)), "{accept:?}");
    }
}

#[tokio::test]
async fn bad_urls_are_refused_clearly() {
    let server = Server::start_with_config(CONFIG, &[]).await;
    let hash = store(&server, encode(&quadrants(64, 64, false), ImageFormat::Png)).await;
    let path = format!("/w:10/{hash}.png");
    let good = sign(KEY, SALT, &path);
    let tampered = format!("/w:11/{hash}.png");
    for url in [
        format!("/img/_{path}"),
        format!("/img/{good}{tampered}"),
        format!("/img/{}{path}", sign(KEY, OLD_SALT, &path)),
        format!("/img/{good}"),
    ] {
        assert_problem(
            get(&server, &url, None).await,
            ProblemType::InvalidSignature,
        )
        .await;
    }
    for options in ["nope:1", "g:sm", "pr:missing", "rs:fit:10:10:1:1"] {
        let path = format!("/{options}/{hash}.png");
        let url = format!("/img/{}{path}", sign(KEY, SALT, &path));
        assert_problem(
            get(&server, &url, None).await,
            ProblemType::InvalidUrlOptions,
        )
        .await;
    }
    let absent = upcache_protocol::InputHash::of(b"never uploaded").to_hex();
    let path = format!("/w:10/{absent}.png");
    let url = format!("/img/{}{path}", sign(KEY, SALT, &path));
    assert_problem(get(&server, &url, None).await, ProblemType::NotFound).await;
}

#[tokio::test]
async fn unsigned_urls_only_when_the_operator_allows_them() {
    let input = encode(&quadrants(64, 64, false), ImageFormat::Png);
    let closed = Server::start().await;
    let hash = store(&closed, input.clone()).await;
    let url = format!("/img/insecure/w:10/{hash}.png");
    assert_problem(
        get(&closed, &url, None).await,
        ProblemType::InvalidSignature,
    )
    .await;
    let open = Server::start_with_config("url_unsigned = true\n", &[]).await;
    store(&open, input).await;
    let resp = get(&open, &url, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(inspect(&resp.bytes().await.unwrap()).size, (10, 10));
}
