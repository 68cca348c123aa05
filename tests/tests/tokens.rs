//! Scoped upload tokens and presigned result URLs (spec/tokens.md), against
//! the real binary: a token carries a browser's upload from create to
//! result; tampered, expired, foreign, out-of-scope and wrong-method uses are
//! refused with their own problem and change nothing; old signing keys keep
//! verifying; a token made by Python's `hmac` is accepted; the demo page is
//! served only when it is on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use upcache_e2e::*;
use upcache_protocol::status::{entry_path, result_path, OPS_PATH};
use upcache_protocol::token::{self, Action, Claims, Scope, SigningKey, TOKENS_PATH};
use upcache_protocol::{Key, ProblemType, State};

const API_KEY: &str = "the-api-key";
const NEW: &str = "k2:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OLD: &str = "k1:fedcba9876543210fedcba9876543210";
const BS: u64 = 64 * 1024;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config(keys: &[&str], extra: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "api_keys = [{API_KEY:?}]\ntoken_keys = [{}]\n{extra}",
        keys.join(", ")
    )
}

/// A server with API keys and the signing keys `[NEW, OLD]`.
async fn server() -> Server {
    Server::start_with_config(&config(&[NEW, OLD], ""), &[]).await
}

/// `POST /v1/tokens` with `credential`; the answer's status and JSON.
async fn mint_as(server: &Server, credential: &str, body: Value) -> (StatusCode, Value) {
    let resp = server
        .client()
        .post(server.url(TOKENS_PATH))
        .bearer_auth(credential)
        .json_body(&body)
        .send()
        .await
        .expect("POST /v1/tokens");
    let code = resp.status();
    (code, json_of(resp).await)
}

/// A token minted with the API key.
async fn mint(server: &Server, body: Value) -> String {
    let (code, answer) = mint_as(server, API_KEY, body).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().expect("a token").to_owned()
}

/// A JSON body, without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

