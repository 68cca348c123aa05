//! The client and its low-level calls, one per protocol step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use upcache_protocol::admin::{PurgeReport, PurgeRequest, PURGE_PATH};
use upcache_protocol::headers::{self as h};
use upcache_protocol::range::ByteRange;
use upcache_protocol::status::{block_path, entry_path, result_path, OPS_PATH};
use upcache_protocol::token::{MintRequest, MintResponse, TOKENS_PATH};
use upcache_protocol::{
    CreateRequest, InputRef, Key, Operation, Problem, ProblemType, State, Status,
};

use crate::error::{Error, Result};
use crate::options::Options;

/// Pieces a request body is handed to the connection in; each one is a sign
/// of progress for the stall watchdog.
const PIECE: usize = 64 * 1024;

/// A client of one upcache server. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    pub(crate) options: Arc<Options>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What an upload request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Body bytes handed to the connection (including any a failure lost).
    pub bytes: u64,
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:8080`) with default options.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_options(base_url, Options::default())
    }

    /// A client with the given options.
    pub fn with_options(base_url: &str, options: Options) -> Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Protocol(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Protocol(format!("header value: {e}")))?;
            headers.insert(name, value);
        }
        if let Some(token) = &options.bearer_token {
            let value = HeaderValue::from_str(&h::bearer(token)).map_err(|_| {
                Error::Protocol("the bearer token has characters a header cannot carry".into())
            })?;
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(options.connect_timeout)
            .pool_max_idle_per_host(options.concurrency.max(1))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            options: Arc::new(options),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends a request that carries no upload, with the response timeout.
    async fn send(&self, req: RequestBuilder, timeout: Duration) -> Result<Response> {
        match tokio::time::timeout(timeout, req.send()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Network(format!("no answer within {timeout:?}"))),
        }
    }

    /// `POST /v1/ops`: looks the entry up, creating it if needed.
    pub async fn create(
        &self,
        input: InputRef,
        operation: &Operation,
        block_size: Option<u64>,
    ) -> Result<Status> {
        let body = CreateRequest {
            input,
            operation: operation.normalized().clone(),
            block_size,
        };
        let req = self
            .request(Method::POST, OPS_PATH)
            .header(CONTENT_TYPE, h::JSON)
            .header(reqwest::header::ACCEPT, &self.options.accept)
            .body(serde_json::to_vec(&body).expect("requests serialize"));
        json(self.send(req, self.options.response_timeout).await?).await
    }

    /// `GET /v1/ops/{key}`: the entry's status.
    pub async fn status(&self, key: &Key) -> Result<Status> {
        json(
            self.send(
                self.request(Method::GET, &entry_path(key)),
                self.options.response_timeout,
            )
            .await?,
        )
        .await
    }

    /// `DELETE /v1/ops/{key}`: cancels an upload or invalidates a result.
    pub async fn delete(&self, key: &Key) -> Result<()> {
        let resp = self
            .send(
                self.request(Method::DELETE, &entry_path(key)),
                self.options.response_timeout,
            )
            .await?;
        expect_success(resp).await.map(drop)
    }

    /// `POST /v1/tokens`: mints an upload token or a presigned result URL
    /// (`spec/tokens.md`). Needs an API key as [`Options::bearer_token`]
    /// (or a token, for its own result's URL).
    pub async fn mint(&self, request: &MintRequest) -> Result<MintResponse> {
        let req = self
            .request(Method::POST, TOKENS_PATH)
            .header(CONTENT_TYPE, h::JSON)
            .body(serde_json::to_vec(request).expect("requests serialize"));
        json(self.send(req, self.options.response_timeout).await?).await
    }

    /// `POST /v1/admin/purge`: removes the entries `request` selects. Needs
    /// an admin key as [`Options::bearer_token`].
    pub async fn purge(&self, request: &PurgeRequest) -> Result<PurgeReport> {
        let req = self
            .request(Method::POST, PURGE_PATH)
            .header(CONTENT_TYPE, h::JSON)
            .body(serde_json::to_vec(request).expect("requests serialize"));
        json(self.send(req, self.options.response_timeout).await?).await
    }

    /// `PUT /v1/ops/{key}/blocks/{n}` with the block's BLAKE3 in
    /// `Upload-Block-Hash` (computed on a blocking thread). Returns the
    /// entry's state after the block, from the answer's `Upload-State`.
    /// `sent` counts the body bytes handed to the connection, even when the
    /// request then fails.
    pub async fn put_block(
        &self,
        key: &Key,
        n: u64,
        block: Bytes,
        sent: &AtomicU64,
    ) -> Result<State> {
        let hashed = block.clone();
        let hash = tokio::task::spawn_blocking(move || blake3::hash(&hashed))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.put_block_hashed(key, n, block, h::BlockHash::Alone(hash.into()), sent)
            .await
    }

    /// [`Client::put_block`] with a hash the caller already has — typically
    /// the block's chaining value from hashing the input block by block
    /// ([`h::BlockHash::Chaining`]), which the server checks without
    /// hashing the block a second time.
    pub async fn put_block_hashed(
        &self,
        key: &Key,
        n: u64,
        block: Bytes,
        hash: h::BlockHash,
        sent: &AtomicU64,
    ) -> Result<State> {
        let req = self
            .request(Method::PUT, &block_path(key, n))
            .header(h::UPLOAD_BLOCK_HASH, hash.to_header());
        let resp = expect_success(self.send_body(req, block, sent).await?).await?;
        let state = resp
            .headers()
            .get(h::UPLOAD_STATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match state.as_deref() {
            Some("uploading") => Ok(State::Uploading),
            Some("processing") => Ok(State::Processing),
            Some("complete") => Ok(State::Complete),
            Some("failed") => Ok(State::Failed),
            _ => Err(Error::Protocol(
                "a block answer without Upload-State".into(),
            )),
        }
    }

    /// `PATCH /v1/ops/{key}`: appends `body` at `offset`; returns the new offset.
    pub async fn append(
        &self,
        key: &Key,
        offset: u64,
        body: Bytes,
        sent: &AtomicU64,
    ) -> Result<u64> {
        let req = self
            .request(Method::PATCH, &entry_path(key))
            .header(CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
            .header(h::UPLOAD_OFFSET, offset);
        let resp = expect_success(self.send_body(req, body, sent).await?).await?;
        header_u64(resp.headers(), h::UPLOAD_OFFSET)
    }

    /// Sends an upload body under the stall watchdog: the request is
    /// abandoned when its body makes no progress for `stall_timeout`, or no
    /// answer comes within `response_timeout` after the last byte.
    async fn send_body(
        &self,
        req: RequestBuilder,
        body: Bytes,
        sent: &AtomicU64,
    ) -> Result<Response> {
        let len = body.len();
        let progress = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let started = Instant::now();
        let pieces: Vec<Bytes> = (0..len)
            .step_by(PIECE)
            .map(|at| body.slice(at..(at + PIECE).min(len)))
            .collect();
        let p = progress.clone();
        let stream = futures_util::stream::iter(pieces).map(move |piece| {
            p.0.fetch_add(piece.len() as u64, Ordering::Relaxed);
            p.1.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(piece)
        });
        let req = req
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        let send = req.send();
        tokio::pin!(send);
        let (stall, respond) = (self.options.stall_timeout, self.options.response_timeout);
        let tick = (stall / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
        let result = loop {
            tokio::select! {
                r = &mut send => break r.map_err(Error::from),
                _ = tokio::time::sleep(tick) => {
                    let done = progress.0.load(Ordering::Relaxed) as usize >= len;
                    let idle = started.elapsed().saturating_sub(Duration::from_millis(progress.1.load(Ordering::Relaxed)));
                    if !done && idle > stall {
                        break Err(Error::Stalled(stall));
                    }
                    if done && idle > respond {
                        break Err(Error::Network(format!("no answer within {respond:?} after the body")));
                    }
                }
            }
        };
        sent.fetch_add(progress.0.load(Ordering::Relaxed), Ordering::Relaxed);
        result
    }

    /// Waits (up to `Prefer: wait` on the server) for the entry to settle,
    /// with a body-less `HEAD` of the result. Returns the status when it is
    /// complete, `None` when the server's wait ran out first.
    pub async fn wait_once(&self, key: &Key) -> Result<Option<Status>> {
        let wait = self.options.wait_per_request;
        let req = self
            .request(Method::HEAD, &result_path(key))
            .header(h::PREFER, prefer_wait(wait.as_secs().max(1)));
        let resp = self.send(req, wait + self.options.response_timeout).await?;
        match resp.status() {
            StatusCode::ACCEPTED => Ok(None),
            s if s.is_success() => self.status(key).await.map(Some),
            // HEAD carries no problem body: read the status for it.
            _ => match self.status(key).await?.error {
                Some(problem) => Err(Error::Problem {
                    status: problem.status,
                    problem: Box::new(problem),
                }),
                None => Err(Error::Protocol(format!(
                    "HEAD of the result answered {}",
                    resp.status()
                ))),
            },
        }
    }

    /// `GET /v1/ops/{key}/result`, from byte `from` on. `None` if not ready.
    pub async fn fetch_result(&self, key: &Key, from: u64) -> Result<Option<Response>> {
        let mut req = self
            .request(Method::GET, &result_path(key))
            .header(h::PREFER, prefer_wait(0));
        if from > 0 {
            let rest = ByteRange::From {
                first: from,
                last: None,
            };
            req = req.header(reqwest::header::RANGE, rest.encode());
        }
        let resp = self.send(req, self.options.response_timeout).await?;
        if resp.status() == StatusCode::ACCEPTED {
            return Ok(None);
        }
        expect_success(resp).await.map(Some)
    }
}

/// Turns a problem answer into an error.
pub(crate) async fn expect_success(resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| {
        let kind = if status >= 500 {
            ProblemType::Internal
        } else {
            ProblemType::MalformedRequest
        };
        let mut p = Problem::new(
            kind,
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        );
        p.status = status;
        p
    });
    Err(Error::Problem {
        status,
        problem: Box::new(problem),
    })
}

async fn json<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T> {
    let resp = expect_success(resp).await?;
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("the answer is not the JSON expected: {e}")))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("the answer lacks a numeric {name}")))
}

/// `Prefer: wait=N`.
fn prefer_wait(seconds: u64) -> String {
    h::Prefer {
        wait: Some(seconds),
        ..h::Prefer::default()
    }
    .encode()
}
