//! `GET /v1/ops/{key}/result`: waiting for, and serving, results — with
//! strong ETags (the result's BLAKE3), `If-None-Match`, single byte ranges
//! and immutable caching; a `GET` of a large result may be answered with a
//! `307` to a presigned URL of the S3 tier instead (`s3.redirect_above`,
//! [`Core::redirect`]).

use std::sync::Arc;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use upcache_protocol::headers::{self as h, IMMUTABLE};
use upcache_protocol::range::{self, Unsatisfiable};
use upcache_protocol::{Key, Problem, ProblemType, State};

use super::body::{self, Body};
use super::handlers::{accepted, wait_for};
use super::problem_response;
use crate::cache::{Core, Outcome, ResultBody, ResultView};
use crate::error::Result;

static UPLOAD_KEY: HeaderName = HeaderName::from_static(h::UPLOAD_KEY);
static UPLOAD_STATE: HeaderName = HeaderName::from_static(h::UPLOAD_STATE);

/// `GET|HEAD /v1/ops/{key}/result` (and the result URLs of tus files and
/// images); `method` is the request's.
pub async fn get(
    core: &Arc<Core>,
    key: &Key,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    get_as(core, key, method, headers, true).await
}

/// [`get`], never redirecting when `may_redirect` is false (a caller that
/// adds headers to the result the bucket would not send).
pub async fn get_as(
    core: &Arc<Core>,
    key: &Key,
    method: &Method,
    headers: &HeaderMap,
    may_redirect: bool,
) -> Result<Response<Body>> {
    let head = method == Method::HEAD;
    let redirect = may_redirect && !head;
    // A hit: the ready index has the result, no sled read, no waiting.
    if let Some(ready) = core.ready(key) {
        return deliver(core, &ready, headers, head, redirect).await;
    }
    match core.outcome(key, wait_for(core, headers)).await? {
        Outcome::Ready(result) => deliver(core, &result, headers, head, redirect).await,
        outcome => answer_to(core, outcome, headers, head).await,
    }
}

/// A result for a `GET` or `HEAD` of a result URL: a redirect to the S3
/// tier where one applies (and `redirect` allows it), else the result
/// served here.
async fn deliver(
    core: &Arc<Core>,
    result: &ResultView,
    headers: &HeaderMap,
    head: bool,
    redirect: bool,
) -> Result<Response<Body>> {
    if redirect {
        if let Some(r) = redirect_to_bucket(core, result, headers).await {
            return Ok(r);
        }
    }
    serve(core, result, headers, head).await
}

/// A `307` to a presigned URL of the result in the S3 tier, if the service
/// hands this result out that way and the bucket can answer this request
/// as this server would: the bucket serves the bytes and a single range,
/// but knows nothing of our validators, so conditional requests stay here,
/// and so do range headers this server would not honour as one range.
async fn redirect_to_bucket(
    core: &Arc<Core>,
    result: &ResultView,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    if !core.may_redirect(result) || conditional(headers) {
        return None;
    }
    if let Some(v) = headers.get(header::RANGE) {
        if !matches!(range::resolve(v.to_str().ok(), result.length), Ok(Some(_))) {
            return None;
        }
    }
    let to = core.redirect(result).await?;
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let hs = r.headers_mut();
    hs.insert(header::LOCATION, HeaderValue::from_str(&to.url).ok()?);
    hs.insert(header::ETAG, HeaderValue::from_str(&result.etag).ok()?);
    hs.insert(
        header::CACHE_CONTROL,
        h::redirect_cache_control(to.ttl.as_secs())
            .parse()
            .expect("ascii"),
    );
    hs.insert(
        UPLOAD_KEY.clone(),
        HeaderValue::from_str(&result.key_hex).ok()?,
    );
    hs.insert(
        UPLOAD_STATE.clone(),
        HeaderValue::from_static(State::Complete.as_str()),
    );
    hs.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Some(r)
}

/// Whether the request has a precondition only this server can judge.
fn conditional(headers: &HeaderMap) -> bool {
    [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_RANGE,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|n| headers.contains_key(n))
}

/// The answer of a one-shot upload that waited for its result: the bytes
/// themselves (a redirect would have the client send its upload again).
pub async fn answer(
    core: &Arc<Core>,
    outcome: Outcome,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    answer_to(core, outcome, headers, false).await
}

async fn answer_to(
    core: &Arc<Core>,
    outcome: Outcome,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>> {
    match outcome {
        Outcome::Ready(result) => serve(core, &result, headers, head).await,
        Outcome::Failed(problem) => Ok(problem_response(&problem)),
        Outcome::Pending(status) => Ok(accepted(&status)),
    }
}

/// Serves a complete entry's result. The response is put together from
/// values the view formatted once; a result held in memory is sent as one
/// shared buffer, and a `HEAD` reads no bytes at all.
pub async fn serve(
    core: &Arc<Core>,
    result: &ResultView,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>> {
    let etag = result.etag.as_str();
    let decorate = |r: &mut Response<Body>| {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(v) = HeaderValue::from_str(&result.key_hex) {
            h.insert(UPLOAD_KEY.clone(), v);
        }
        h.insert(
            UPLOAD_STATE.clone(),
            HeaderValue::from_static(State::Complete.as_str()),
        );
    };
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == etag || t == "*" || t.strip_prefix("W/") == Some(etag))
    }) {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        decorate(&mut r);
        return Ok(r);
    }
    let len = result.length;
    let range = match headers.get(header::RANGE) {
        None => Ok(None),
        Some(v) => range::resolve(v.to_str().ok(), len),
    };
    let (status, start, count) = match range {
        Err(Unsatisfiable) => {
            let mut r = problem_response(&Problem::new(
                ProblemType::RangeNotSatisfiable,
                format!("the result has {len} bytes"),
            ));
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                range::unsatisfied_range(len).parse().expect("ascii"),
            );
            return Ok(r);
        }
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
    };
    let body = if head {
        body::empty()
    } else {
        match core.read_result(result, Some(start..start + count)).await? {
            ResultBody::Bytes(bytes) => body::full(bytes),
            ResultBody::Stream(stream) => body::streaming(stream),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    decorate(&mut r);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&result.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            range::content_range(start, start + count - 1, len)
                .parse()
                .expect("ascii"),
        );
    }
    Ok(r)
}
