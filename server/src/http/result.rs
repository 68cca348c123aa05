//! `GET /v1/ops/{key}/result`: waiting for, and serving, results — with
//! strong ETags (the result's BLAKE3), `If-None-Match`, single byte ranges
//! and immutable caching.

use std::sync::Arc;

use http::{header, HeaderMap, Response, StatusCode};
use upcache_protocol::headers::{self as h, IMMUTABLE};
use upcache_protocol::range::{self, Unsatisfiable};
use upcache_protocol::{Key, Problem, ProblemType, State};

use super::body::{self, Body};
use super::handlers::{accepted, wait_for};
use super::problem_response;
use crate::cache::{Core, Outcome, ResultView};
use crate::error::Result;

/// `GET|HEAD /v1/ops/{key}/result`
pub async fn get(core: &Arc<Core>, key: &Key, headers: &HeaderMap) -> Result<Response<Body>> {
    answer(
        core,
        core.outcome(key, wait_for(core, headers)).await?,
        headers,
    )
    .await
}

/// The answer of a result request once its entry is where it is.
pub async fn answer(
    core: &Arc<Core>,
    outcome: Outcome,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    match outcome {
        Outcome::Ready(result) => serve(core, &result, headers).await,
        Outcome::Failed(problem) => Ok(problem_response(&problem)),
        Outcome::Pending(status) => Ok(accepted(&status)),
    }
}

/// Serves a complete entry's result.
pub async fn serve(
    core: &Arc<Core>,
    result: &ResultView,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    let key = result.key;
    let etag = format!("\"{}\"", result.blake3);
    let builder = || {
        Response::builder()
            .header(header::ETAG, &etag)
            .header(header::CACHE_CONTROL, IMMUTABLE)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(h::UPLOAD_KEY, key.to_hex())
            .header(h::UPLOAD_STATE, State::Complete.as_str())
    };
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm.is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == etag || t.trim() == "*" || t.trim() == format!("W/{etag}"))
    }) {
        return Ok(builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(body::empty())
            .expect("valid response"));
    }
    let len = result.length;
    let range = range::resolve(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
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
    let stream = core.read_result(result, Some(start..start + count)).await?;
    let mut b = builder()
        .status(status)
        .header(header::CONTENT_TYPE, &result.content_type)
        .header(header::CONTENT_LENGTH, count);
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            range::content_range(start, start + count - 1, len),
        );
    }
    Ok(b.body(body::streaming(stream)).expect("valid response"))
}
