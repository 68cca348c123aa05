//! tus 1.0 at `/files/` (spec/tus.md), spoken by hand: the headers a tus
//! client sends, and what it reads back.
//!
//! Every helper sends `Tus-Resumable: 1.0.0` unless a test builds the request
//! itself with [`Server::tus_bare`]. Header names come from `upcache-protocol`
//! ([`th`] gathers the ones tus uses).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use upcache_protocol::headers::{self as h, OFFSET_OCTET_STREAM, PREFER, PROBLEM_JSON};
use upcache_protocol::tus::Metadata;
use upcache_protocol::Problem;

use crate::api::header;
use crate::server::Server;

/// The collection path.
pub const FILES: &str = "/files/";
/// The protocol version spoken.
pub const VERSION: &str = h::TUS_PROTOCOL_VERSION;

/// The header names a tus client uses (lower case, as `HeaderMap` keys).
pub mod th {
    pub use upcache_protocol::headers::{
        TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_RESUMABLE, TUS_VERSION,
        UPLOAD_CHECKSUM, UPLOAD_CONCAT, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_KEY,
        UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET, X_HTTP_METHOD_OVERRIDE as METHOD_OVERRIDE,
    };
}

/// `Upload-Metadata` of `pairs`, encoded by the protocol crate: `key
/// base64(value)`, comma-separated; an empty value sends the key alone.
pub fn metadata(pairs: &[(&str, &[u8])]) -> String {
    Metadata::new(pairs.iter().map(|(k, v)| (*k, v.to_vec())))
        .expect("valid metadata keys")
        .encode()
}

/// `Upload-Metadata` carrying only `operation` (the JSON, base64), the way
/// tus-js-client sends `metadata: { operation: JSON.stringify(op) }`.
pub fn op_metadata(op: &Value) -> String {
    metadata(&[("operation", op.to_string().as_bytes())])
}

/// Decodes an `Upload-Metadata` value into key → value bytes.
pub fn parse_metadata(value: &str) -> BTreeMap<String, Vec<u8>> {
    let parsed = Metadata::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    parsed
        .pairs()
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect()
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP date
/// format `Upload-Expires` uses.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let (_, rest) = s.trim().split_once(", ")?;
    let f: Vec<&str> = rest.split(' ').collect();
    if f.len() != 5 || f[4] != "GMT" || f[0].len() != 2 || f[2].len() != 4 {
        return None;
    }
    let day: i64 = f[0].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == f[1])? as i64
        + 1;
    let year: i64 = f[2].parse().ok()?;
    let hms: Vec<i64> = f[3]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Asserts `headers` carry `Upload-Expires`, an HTTP date after now and at
/// most `within` from now; returns it.
pub fn assert_expires_within(headers: &HeaderMap, within: Duration) -> SystemTime {
    let value = header(headers, th::UPLOAD_EXPIRES);
    let at = parse_http_date(value)
        .unwrap_or_else(|| panic!("Upload-Expires {value:?} is not an HTTP date"));
    let now = SystemTime::now();
    // HTTP dates have whole seconds: allow one of rounding.
    assert!(
        at + Duration::from_secs(1) > now,
        "Upload-Expires {value:?} is in the past"
    );
    assert!(
        at <= now + within,
        "Upload-Expires {value:?} is more than {within:?} away"
    );
    at
}

/// Asserts the answer has `Tus-Resumable: 1.0.0`.
pub fn assert_resumable(headers: &HeaderMap, what: &str) {
    assert_eq!(
        headers.get(th::TUS_RESUMABLE).and_then(|v| v.to_str().ok()),
        Some(VERSION),
        "Tus-Resumable of the answer to {what}: {headers:?}"
    );
}

