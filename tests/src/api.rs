//! Request helpers for the `/v1` API, the way a client uses it.
//!
//! Helpers named `*_request` return a [`reqwest::RequestBuilder`] so a test can
//! add or break headers; the others send and check the happy path.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{RequestBuilder, Response, StatusCode};
use upcache_protocol::blocks::Layout;
use upcache_protocol::headers::{self as h, PREFER};
use upcache_protocol::status::{block_path, entry_path, result_path, OPS_PATH};
use upcache_protocol::{Key, Problem, ProblemType, State, Status};

use crate::data::Job;
use crate::server::Server;

/// Names of the server's Prometheus counters this suite reads.
pub mod metrics {
    pub const OPERATIONS_STARTED: &str = "upcache_operations_started_total";
    pub const OPERATIONS_COMPLETED: &str = "upcache_operations_completed_total";
    pub const OPERATIONS_FAILED: &str = "upcache_operations_failed_total";
    pub const BLOCKS_STORED: &str = "upcache_blocks_stored_total";
    pub const BYTES_STORED: &str = "upcache_bytes_stored_total";
    pub const HTTP_REQUESTS: &str = "upcache_http_requests_total";
}

/// The `Upload-*` headers of a `HEAD /v1/ops/{key}` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub key: String,
    pub state: State,
    pub offset: u64,
    pub length: u64,
    pub block_size: u64,
    pub missing: String,
    pub digest: String,
    pub cache_control: String,
}

/// The value of a header that must be present, as text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing in {headers:?}"))
        .to_str()
        .unwrap_or_else(|_| panic!("header {name} is not text"))
}

/// A header that must hold a number.
pub fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    let v = header(headers, name);
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("header {name}: {v:?} is not a number"))
}

/// Parses an `Upload-State` value.
pub fn parse_state(s: &str) -> State {
    [
        State::Uploading,
        State::Processing,
        State::Complete,
        State::Failed,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
    .unwrap_or_else(|| panic!("unknown state {s:?}"))
}

impl HeadInfo {
    /// Reads the headers of a successful `HEAD`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            key: header(headers, h::UPLOAD_KEY).to_owned(),
            state: parse_state(header(headers, h::UPLOAD_STATE)),
            offset: header_u64(headers, h::UPLOAD_OFFSET),
            length: header_u64(headers, h::UPLOAD_LENGTH),
            block_size: header_u64(headers, h::UPLOAD_BLOCK_SIZE),
            missing: header(headers, h::UPLOAD_MISSING).to_owned(),
            digest: header(headers, h::UPLOAD_DIGEST).to_owned(),
            cache_control: header(headers, "cache-control").to_owned(),
        }
    }
}

/// Reads a problem document of any type; asserts the media type and that the
/// status member matches the HTTP status.
pub async fn any_problem(resp: Response) -> (HeaderMap, Problem) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("read a problem body");
    let text = String::from_utf8_lossy(&body);
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        ct.starts_with(h::PROBLEM_JSON),
        "{status} with content type {ct:?}, not a problem: {text}"
    );
    let problem: Problem = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a problem document ({e}): {text}"));
    assert_eq!(
        problem.status,
        status.as_u16(),
        "problem status member: {text}"
    );
    (headers, problem)
}

/// Asserts that `resp` is the problem `kind`: its status, the
/// `application/problem+json` type and the `type` URI. Returns the headers and
/// the document for further checks.
pub async fn assert_problem(resp: Response, kind: ProblemType) -> (HeaderMap, Problem) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("read a problem body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        status.as_u16(),
        kind.status(),
        "expected {} ({}), got {status}: {text}",
        kind.slug(),
        kind.status()
    );
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        ct.starts_with(h::PROBLEM_JSON),
        "content type {ct:?} of a {} problem: {text}",
        kind.slug()
    );
    let problem: Problem = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a problem document ({e}): {text}"));
    assert_eq!(problem.type_uri, kind.uri(), "problem type: {text}");
    assert_eq!(
        problem.status,
        kind.status(),
        "problem status member: {text}"
    );
    (headers, problem)
}

impl Server {
    /// `POST /v1/ops` with any JSON body.
    pub async fn post_create(&self, body: &serde_json::Value) -> Response {
        self.client()
            .post(self.url(OPS_PATH))
            .json_body(body)
            .send()
            .await
            .expect("POST /v1/ops")
    }