async fn json_of(resp: Response) -> Value {
    let bytes = resp.bytes().await.expect("read the answer");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

fn input_scope(job: &Job, ops: &[&str]) -> Value {
    json!({"input": job.hash, "max_size": job.len(), "ops": ops})
}

fn req(server: &Server, method: Method, path: &str, token: &str) -> RequestBuilder {
    server
        .client()
        .request(method, server.url(path))
        .bearer_auth(token)
}

async fn create_with(server: &Server, job: &Job, token: &str) -> Response {
    req(server, Method::POST, OPS_PATH, token)
        .json_body(&job.create_request(Some(BS)))
        .send()
        .await
        .expect("POST /v1/ops")
}

/// The entry's state, asked with the API key; `None` if it does not exist.
async fn state(server: &Server, key: &Key) -> Option<State> {
    let resp = req(server, Method::GET, &entry_path(key), API_KEY)
        .send()
        .await
        .expect("GET status");
    match resp.status() {
        StatusCode::NOT_FOUND => None,
        StatusCode::OK => {
            Some(serde_json::from_value(json_of(resp).await["state"].clone()).unwrap())
        }
        code => panic!("GET status: {code}"),
    }
}

/// `HEAD /v1/ops/{key}` with the API key.
async fn head_info(server: &Server, key: &Key) -> HeadInfo {
    let resp = req(server, Method::HEAD, &entry_path(key), API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    HeadInfo::from_headers(resp.headers())
}

/// A counter of `/metrics`, read with the API key.
async fn server_metric(server: &Server, name: &str) -> f64 {
    let resp = req(server, Method::GET, "/metrics", API_KEY)
        .send()
        .await
        .unwrap();
    parse_counter(&resp.text().await.unwrap(), name)
}

/// Sends `r` and asserts the problem `kind`.
async fn refused(r: RequestBuilder, kind: ProblemType) -> upcache_protocol::Problem {
    assert_problem(r.send().await.expect("send"), kind).await.1
}

fn signing(text: &str) -> SigningKey {
    text.parse().unwrap()
}

fn claims(scope: Scope, exp: u64) -> Claims {
    Claims {
        exp,
        nbf: None,
        scope,
        allow: Action::ALL.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carries_an_upload_from_create_to_result() {
    let server = server().await;
    let job = Job::identity(pseudo_random(5 * BS as usize + 123, 1));
    let layout = job.layout(BS);
    let token = mint(
        &server,
        json!({"scope": input_scope(&job, &["identity"]), "ttl": 600}),
    )
    .await;
    assert!(
        token.starts_with("upc1.k2."),
        "the first key signs: {token}"
    );

    // Without any credential the server (it has API keys) refuses.
    assert_problem(
        server.post_create(&job.create_request(Some(BS))).await,
        ProblemType::Unauthorized,
    )
    .await;

    let created = create_with(&server, &job, &token).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for n in (0..layout.blocks()).rev() {
        let resp = server
            .block_request(&job, &layout, n)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "block {n}");
    }
    let head = req(&server, Method::HEAD, &entry_path(&job.key), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let status = req(&server, Method::GET, &entry_path(&job.key), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    let result = server
        .result_request(&job.key, Some(30))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(result.status(), StatusCode::OK);
    assert_eq!(result.bytes().await.unwrap(), job.input);

    // A key-scoped token does the same by sequential PATCH.
    let other = Job::identity(pseudo_random(3000, 2));
    let token = mint(&server, json!({"scope": {"key": other.key}})).await;
    assert_eq!(
        create_with(&server, &other, &token).await.status(),
        StatusCode::CREATED
    );
    let patched = server
        .patch_request(&other.key, 0, other.input.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    let result = server
        .result_request(&other.key, Some(30))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(result.bytes().await.unwrap(), other.input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_and_change_nothing() {
    let server = server().await;
    let job = Job::identity(pseudo_random(4000, 3));
    let scope = Scope::key(job.key);
    let good = token::sign(&signing(NEW), &claims(scope.clone(), now() + 600));

    let (head, payload) = good.rsplit_once('.').unwrap().0.rsplit_once('.').unwrap();
    let sig = good.rsplit_once('.').unwrap().1;
    let widened = claims(Scope::key(Key([7; 32])), now() + 600);
    let forged_payload = token::sign(&signing(NEW), &widened);
    let forged_payload = forged_payload.split('.').nth(2).unwrap();
    let mut flipped = sig.to_owned().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let cases = [
        (
            format!("{head}.{forged_payload}.{sig}"),
            ProblemType::InvalidToken,
        ),
        (
            format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap()),
            ProblemType::InvalidToken,
        ),
        (format!("{head}.{payload}"), ProblemType::InvalidToken),
        (
            token::sign(
                &signing("k1:00000000000000000000000000000000"),
                &claims(scope.clone(), now() + 600),
            ),
            ProblemType::InvalidToken,
        ),
        (
            token::sign(
                &signing("k9:0123456789abcdef0123456789abcdef"),
                &claims(scope.clone(), now() + 600),
            ),
            ProblemType::UnknownTokenKey,
        ),
        (
            token::sign(&signing(NEW), &claims(scope.clone(), now() - 1)),
            ProblemType::TokenExpired,
        ),
        (
            token::sign(
                &signing(NEW),
                &Claims {
                    nbf: Some(now() + 600),
                    ..claims(scope, now() + 900)
                },
            ),
            ProblemType::TokenExpired,
        ),
    ];
    for (bad, kind) in &cases {
        let resp = create_with(&server, &job, bad).await;
        let (headers, _) = assert_problem(resp, *kind).await;
        assert_eq!(
            header(&headers, "www-authenticate"),
            "Bearer error=\"invalid_token\""
        );
        refused(server.oneshot_request(&job).bearer_auth(bad), *kind).await;
    }
    assert_eq!(state(&server, &job.key).await, None, "nothing was created");
    assert_eq!(
        server_metric(&server, "upcache_token_refusals_total").await,
        2.0 * cases.len() as f64
    );
    // The good one works.
    assert_eq!(
        create_with(&server, &job, &good).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_scope_uses_are_403_and_change_nothing() {
    let server = server().await;
    let job = Job::identity(pseudo_random(4000, 4));
    let thumb = job.with_op(json!({"op": "image.thumbnail", "width": 8, "height": 8}));
    let other = Job::identity(pseudo_random(4000, 5));
    assert_eq!(
        create_with(&server, &other, API_KEY).await.status(),
        StatusCode::CREATED
    );

    let by_input = mint(&server, json!({"scope": input_scope(&job, &["identity"])})).await;
    let too_small = mint(
        &server,
        json!({"scope": {"input": job.hash, "max_size": job.len() - 1}}),
    )
    .await;
    let by_key = mint(&server, json!({"scope": {"key": job.key}})).await;
    // Another input, an operation not listed, a size over max_size, another key.
    for (token, attempt) in [
        (&by_input, &other),
        (&by_input, &thumb),
        (&too_small, &job),
        (&by_key, &thumb),
    ] {
        let resp = create_with(&server, attempt, token).await;
        assert_problem(resp, ProblemType::OutOfScope).await;
        refused(
            server.oneshot_request(attempt).bearer_auth(token),
            ProblemType::OutOfScope,
        )
        .await;
        assert_eq!(
            state(&server, &attempt.key).await,
            (attempt.key == other.key).then_some(State::Uploading)
        );
    }
    // An input-scoped token learns nothing of entries that do not exist.
    assert_problem(
        req(&server, Method::GET, &entry_path(&job.key), &by_input)
            .send()
            .await
            .unwrap(),
        ProblemType::NotFound,
    )
    .await;
    // Someone else's entry: status, HEAD, blocks, PATCH, result.
    let layout = other.layout(BS);
    for token in [&by_input, &by_key] {
        let (headers, _) = assert_problem(
            req(&server, Method::GET, &entry_path(&other.key), token)
                .send()
                .await
                .unwrap(),
            ProblemType::OutOfScope,
        )
        .await;
        assert_eq!(
            header(&headers, "www-authenticate"),
            "Bearer error=\"insufficient_scope\""
        );
        let head = req(&server, Method::HEAD, &entry_path(&other.key), token)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::FORBIDDEN);
        refused(
            server.block_request(&other, &layout, 0).bearer_auth(token),
            ProblemType::OutOfScope,
        )
        .await;
        refused(
            server
                .patch_request(&other.key, 0, other.input.clone())
                .bearer_auth(token),
            ProblemType::OutOfScope,
        )
        .await;
        refused(
            server.result_request(&other.key, None).bearer_auth(token),
            ProblemType::OutOfScope,
        )
        .await;
    }
    let head = head_info(&server, &other.key).await;
    // Every refusal above counted; the 404 did not.
    assert_eq!(
        server_metric(&server, "upcache_token_refusals_total").await,
        8.0 + 2.0 * 5.0
    );
    assert_eq!(
        (head.state, head.offset, head.missing.as_str()),
        (State::Uploading, 0, "0"),
        "no byte landed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_delete_use_tus_mint_or_exceed_allow() {
    let server = server().await;
    let job = Job::identity(pseudo_random(4000, 6));
    let token = mint(&server, json!({"scope": {"key": job.key}})).await;
    assert_eq!(
        create_with(&server, &job, &token).await.status(),
        StatusCode::CREATED
    );

    refused(
        req(&server, Method::DELETE, &entry_path(&job.key), &token),
        ProblemType::TokenNotAllowed,
    )
    .await;
    assert_eq!(
        state(&server, &job.key).await,
        Some(State::Uploading),
        "DELETE changed nothing"
    );
    refused(
        req(&server, Method::POST, "/files/", &token)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "10"),
        ProblemType::TokenNotAllowed,
    )
    .await;
    refused(
        req(
            &server,
            Method::PATCH,
            &format!("/files/{}", job.key),
            &token,
        )
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body("x"),
        ProblemType::TokenNotAllowed,
    )
    .await;
    refused(
        req(&server, Method::GET, "/metrics", &token),
        ProblemType::TokenNotAllowed,
    )
    .await;
    let (code, answer) = mint_as(&server, &token, json!({"scope": {"key": job.key}})).await;
    assert_eq!(
        (code, answer["type"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some(ProblemType::TokenNotAllowed.uri().as_str())
        )
    );

    // What `allow` leaves out is refused too.
    let status_only = mint(
        &server,
        json!({"scope": {"key": job.key}, "allow": ["status"]}),
    )
    .await;
    let layout = job.layout(BS);
    refused(
        server
            .block_request(&job, &layout, 0)
            .bearer_auth(&status_only),
        ProblemType::TokenNotAllowed,
    )
    .await;
    refused(
        create_with_req(&server, &job, &status_only),
        ProblemType::TokenNotAllowed,
    )
    .await;
    refused(
        server
            .result_request(&job.key, None)
            .bearer_auth(&status_only),
        ProblemType::TokenNotAllowed,
    )
    .await;
    let ok = req(&server, Method::GET, &entry_path(&job.key), &status_only)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        head_info(&server, &job.key).await.missing,
        "0",
        "nothing landed"
    );

    // Without `wait`, a result request answers at once.
    let no_wait = mint(
        &server,
        json!({"scope": {"key": job.key}, "allow": ["result"]}),
    )
    .await;
    let started = std::time::Instant::now();
    let resp = server
        .result_request(&job.key, Some(20))
        .bearer_auth(&no_wait)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait: {:?}",
        started.elapsed()
    );
}

fn create_with_req(server: &Server, job: &Job, token: &str) -> RequestBuilder {
    req(server, Method::POST, OPS_PATH, token).json_body(&job.create_request(Some(BS)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_signing_keys_keep_verifying() {
    let job = Job::identity(pseudo_random(2000, 7));
    let before = Server::start_with_config(&config(&[OLD], ""), &[]).await;
    let old_token = mint(&before, json!({"scope": {"key": job.key}})).await;
    assert!(old_token.starts_with("upc1.k1."));

    let rotated = server().await; // [NEW, OLD]
    assert_eq!(
        create_with(&rotated, &job, &old_token).await.status(),
        StatusCode::CREATED
    );
    let new_token = mint(&rotated, json!({"scope": {"key": job.key}})).await;
    assert!(new_token.starts_with("upc1.k2."));

    let retired = Server::start_with_config(&config(&[NEW], ""), &[]).await;
    assert_problem(
        create_with(&retired, &job, &old_token).await,
        ProblemType::UnknownTokenKey,
    )
    .await;
    assert_eq!(
        create_with(&retired, &job, &new_token).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_serve_a_result_without_a_header() {
    let server = server().await;
    let job = Job::identity(pseudo_random(3000, 8));
    assert_eq!(
        create_with(&server, &job, API_KEY).await.status(),
        StatusCode::CREATED
    );
    let resp = server
        .patch_request(&job.key, 0, job.input.clone())
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let (code, answer) = mint_as(
        &server,
        API_KEY,
        json!({"result_url_for": job.key, "ttl": 600}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let url = answer["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&result_path(&job.key)), "{url}");
    let get = server.client().get(server.url(&url)).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.bytes().await.unwrap(), job.input);
    let head = server.client().head(server.url(&url)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    let expired = token::presign_result(&signing(NEW), &job.key, now() - 1);
    let retired = token::presign_result(
        &signing("k0:0123456789abcdef0123456789abcdef"),
        &job.key,
        now() + 60,
    );
    let tampered = url.replace("exp=", "exp=1");
    let other = Job::identity(pseudo_random(10, 9));
    let elsewhere = url.replace(&job.key.to_hex(), &other.key.to_hex());
    let truncated = url.split("&sig").next().unwrap().to_owned();
    for (bad, kind) in [
        (&expired, ProblemType::UrlExpired),
        (&retired, ProblemType::InvalidUrlSignature),
        (&tampered, ProblemType::InvalidUrlSignature),
        (&elsewhere, ProblemType::InvalidUrlSignature),
        (&truncated, ProblemType::InvalidUrlSignature),
    ] {
        // A valid API key does not rescue a bad signature.
        refused(
            server.client().get(server.url(bad)).bearer_auth(API_KEY),
            kind,
        )
        .await;
    }

    // A token allowing `result` obtains its own entry's URL, no longer-lived than itself.
    let token = mint(&server, json!({"scope": {"key": job.key}, "ttl": 120})).await;
    let (code, answer) = mint_as(
        &server,
        &token,
        json!({"result_url_for": job.key, "ttl": 3600}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    assert!(answer["expires"].as_u64().unwrap() <= now() + 121);
    let get = server
        .client()
        .get(server.url(answer["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(get.bytes().await.unwrap(), job.input);
    let (code, _) = mint_as(&server, &token, json!({"result_url_for": other.key})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let no_result = mint(
        &server,
        json!({"scope": {"key": job.key}, "allow": ["upload"]}),
    )
    .await;
    let (code, _) = mint_as(&server, &no_result, json!({"result_url_for": job.key})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_needs_an_api_key_and_caps_the_ttl() {
    let server = Server::start_with_config(&config(&[NEW], "token_max_ttl = 60\n"), &[]).await;
    let job = Job::identity(pseudo_random(100, 10));
    let body = json!({"scope": {"key": job.key}, "ttl": 3600});
    let (code, _) = mint_as(&server, "not-the-key", body.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, answer) = mint_as(&server, API_KEY, body).await;
    assert_eq!(code, StatusCode::CREATED);
    let expires = answer["expires"].as_u64().unwrap();
    assert!(
        expires <= now() + 60 && expires + 5 >= now() + 60,
        "capped: {expires}"
    );
    for bad in [
        json!({}),
        json!({"scope": {"key": job.key}, "result_url_for": job.key}),
        json!({"scope": {"key": job.key}, "ttl": 0}),
        json!({"scope": {"key": job.key}, "allow": ["delete"]}),
        json!({"scope": {"key": job.key, "input": job.hash}}),
        json!({"scope": {"key": job.key}, "admin": true}),
    ] {
        let (code, answer) = mint_as(&server, API_KEY, bad.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

/// Makes a token and a presigned URL with Python's `hmac` and `base64`.
const PYTHON_MINT: &str = r#"
import base64, hashlib, hmac, json, sys
kid, secret, key, payload, exp = sys.argv[1:6]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mac = lambda m: b64(hmac.new(bytes.fromhex(secret), m.encode(), hashlib.sha256).digest())
signed = "upc1." + kid + "." + b64(payload.encode())
print(signed + "." + mac(signed))
print("/v1/ops/%s/result?exp=%s&kid=%s&sig=%s" % (key, exp, kid, mac("GET\n/v1/ops/%s/result\n%s" % (key, exp))))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_by_python_is_accepted() {
    let server = server().await;
    let job = Job::identity(pseudo_random(2500, 11));
    let (kid, secret) = OLD.split_once(':').unwrap();
    let exp = (now() + 300).to_string();
    let payload = format!(
        r#"{{"exp": {exp}, "scope": {{"ops": ["identity"], "input": "{}"}}, "allow": ["upload", "result", "wait"]}}"#,
        job.hash
    );
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            PYTHON_MINT,
            kid,
            secret,
            &job.key.to_hex(),
            &payload,
            &exp,
        ])
        .output()
        .await
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (token, url) = out.trim().split_once('\n').unwrap();

    // A one-shot upload: its answer is the result.
    let resp = server
        .oneshot_request(&job)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), job.input);
    // Not allowed: status.
    refused(
        req(&server, Method::GET, &entry_path(&job.key), token),
        ProblemType::TokenNotAllowed,
    )
    .await;
    let get = server.client().get(server.url(url)).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.bytes().await.unwrap(), job.input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_and_its_tokens_only_when_on() {
    // Loopback with API keys: the demo is on, and open.
    let server = server().await;
    let page = server
        .client()
        .get(server.url("/demo/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(header(page.headers(), "content-type").starts_with("text/html"));
    assert_eq!(
        header(page.headers(), "cross-origin-opener-policy"),
        "same-origin"
    );
    assert!(page.text().await.unwrap().contains("<title>"));
    let bare = server
        .client()
        .get(server.url("/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::OK, "/demo redirects to /demo/");
    assert_problem(
        server
            .client()
            .get(server.url("/demo/nope.js"))
            .send()
            .await
            .unwrap(),
        ProblemType::NotFound,
    )
    .await;

    let job = Job::new(
        png(32, 24),
        json!({"op": "image.thumbnail", "width": 8, "height": 8}),
    );
    let resp = server
        .client()
        .post(server.url(token::DEMO_TOKEN_PATH))
        .json_body(&json!({"input": job.hash, "max_size": job.len(), "ops": ["image.thumbnail"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let answer = json_of(resp).await;
    let token = answer["token"].as_str().unwrap();
    assert!(answer["expires"].as_u64().unwrap() <= now() + 900);
    let resp = server
        .oneshot_request(&job)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let identity = job.with_op(json!({"op": "identity"}));
    assert_problem(
        create_with(&server, &identity, token).await,
        ProblemType::OutOfScope,
    )
    .await;

    let off = Server::start_with_config(&config(&[NEW], "demo = false\n"), &[]).await;
    assert_problem(
        off.client().get(off.url("/demo/")).send().await.unwrap(),
        ProblemType::NotFound,
    )
    .await;
    let resp = off
        .client()
        .post(off.url(token::DEMO_TOKEN_PATH))
        .json_body(&json!({"input": job.hash}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::NotFound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_mints_tokens_and_urls() {
    let server = server().await;
    let job = Job::identity(pseudo_random(1500, 12));
    let base = server.base_url();
    let (hash, size) = (job.hash.to_hex(), job.len().to_string());
    let run = cli::run(&[
        "token",
        "--server",
        &base,
        "--token",
        API_KEY,
        "--input",
        &hash,
        "--max-size",
        &size,
        "--op",
        "identity",
        "--ttl",
        "10m",
        "--allow",
        "upload,status,result",
    ])
    .await;
    run.assert_code(0);
    let token = run.stdout.trim();
    assert!(token.starts_with("upc1.k2."), "{run:?}");
    assert_eq!(
        create_with(&server, &job, token).await.status(),
        StatusCode::CREATED
    );
    let resp = server
        .patch_request(&job.key, 0, job.input.clone())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Offline, with the old signing key.
    let run = cli::run(&[
        "token",
        "--signing-key",
        OLD,
        "--key",
        &job.key.to_hex(),
        "--ttl",
        "60",
    ])
    .await;
    run.assert_code(0);
    let offline = run.stdout.trim();
    assert!(offline.starts_with("upc1.k1."));
    let status = req(&server, Method::GET, &entry_path(&job.key), offline)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);

    let done = server
        .result_request(&job.key, Some(30))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let run = cli::run(&[
        "token",
        "--server",
        &base,
        "--token",
        API_KEY,
        "--result-url",
        &job.key.to_hex(),
    ])
    .await;
    run.assert_code(0);
    let url = run.stdout.trim();
    assert!(url.starts_with(&base), "{url}");
    let get = server.client().get(url).send().await.unwrap();
    assert_eq!(get.bytes().await.unwrap(), job.input);

    // Without the API key the server refuses; bad flags are usage errors.
    cli::run(&["token", "--server", &base, "--key", &job.key.to_hex()])
        .await
        .assert_code(3);
    cli::run(&["token", "--key", &job.key.to_hex(), "--input", &hash])
        .await
        .assert_code(2);
    cli::run(&["token", "--key", &job.key.to_hex(), "--ttl", "soon"])
        .await
        .assert_code(2);
}
