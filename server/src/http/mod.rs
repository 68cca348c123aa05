//! The HTTP front end: one serving layer that owns connections (HTTP/1.1 and
//! HTTP/2 on one port), authentication ([`tokens`]: API keys, upload tokens,
//! presigned URLs; image URLs carry their own signature), request spans,
//! metrics and error rendering. Handlers ([`handlers`], [`result`],
//! [`tokens`], [`img`], `demo`) return domain results.

pub mod body;
mod cors;
mod demo;
pub mod handlers;
pub mod img;
pub mod limits;
mod linger;
pub mod result;
pub mod router;
pub mod tokens;
pub mod tus;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument;
use upcache_protocol::headers::{PROBLEM_JSON, UPLOAD_OFFSET, X_HTTP_METHOD_OVERRIDE};
use upcache_protocol::{Problem, ProblemType};

use crate::cache::Core;
use crate::error::Error;
use crate::metrics;
use body::Body;
use router::{route, Endpoint, RouteError};

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains connections.
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_headers(limits::HYPER_MAX_HEADERS)
        .max_buf_size(limits::HYPER_MAX_BUF);
    builder
        .http2()
        .max_concurrent_streams(256)
        .max_header_list_size(limits::HYPER_MAX_HEADER_LIST);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let core = core.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let task = async move {
                    let svc = service_fn(move |req| handle(core.clone(), req));
                    // hyper's own bare errors become problem documents; a
                    // closed connection lingers for a client still sending.
                    let io = limits::ProblemIo::new(linger::Lingering::new(stream));
                    let io = TokioIo::new(io);
                    let conn = builder.serve_connection(io, svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                };
                tokio::spawn(task.instrument(tracing::debug_span!("connection", %peer)));
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

/// A request whose body a handler may take, or leave for the serving layer
/// to settle (see [`settle_unread`]).
pub struct Req {
    pub parts: http::request::Parts,
    body: Option<Incoming>,
    /// Set when the body was handed to a handler as a stream: what became of it.
    streamed: Option<Arc<Mutex<body::Fate>>>,
}

impl Req {
    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    /// Takes the body; polling it is what makes hyper send `100 Continue`.
    pub fn take_body(&mut self) -> Incoming {
        self.body.take().expect("the body is taken once")
    }

    /// Takes the body as a stream of data, tracking how far it is read.
    pub fn take_stream(&mut self) -> body::ByteStream {
        let fate = Arc::default();
        self.streamed = Some(Arc::clone(&fate));
        Box::pin(body::tracked(self.take_body(), fate))
    }

    /// What is left of the body once the handler is done: `(rest, polled)`,
    /// or `None` if nothing is (or nothing can be settled here).
    fn unread(&mut self) -> Option<(body::ByteStream, bool)> {
        use http_body::Body as _;
        if let Some(body) = self.body.take() {
            return (!body.is_end_stream()).then(|| (body::byte_stream(body), false));
        }
        let fate = self.streamed.as_ref()?;
        let mut fate = fate.lock().expect("body fate lock");
        let polled = fate.polled;
        fate.rest.take().map(|rest| (rest, polled))
    }

    /// Whether a body handed to a handler stopped part-way and cannot be
    /// settled (still held elsewhere).
    fn cut_short(&self) -> bool {
        self.streamed.as_ref().is_some_and(|fate| {
            let fate = fate.lock().expect("body fate lock");
            !fate.ended && fate.rest.is_none()
        })
    }
}

async fn handle(core: Arc<Core>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    metrics::HTTP_REQUESTS.inc();
    // At debug: at info, the fmt layer formats a span's fields when it is
    // made, which cost a small hit more than its lookup. Lines about a
    // request at info name its method and path themselves.
    let span = tracing::debug_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let mut req = Req {
            parts,
            body: Some(body),
            streamed: None,
        };
        let origin = cors::allowed_origin(core.config(), req.headers());
        if let Some(preflight) = origin.as_ref().and_then(|o| cors::preflight(&req, o)) {
            return Ok(preflight);
        }
        let mut response = match dispatch(core, &mut req).await {
            Ok(r) => r,
            Err(e) => {
                if let Error::Internal(why) = &e {
                    let (method, path) = (&req.parts.method, req.parts.uri.path());
                    tracing::error!(%method, path, error = %why, "request failed");
                }
                problem_response(&e.to_problem())
            }
        };
        if req.parts.uri.path().starts_with("/files") {
            tus::decorate(&mut response);
        }
        if let Some(origin) = &origin {
            cors::decorate(&mut response, origin);
        }
        if let Some((rest, polled)) = req.unread() {
            settle_unread(rest, polled, &req.parts, &mut response);
        } else if req.cut_short() {
            // The body stopped part-way (the client went away, or it was
            // refused mid-stream): the connection's state is unknown.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // Every request at debug (`UPCACHE_LOG=debug`); refusals and
        // failures at info. Formatting a line per hit costs a hot path more
        // than the rest of a small memory hit's work.
        let status = response.status().as_u16();
        let ms = started.elapsed().as_millis() as u64;
        if status >= 400 {
            tracing::info!(status, ms, "answered");
        } else {
            tracing::debug!(status, ms, "answered");
        }
        Ok(response)
    }
    .instrument(span)
    .await
}

/// Most body bytes read and discarded behind an early answer.
const DRAIN_LIMIT: u64 = 1 << 30;
/// Longest time spent draining, and longest pause of the client meanwhile.
const DRAIN_TIME: Duration = linger::LINGER_TIME;
const DRAIN_IDLE: Duration = linger::LINGER_IDLE;

/// Answers given before the request body was read to its end (hits,
/// refusals found from the headers, a block already stored) must reach a
/// client that is still sending — many (Python's `http.client`, `fetch`)
/// read nothing until they have sent everything. The answer goes out at
/// once, and the rest of the body is read and discarded while it does, so
/// that neither side blocks on a full buffer (the answer may be a large
/// result) and the connection stays usable. The draining is bounded in bytes
/// and time; past the bounds the connection is closed, lingering
/// ([`linger`]) so that the client reads the answer rather than a reset. A
/// client waiting for `100 Continue` sends nothing unless told to: its
/// connection is closed after the answer.
fn settle_unread(
    mut rest: body::ByteStream,
    polled: bool,
    parts: &http::request::Parts,
    response: &mut Response<Body>,
) {
    use futures_util::StreamExt;
    if parts.version == http::Version::HTTP_2 {
        return; // the stream is reset on its own; the connection is unharmed
    }
    let expects = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects && !polled {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return;
    }
    let drain = async move {
        let mut seen = 0u64;
        while let Ok(Some(Ok(bytes))) = tokio::time::timeout(DRAIN_IDLE, rest.next()).await {
            seen += bytes.len() as u64;
            if seen > DRAIN_LIMIT {
                break; // dropped unfinished: hyper closes the connection
            }
        }
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    });
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn dispatch(core: Arc<Core>, req: &mut Req) -> Result<Response<Body>, Error> {
    limits::check_head(&req.parts)?;
    let method = method(req)?;
    let endpoint = match route(&method, req.parts.uri.path()) {
        Ok(e) => e,
        Err(RouteError::NotFound) => {
            return Err(Error::problem(ProblemType::NotFound, "no such resource"))
        }
        Err(RouteError::MethodNotAllowed(allow)) => {
            let mut r = problem_response(&Problem::new(
                ProblemType::MethodNotAllowed,
                format!("{} is not allowed here; allowed: {allow}", req.parts.method),
            ));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return Ok(r);
        }
        Err(RouteError::InvalidKey(k)) => {
            return Err(Error::problem(
                ProblemType::InvalidKey,
                format!("{k:?} is not a key: keys are 64 hex digits"),
            ))
        }
        Err(RouteError::UnknownUpload(id)) => {
            return Err(Error::problem(
                ProblemType::NotFound,
                format!("{id:?} is not an upload of this server"),
            ))
        }
        Err(RouteError::InvalidBlock(n)) => {
            return Err(Error::problem(
                ProblemType::InvalidBlock,
                format!("{n:?} is not a block index"),
            ))
        }
    };
    let grant = match tokens::authorize(&core, req, &endpoint) {
        Ok(grant) => grant,
        Err(refused) => return Ok(*refused),
    };
    match endpoint {
        Endpoint::Create => handlers::create(&core, req, |r, op| grant.admit_create(r, op)).await,
        Endpoint::Status(k) => handlers::status(&core, &k),
        Endpoint::Head(k) => handlers::head(&core, &k).await,
        Endpoint::OneShot(k) => handlers::one_shot(&core, k, req).await,
        Endpoint::Append(k) => handlers::append(&core, k, req).await,
        Endpoint::Delete(k) => handlers::delete(&core, k).await,
        Endpoint::Block(k, n) => handlers::block(&core, k, n, req).await,
        Endpoint::Result(k) => result::get(&core, &k, &req.parts.method, req.headers()).await,
        Endpoint::TusOptions
        | Endpoint::TusCreate
        | Endpoint::TusHead(_)
        | Endpoint::TusAppend(_)
        | Endpoint::TusDelete(_)
        | Endpoint::TusResult(_) => tus::handle(&core, endpoint, req).await,
        Endpoint::Mint => tokens::mint(&core, req, &grant).await,
        Endpoint::Purge => handlers::purge(&core, req).await,
        Endpoint::Demo => demo::serve(&core, req),
        Endpoint::DemoToken => tokens::mint_demo(&core, req).await,
        Endpoint::Metrics => Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(body::full(metrics::render()))
            .expect("valid response")),
        // Degraded is still up: the local tiers serve and take writes.
        Endpoint::Health => Ok(Response::new(body::full(match core.degraded() {
            None => "ok\n".to_owned(),
            Some(why) => format!("ok, degraded: {why}\n"),
        }))),
        Endpoint::Img(path) => img::get(&core, &path, &req.parts.method, req.headers()).await,
    }
}