    /// Creates (or looks up) `job`'s entry; asserts 200/201 and the `Location`.
    pub async fn create(&self, job: &Job, block_size: Option<u64>) -> (StatusCode, Status) {
        let resp = self.post_create(&job.create_request(block_size)).await;
        let code = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = resp.text().await.expect("read the create answer");
        assert!(
            code == StatusCode::CREATED || code == StatusCode::OK,
            "POST /v1/ops: {code}: {body}"
        );
        assert_eq!(
            location.as_deref(),
            Some(entry_path(&job.key).as_str()),
            "Location of POST /v1/ops"
        );
        let status: Status =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("status document ({e}): {body}"));
        assert_eq!(
            status.key, job.key,
            "the server derives the same key as the client"
        );
        (code, status)
    }

    /// `HEAD /v1/ops/{key}`.
    pub async fn head(&self, key: &Key) -> Response {
        self.client()
            .head(self.url(&entry_path(key)))
            .send()
            .await
            .expect("HEAD")
    }

    /// `HEAD /v1/ops/{key}`, asserting 200.
    pub async fn head_info(&self, key: &Key) -> HeadInfo {
        let resp = self.head(key).await;
        assert_eq!(resp.status(), StatusCode::OK, "HEAD {key}");
        HeadInfo::from_headers(resp.headers())
    }

    /// `GET /v1/ops/{key}`.
    pub async fn get_status(&self, key: &Key) -> Response {
        self.client()
            .get(self.url(&entry_path(key)))
            .send()
            .await
            .expect("GET status")
    }

    /// `GET /v1/ops/{key}`, asserting 200.
    pub async fn status(&self, key: &Key) -> Status {
        let resp = self.get_status(key).await;
        let code = resp.status();
        let body = resp.text().await.expect("read status");
        assert_eq!(code, StatusCode::OK, "GET status of {key}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status document ({e}): {body}"))
    }

    /// A one-shot `PUT /v1/ops/{key}` of the whole input (no `Expect`).
    pub fn oneshot_request(&self, job: &Job) -> RequestBuilder {
        self.client()
            .put(self.url(&entry_path(&job.key)))
            .header(h::UPLOAD_INPUT_HASH, job.hash.to_hex())
            .header(h::UPLOAD_OPERATION, job.op_header())
            .body(job.input.clone())
    }

    /// One-shot upload; asserts 200 and returns the result bytes.
    pub async fn oneshot(&self, job: &Job) -> Vec<u8> {
        let resp = self
            .oneshot_request(job)
            .send()
            .await
            .expect("one-shot PUT");
        let code = resp.status();
        let body = resp.bytes().await.expect("read the result").to_vec();
        assert_eq!(
            code,
            StatusCode::OK,
            "one-shot PUT: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
        body
    }

    /// `PATCH /v1/ops/{key}` appending `body` at `offset`.
    pub fn patch_request(&self, key: &Key, offset: u64, body: Vec<u8>) -> RequestBuilder {
        self.client()
            .patch(self.url(&entry_path(key)))
            .header(h::UPLOAD_OFFSET, offset)
            .header(CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
            .body(body)
    }

    /// `PUT /v1/ops/{key}/blocks/{n}` with the right bytes and `Upload-Block-Hash`.
    pub fn block_request(&self, job: &Job, layout: &Layout, n: u64) -> RequestBuilder {
        self.client()
            .put(self.url(&block_path(&job.key, n)))
            .header(h::UPLOAD_BLOCK_HASH, job.block_hash(layout, n))
            .body(job.block(layout, n).to_vec())
    }

    /// Uploads block `n`; asserts 204 and returns the answer's headers.
    pub async fn put_block(&self, job: &Job, layout: &Layout, n: u64) -> HeaderMap {
        let resp = self
            .block_request(job, layout, n)
            .send()
            .await
            .expect("PUT block");
        let code = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(code, StatusCode::NO_CONTENT, "PUT block {n}: {body}");
        headers
    }

    /// `GET /v1/ops/{key}/result`, with `Prefer: wait=N` if given.
    pub fn result_request(&self, key: &Key, wait: Option<u64>) -> RequestBuilder {
        let req = self.client().get(self.url(&result_path(key)));
        match wait {
            Some(w) => req.header(PREFER, format!("wait={w}")),
            None => req,
        }
    }

    /// Waits (up to two minutes) for the result and returns it; asserts 200.
    pub async fn wait_result(&self, key: &Key) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let resp = self
                .result_request(key, Some(30))
                .send()
                .await
                .expect("GET result");
            match resp.status() {
                StatusCode::OK => return resp.bytes().await.expect("read the result").to_vec(),
                StatusCode::ACCEPTED if tokio::time::Instant::now() < deadline => continue,
                code => panic!(
                    "GET result of {key}: {code}: {}",
                    resp.text().await.unwrap_or_default()
                ),
            }
        }
    }

    /// `DELETE /v1/ops/{key}`.
    pub async fn delete(&self, key: &Key) -> Response {
        self.client()
            .delete(self.url(&entry_path(key)))
            .send()
            .await
            .expect("DELETE")
    }

    /// The sum of every sample of counter `name` on `GET /metrics` (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let resp = self
            .client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), StatusCode::OK, "GET /metrics");
        let text = resp.text().await.expect("read /metrics");
        parse_counter(&text, name)
    }
}

/// Sums the samples of `name` in Prometheus text exposition format.
pub fn parse_counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if let Some(labels) = rest.strip_prefix('{') {
                &labels[labels.find('}')? + 1..]
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None; // a longer name sharing the prefix
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Sets a JSON body without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, body: &serde_json::Value) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &serde_json::Value) -> Self {
        self.header(CONTENT_TYPE, h::JSON).body(body.to_string())
    }
}

/// A fresh server with one entry in the middle of an upload: `blocks` blocks
/// of `block_size` bytes (the last one of 100 bytes) of pseudo-random bytes
/// from `seed`, of which blocks 0 and 2 are in. Returns the entry's `HEAD` as
/// it then is.
pub async fn mid_upload(blocks: u64, block_size: u64, seed: u64) -> (Server, Job, HeadInfo) {
    let server = Server::start().await;
    let len = (blocks - 1) * block_size + 100;
    let job = Job::identity(crate::data::pseudo_random(len as usize, seed));
    let layout = job.layout(block_size);
    server.create(&job, Some(block_size)).await;
    server.put_block(&job, &layout, 0).await;
    server.put_block(&job, &layout, 2).await;
    let head = server.head_info(&job.key).await;
    (server, job, head)
}

#[cfg(test)]
mod tests {
    use super::parse_counter;

    #[test]
    fn counters_are_summed_over_labels() {
        let text = "# TYPE a_total counter\na_total{op=\"x\"} 2\na_total{op=\"y\"} 3\na_total_more 9\nb 1\n";
        assert_eq!(parse_counter(text, "a_total"), 5.0);
        assert_eq!(parse_counter("a_total 7 1700000000\n", "a_total"), 7.0);
        assert_eq!(parse_counter("", "a_total"), 0.0);
    }
}