/// Asserts `resp` is a tus error with status `status`: `Tus-Resumable`, and an
/// `application/problem+json` body whose `status` member matches. Returns the
/// headers and the problem.
pub async fn assert_tus_problem(resp: Response, status: u16) -> (HeaderMap, Problem) {
    let code = resp.status();
    let headers = resp.headers().clone();
    let url = resp.url().path().to_owned();
    let body = resp.bytes().await.expect("read a problem body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        code.as_u16(),
        status,
        "{url}: expected {status}, got {code}: {text}"
    );
    assert_resumable(&headers, &format!("a {status} on {url}"));
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        ct.starts_with(PROBLEM_JSON),
        "{status} on {url} with content type {ct:?}, not a problem: {text}"
    );
    let problem: Problem = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a problem document ({e}): {text}"));
    assert_eq!(problem.status, status, "problem status member: {text}");
    (headers, problem)
}

/// Asserts `location` is `/files/` and 64 lower-case hex digits.
pub fn assert_upload_location(location: &str) {
    let id = location
        .strip_prefix(FILES)
        .unwrap_or_else(|| panic!("Location {location:?} is not under {FILES}"));
    assert!(
        id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "Location {location:?}: the id is not 64 hex digits"
    );
}

/// What `HEAD /files/{id}` says.
#[derive(Debug, Clone)]
pub struct TusHead {
    pub offset: u64,
    pub length: Option<u64>,
    pub deferred: bool,
    pub key: Option<String>,
    pub headers: HeaderMap,
}

impl TusHead {
    fn from_headers(headers: HeaderMap) -> Self {
        let num = |name: &str| {
            headers.get(name).map(|v| {
                let v = v.to_str().expect("text");
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
            })
        };
        Self {
            offset: num(th::UPLOAD_OFFSET).expect("Upload-Offset on HEAD"),
            length: num(th::UPLOAD_LENGTH),
            deferred: match headers.get(th::UPLOAD_DEFER_LENGTH) {
                None => false,
                Some(v) => {
                    assert_eq!(v, "1", "Upload-Defer-Length");
                    true
                }
            },
            key: headers
                .get(th::UPLOAD_KEY)
                .map(|v| v.to_str().expect("text").to_owned()),
            headers,
        }
    }
}

impl Server {
    /// A request to `path` without any tus header.
    pub fn tus_bare(&self, method: Method, path: &str) -> RequestBuilder {
        self.client().request(method, self.url(path))
    }

    /// A CORS preflight from `origin` for `method` on `path`, asking to send
    /// `headers` (comma-separated). Browsers send no Tus-Resumable here.
    pub async fn preflight(
        &self,
        path: &str,
        origin: &str,
        method: &str,
        headers: &str,
    ) -> reqwest::Response {
        self.tus_bare(Method::OPTIONS, path)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .expect("OPTIONS (preflight)")
    }

    /// A request to `path` with `Tus-Resumable: 1.0.0`.
    pub fn tus(&self, method: Method, path: &str) -> RequestBuilder {
        self.tus_bare(method, path)
            .header(th::TUS_RESUMABLE, VERSION)
    }

    /// `POST /files/` announcing `length` bytes, with `metadata` if not empty.
    pub fn tus_create_request(&self, length: u64, metadata: &str) -> RequestBuilder {
        let req = self
            .tus(Method::POST, FILES)
            .header(th::UPLOAD_LENGTH, length);
        if metadata.is_empty() {
            req
        } else {
            req.header(th::UPLOAD_METADATA, metadata)
        }
    }

    /// Sends a creation request; asserts `201`, `Tus-Resumable` and a
    /// `/files/{64 hex}` `Location`, which it returns with the headers.
    pub async fn tus_created(&self, req: RequestBuilder) -> (String, HeaderMap) {
        let resp = req.send().await.expect("POST /files/");
        let code = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(code, StatusCode::CREATED, "POST /files/: {body}");
        assert_resumable(&headers, "POST /files/");
        let location = header(&headers, LOCATION.as_str()).to_owned();
        assert_upload_location(&location);
        (location, headers)
    }

    /// Creates an upload of `length` bytes; returns its `Location`.
    pub async fn tus_create(&self, length: u64, metadata: &str) -> String {
        self.tus_created(self.tus_create_request(length, metadata))
            .await
            .0
    }

    /// `PATCH location` appending `body` at `offset`.
    pub fn tus_patch(&self, location: &str, offset: u64, body: Vec<u8>) -> RequestBuilder {
        self.tus(Method::PATCH, location)
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(th::UPLOAD_OFFSET, offset)
            .body(body)
    }

