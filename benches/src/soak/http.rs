//! What every scenario does with a request: send it, time it, and check
//! the answer — its status, and for a result its bytes: the input itself
//! for identity (BLAKE3 and `ETag`), a decodable image inside the
//! operation's box otherwise, and always the same bytes as the first time
//! this key's result was seen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE, ETAG};
use reqwest::{Client, RequestBuilder, StatusCode};
use upcache_protocol::headers as h;
use upcache_protocol::InputHash;

use super::raw::{self, RawResponse};
use super::state::{Live, Pool, Variant};
use super::stats::{Kind, Recorder};

/// `Prefer: wait=N` of result requests: below the request timeout.
pub const WAIT_SECS: u64 = 15;
/// How long a client waits for a result (several `Prefer: wait` rounds).
const RESULT_DEADLINE: Duration = Duration::from_secs(120);
/// Bound of every request, from its start to the end of its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of an unexpected body quoted in an error.
const QUOTE: usize = 300;

/// The first unexpected thing a scenario met.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub what: String,
}

pub type Step<T = ()> = Result<T, Failure>;

pub fn fail<T>(kind: Kind, what: impl Into<String>) -> Step<T> {
    Err(Failure {
        kind,
        what: what.into(),
    })
}

/// An answer, read to its end.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Upload-Offset` as a number.
    pub fn offset(&self, kind: Kind) -> Step<u64> {
        match self.header(h::UPLOAD_OFFSET).map(str::parse) {
            Some(Ok(n)) => Ok(n),
            _ => fail(kind, format!("no Upload-Offset in {}", self.brief())),
        }
    }

    /// The status and the start of the body, for an error message.
    pub fn brief(&self) -> String {
        brief(self.status.as_u16(), &self.body)
    }

    /// Fails unless the status is `want`.
    pub fn expect(&self, kind: Kind, want: StatusCode) -> Step {
        if self.status == want {
            return Ok(());
        }
        fail(
            kind,
            format!("expected {}, got {}", want.as_u16(), self.brief()),
        )
    }
}

fn brief(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTE)]);
    format!("{status} {text:?}")
}

/// Everything a client needs; one per run, shared.
pub struct Ctx {
    pub http: Client,
    pub base: String,
    pub addr: SocketAddr,
    pub pool: Arc<Pool>,
    pub stats: Arc<Recorder>,
    /// Largest new input.
    pub max_input: u64,
}

impl Ctx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `req`, reads the whole answer and records its latency.
    pub async fn send(&self, kind: Kind, req: RequestBuilder) -> Step<Answer> {
        let started = Instant::now();
        let answer = async {
            let resp = req.send().await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body: resp.bytes().await?,
            })
        }
        .await;
        match answer {
            Ok(a) => {
                self.stats.request(kind, started.elapsed());
                Ok(a)
            }
            Err(e) => fail(kind, format!("no answer: {e}")),
        }
    }

    /// A one-shot `PUT` of `live`'s input for `variant`, with
    /// `Expect: 100-continue`; `kind` says whether the body should be asked for.
    pub async fn one_shot(&self, kind: Kind, live: &Live, variant: Variant) -> Step<RawResponse> {
        let input = &live.input;
        let path = upcache_protocol::status::entry_path(&input.key(variant));
        let headers = [
            (h::UPLOAD_INPUT_HASH, input.hash.to_hex()),
            (h::UPLOAD_OPERATION, h::encode_operation(&variant.json())),
            (h::PREFER, format!("wait={WAIT_SECS}")),
        ];
        let body = input.bytes();
        let started = Instant::now();
        let sent = tokio::time::timeout(
            REQUEST_TIMEOUT,
            raw::put_expect(self.addr, &path, &headers, &body),
        )
        .await;
        let resp = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return fail(kind, format!("no answer: {e}")),
            Err(_) => return fail(kind, format!("no answer in {REQUEST_TIMEOUT:?}")),
        };
        self.stats.request(kind, started.elapsed());
        let asked = kind == Kind::PutMiss;
        if resp.continued != asked {
            return fail(
                kind,
                format!(
                    "the body was {}asked for (100 Continue), answer {}",
                    if resp.continued { "" } else { "not " },
                    brief(resp.status, &resp.body)
                ),
            );
        }
        Ok(resp)
    }

    /// The answer to a one-shot `PUT`: the result (checked), or a `202`
    /// followed by waiting for it.
    pub async fn one_shot_result(
        &self,
        kind: Kind,
        live: &Live,
        variant: Variant,
        resp: RawResponse,
    ) -> Step {
        match resp.status {
            200 => check_result(
                kind,
                live,
                variant,
                resp.header("etag"),
                resp.header("content-type"),
                &resp.body,
            ),
            202 => self.wait_result(Kind::ResultWait, live, variant).await,
            _ => fail(
                kind,
                format!("expected 200, got {}", brief(resp.status, &resp.body)),
            ),
        }
    }

    /// `GET /v1/ops/{key}/result` with `Prefer: wait` until it is there;
    /// then checks it.
    pub async fn wait_result(&self, kind: Kind, live: &Live, variant: Variant) -> Step {
        let url = self.url(&upcache_protocol::status::result_path(
            &live.input.key(variant),
        ));
        self.wait_result_at(kind, &url, live, variant).await
    }

    /// As [`Ctx::wait_result`], at any result URL (tus has its own).
    pub async fn wait_result_at(
        &self,
        kind: Kind,
        url: &str,
        live: &Live,
        variant: Variant,
    ) -> Step {
        let deadline = Instant::now() + RESULT_DEADLINE;
        loop {
            let req = self
                .http
                .get(url)
                .header(h::PREFER, format!("wait={WAIT_SECS}"));
            let a = self.send(kind, req).await?;
            match a.status {
                StatusCode::OK => {
                    return check_result(
                        kind,
                        live,
                        variant,
                        a.header(ETAG.as_str()),
                        a.header(CONTENT_TYPE.as_str()),
                        &a.body,
                    )
                }
                StatusCode::ACCEPTED if Instant::now() < deadline => {}
                _ => return fail(kind, format!("expected 200, got {}", a.brief())),
            }
        }
    }
}

/// Checks a result's bytes; see the module doc.
pub fn check_result(
    kind: Kind,
    live: &Live,
    variant: Variant,
    etag: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Step {
    let hash = InputHash::of(body);
    let etag = etag.unwrap_or_default().trim_matches('"');
    if etag != hash.to_hex() {
        return fail(
            kind,
            format!("ETag {etag:?} is not the body's BLAKE3 {hash}"),
        );
    }
    match variant.thumb_box() {
        None if hash != live.input.hash => {
            return fail(
                kind,
                format!(
                    "identity result of {} bytes hashes to {hash}, not the input's {}",
                    body.len(),
                    live.input.hash
                ),
            )
        }
        None => {}
        Some((w, h)) => {
            let want = variant.content_type().unwrap_or_default();
            if content_type != Some(want) {
                return fail(kind, format!("Content-Type {content_type:?}, not {want}"));
            }
            let dims = image::load_from_memory(body).map(|i| (i.width(), i.height()));
            match dims {
                Ok((iw, ih)) if iw >= 1 && ih >= 1 && iw <= w && ih <= h => {}
                other => {
                    return fail(
                        kind,
                        format!("the thumbnail is not an image within {w}x{h}: {other:?}"),
                    )
                }
            }
        }
    }
    live.same_result(variant, hash).or_else(|first| {
        fail(
            kind,
            format!("the result is now {hash}, it was {first} (same key)"),
        )
    })
}
