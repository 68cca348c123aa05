//! `GET /v1/ops/{key}/result`: waiting for, and serving, results — with
//! strong ETags (the result's BLAKE3), `If-None-Match`, single byte ranges
//! and immutable caching.

use std::io::SeekFrom;
use std::sync::Arc;

use http::{header, HeaderMap, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use upcache_protocol::headers::{self as h, IMMUTABLE};
use upcache_protocol::range::{self, Unsatisfiable};
use upcache_protocol::{Key, Problem, ProblemType, State};

use super::body::{self, Body};
use super::handlers::{accepted, wait_for};
use super::problem_response;
use crate::cache::{failure, Core};
use crate::error::{Error, Result};
use crate::store::meta::EntryRecord;

/// `GET|HEAD /v1/ops/{key}/result`
pub async fn get(core: &Arc<Core>, key: &Key, headers: &HeaderMap) -> Result<Response<Body>> {
    let entry = core.entry(key)?;
    let entry = match entry.state {
        State::Complete | State::Failed => entry,
        _ => core
            .wait(key, wait_for(core, headers))
            .await?
            .ok_or_else(|| Error::problem(ProblemType::NotFound, "the entry was deleted"))?,
    };
    match entry.state {
        State::Complete => serve(core, key, &entry, headers).await,
        State::Failed => Ok(problem_response(&failure(&entry))),
        _ => {
            let upload = if entry.state == State::Uploading {
                core.meta.upload(key)?
            } else {
                None
            };
            Ok(accepted(&core.status_of(key, &entry, upload.as_ref())))
        }
    }
}

/// Serves a complete entry's result.
pub async fn serve(
    core: &Arc<Core>,
    key: &Key,
    entry: &EntryRecord,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    let (Some(result), Some(path)) = (entry.result.as_ref(), core.result_file(key, entry)) else {
        return Err(Error::Internal("complete entry without a result".into()));
    };
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
    let mut file = tokio::fs::File::open(&path).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let stream = ReaderStream::with_capacity(file.take(count), 256 * 1024);
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