    /// Sends a `PATCH`; asserts `204`, `Tus-Resumable` and that `Upload-Offset`
    /// is `want`. Returns the headers.
    pub async fn tus_patched(&self, req: RequestBuilder, want: u64) -> HeaderMap {
        let resp = req.send().await.expect("PATCH");
        let code = resp.status();
        let headers = resp.headers().clone();
        let path = resp.url().path().to_owned();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(code, StatusCode::NO_CONTENT, "PATCH {path}: {body}");
        assert_resumable(&headers, "PATCH");
        assert_eq!(
            crate::api::header_u64(&headers, th::UPLOAD_OFFSET),
            want,
            "Upload-Offset after PATCH {path}"
        );
        headers
    }

    /// `HEAD location`.
    pub async fn tus_head_response(&self, location: &str) -> Response {
        self.tus(Method::HEAD, location)
            .send()
            .await
            .expect("HEAD /files/{id}")
    }

    /// `HEAD location`; asserts `200`, `Tus-Resumable` and
    /// `Cache-Control: no-store`.
    pub async fn tus_head(&self, location: &str) -> TusHead {
        let resp = self.tus_head_response(location).await;
        assert_eq!(resp.status(), StatusCode::OK, "HEAD {location}");
        let headers = resp.headers().clone();
        assert_resumable(&headers, "HEAD");
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "Cache-Control of HEAD {location}"
        );
        TusHead::from_headers(headers)
    }

    /// Creates an upload of `input` with `metadata` and sends it in one
    /// `PATCH`; returns its `Location` and the final `PATCH`'s headers.
    pub async fn tus_upload(&self, input: &[u8], metadata: &str) -> (String, HeaderMap) {
        let location = self.tus_create(input.len() as u64, metadata).await;
        let headers = self
            .tus_patched(
                self.tus_patch(&location, 0, input.to_vec()),
                input.len() as u64,
            )
            .await;
        (location, headers)
    }

    /// `GET location/result`, with `Prefer: wait=N` if given.
    pub fn tus_result_request(&self, location: &str, wait: Option<u64>) -> RequestBuilder {
        let req = self.tus(Method::GET, &format!("{location}/result"));
        match wait {
            Some(w) => req.header(PREFER, format!("wait={w}")),
            None => req,
        }
    }

    /// Waits (`Prefer: wait=30`, up to two minutes) for the result of the
    /// upload at `location`; asserts `200` and returns the answer's headers
    /// and body.
    pub async fn tus_result(&self, location: &str) -> (HeaderMap, Vec<u8>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let resp = self
                .tus_result_request(location, Some(30))
                .send()
                .await
                .expect("GET /files/{id}/result");
            match resp.status() {
                StatusCode::OK => {
                    let headers = resp.headers().clone();
                    return (headers, resp.bytes().await.expect("the result").to_vec());
                }
                StatusCode::ACCEPTED if tokio::time::Instant::now() < deadline => continue,
                code => panic!(
                    "GET {location}/result: {code}: {}",
                    resp.text().await.unwrap_or_default()
                ),
            }
        }
    }
}

/// The key `upcache key FILE --op JSON` prints for `input` and `op`.
pub async fn cli_key(input: &[u8], op: &Value) -> String {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), input).expect("write the input");
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    let run = crate::cli::run(&["key", &path, "--op", &op.to_string()]).await;
    run.assert_code(0);
    run.stdout.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(784_111_777));
        let t = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH);
        let t = parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_835_481_599));
        assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_none());
        assert!(parse_http_date("1994-11-06T08:49:37Z").is_none());
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC").is_none());
    }

    #[test]
    fn metadata_round_trips() {
        let m = metadata(&[("filename", b"a b.png"), ("flag", b""), ("op", b"{}")]);
        assert_eq!(m, "filename YSBiLnBuZw==,flag,op e30=");
        let parsed = parse_metadata(&m);
        assert_eq!(parsed["filename"], b"a b.png");
        assert_eq!(parsed["flag"], b"");
        assert_eq!(parsed["op"], b"{}");
    }
}