/// The method a request is handled as. `X-HTTP-Method-Override` on a `POST`
/// is honoured at `/files/` only, for tus clients behind proxies that drop
/// `PATCH` and `DELETE` (spec/tus.md); elsewhere it is refused, so that a
/// `POST` can never delete or append by a header the API does not define.
fn method(req: &Req) -> Result<http::Method, Error> {
    let Some(m) = req.headers().get(X_HTTP_METHOD_OVERRIDE) else {
        return Ok(req.parts.method.clone());
    };
    let path = req.parts.uri.path();
    if path != tus::BASE.trim_end_matches('/') && !path.starts_with(tus::BASE) {
        return Err(Error::problem(
            ProblemType::InvalidHeader,
            "X-HTTP-Method-Override is honoured only at /files/ (tus); send the method itself",
        ));
    }
    if req.parts.method != http::Method::POST {
        return Ok(req.parts.method.clone());
    }
    http::Method::from_bytes(m.as_bytes()).map_err(|_| {
        Error::problem(
            ProblemType::InvalidHeader,
            "X-HTTP-Method-Override: not a method",
        )
    })
}

/// Renders a problem document. A problem carrying an `offset` member also
/// sets `Upload-Offset`, so a client can resume from the error alone.
pub fn problem_response(problem: &Problem) -> Response<Body> {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, PROBLEM_JSON)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(
            serde_json::to_vec(problem).expect("problems serialize"),
        ))
        .expect("valid response");
    if let Some(offset) = problem.extensions.get("offset").and_then(|v| v.as_u64()) {
        r.headers_mut().insert(UPLOAD_OFFSET, offset.into());
    }
    r
}
