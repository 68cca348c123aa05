//! `GET /v1/ops/{key}/result`: waiting for, and serving, results — with
//! strong ETags (the result's BLAKE3), `If-None-Match`, single byte ranges
//! and immutable caching.

use std::io::SeekFrom;
use std::sync::Arc;

use http::{header, HeaderMap, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use upcache_protocol::headers::{self as h, IMMUTABLE};
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

/// A `Range` that lies outside the result.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single `bytes=` range, resolved against `len`: `Ok(None)` means "serve
/// everything" (no header, or a form we do not serve partially, such as
/// several ranges); `Err` means unsatisfiable.
pub fn parse_range(
    value: Option<&str>,
    len: u64,
) -> std::result::Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (
            len.saturating_sub(n),
            len.checked_sub(1).ok_or(Unsatisfiable)?,
        )
    } else {
        let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| Unsatisfiable)?
                .min(len.saturating_sub(1))
        };
        (start, end)
    };
    if range.0 >= len || range.0 > range.1 {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
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
    let range = parse_range(
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
                format!("bytes */{len}").parse().expect("ascii"),
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
            format!("bytes {}-{}/{len}", start, start + count - 1),
        );
    }
    Ok(b.body(body::streaming(stream)).expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::{parse_range, Unsatisfiable};

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(Unsatisfiable));
    }
}
