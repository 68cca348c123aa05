//! Limits on request heads, and problem documents for the errors hyper
//! answers by itself.
//!
//! Two layers, so that a client gets `application/problem+json` with a
//! type for every error it can provoke (spec/protocol.md §11, §12.1):
//!
//! 1. [`check_head`]: our own limits on the request target and the header
//!    section, below hyper's (see [`HYPER_MAX_HEADERS`] and friends), so a
//!    request over them reaches our code and is refused with
//!    `414 uri-too-long` or `431 headers-too-large`.
//! 2. [`ProblemIo`]: on HTTP/1.1, hyper answers a request head it cannot
//!    parse (a bad `Content-Length`, a malformed method, target, version or
//!    header; a head beyond its buffer) with a bare `400`/`414`/`431` before
//!    any service runs, then closes the connection. The connection's writer
//!    recognises exactly that answer and sends a problem document instead.
//!
//! What is still left to hyper and h2 (HTTP/2 limits and malformed streams,
//! heads that never complete) is written down in spec/protocol.md §12.1.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use upcache_protocol::headers::PROBLEM_JSON;
use upcache_protocol::{Problem, ProblemType};

use crate::error::Error;

/// Longest request target (path and query) served: 8 KiB, like common proxies.
pub const MAX_URI: usize = 8 << 10;
/// Largest header section served: names, values and 4 bytes of framing each.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Most header fields served.
pub const MAX_HEADER_FIELDS: usize = 100;

/// hyper's HTTP/1 limit on header fields, one above [`MAX_HEADER_FIELDS`]
/// so that ours answers first (on a connection that stays open) for a head
/// of exactly one field too many; more get hyper's `431`, which
/// [`ProblemIo`] turns into the same problem. No higher: hyper prepares
/// this many slots for every request it parses, and at 1000 that was a
/// measurable part of serving a small hit.
pub const HYPER_MAX_HEADERS: usize = MAX_HEADER_FIELDS + 1;
/// hyper's HTTP/1 read buffer (its limit on a request head), above ours.
/// It also bounds the body chunks hyper hands over: larger, it costs memory
/// per upload stream (chunks queue ahead of the writer) and gains no speed.
pub const HYPER_MAX_BUF: usize = 400 << 10;
/// HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`, above [`MAX_HEADER_BYTES`] so that
/// ours answers first; beyond it the h2 library answers a bare `431`.
pub const HYPER_MAX_HEADER_LIST: u32 = 256 << 10;

/// Refuses a request whose target or header section is over our limits.
pub fn check_head(parts: &http::request::Parts) -> Result<(), Error> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return Err(Error::problem(
            ProblemType::UriTooLong,
            format!("the request target has {target} bytes; at most {MAX_URI} are served"),
        ));
    }
    let fields = parts.headers.len();
    let bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if fields > MAX_HEADER_FIELDS || bytes > MAX_HEADER_BYTES {
        return Err(Error::problem(
            ProblemType::HeadersTooLarge,
            format!(
                "{fields} header fields, {bytes} bytes; at most {MAX_HEADER_FIELDS} fields \
                 and {MAX_HEADER_BYTES} bytes are served"
            ),
        ));
    }
    Ok(())
}

/// The problem document that replaces hyper's bare answer `head`, if `head`
/// is one: `HTTP/1.1 400|414|431 <reason>`, `content-length: 0`, a `date`
/// of the last few seconds, perhaps `connection: close`, and nothing else. hyper writes nothing else in
/// that form (our own answers always carry a `content-type`); the date check
/// keeps a response body that happens to hold those bytes from matching.
fn replacement(head: &[u8], now: SystemTime) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let text = text.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let (code, reason) = status_line.split_once(' ')?;
    let (kind, detail) = match code {
        "400" => (
            ProblemType::MalformedRequest,
            "the request head cannot be parsed: check Content-Length, Transfer-Encoding, \
             the method, the target, the HTTP version and the header syntax",
        ),
        "414" => (ProblemType::UriTooLong, "the request target is too long"),
        "431" => (
            ProblemType::HeadersTooLarge,
            "the request head is too large",
        ),
        _ => return None,
    };
    let recent = |date: &str| {
        (0..3).any(|ago| httpdate::fmt_http_date(now - Duration::from_secs(ago)) == date)
    };
    let (mut length, mut dated, mut closing) = (false, false, false);
    for line in lines {
        match line.split_once(": ")? {
            ("content-length", "0") if !length => length = true,
            ("date", date) if !dated && recent(date) => dated = true,
            ("connection", "close") if !closing => closing = true,
            _ => return None,
        }
    }
    if !(length && dated) {
        return None;
    }
    let body = serde_json::to_vec(&Problem::new(kind, detail)).expect("problems serialize");
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\ncache-control: no-store\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend(body);
    Some(out)
}

/// A connection whose writer sends a problem document in place of hyper's
/// bare answer to an unparsable HTTP/1 request head. Reads pass through.
pub struct ProblemIo<S> {
    inner: S,
    /// Our answer being written: its bytes, how many went out, and the
    /// length of hyper's answer to report once it is all out.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ProblemIo<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> ProblemIo<S> {
    /// Writes our pending answer, then reports hyper's as written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (ours, written, claimed) = self.pending.as_mut().expect("an answer is pending");
        while *written < ours.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &ours[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let claimed = *claimed;
        self.pending = None;
        Poll::Ready(Ok(claimed))
    }

    fn intercept(&mut self, buf: &[u8]) -> bool {
        // hyper's bare answers are one short write; everything else (every
        // response body) passes at the cost of this comparison.
        let candidate = buf.len() <= 256 && buf.starts_with(b"HTTP/1.1 4");
        if candidate && self.pending.is_none() {
            if let Some(ours) = replacement(buf, SystemTime::now()) {
                self.pending = Some((ours, 0, buf.len()));
            }
        }
        self.pending.is_some()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.intercept(buf) {
            return self.poll_pending(cx);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's bare answer is a head alone: one non-empty slice.
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (parts.next(), parts.next()) {
            if self.intercept(only) {
                return self.poll_pending(cx);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper_answer(code: &str, date: &str) -> Vec<u8> {
        format!("HTTP/1.1 {code} Reason\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        for (code, slug) in [
            ("400", "malformed-request"),
            ("414", "uri-too-long"),
            ("431", "headers-too-large"),
        ] {
            let ours = replacement(&hyper_answer(code, &date), now).expect(code);
            let text = String::from_utf8(ours).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {code} Reason\r\n")));
            assert!(text.contains("content-type: application/problem+json\r\n"));
            assert!(
                text.contains(&format!("urn:upcache:problem:{slug}")),
                "{text}"
            );
        }
        let old = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(replacement(&hyper_answer("400", &old), now), None);
        assert_eq!(replacement(&hyper_answer("404", &date), now), None);
        let with_type = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"
        );
        assert_eq!(replacement(with_type.as_bytes(), now), None);
        let with_body = [hyper_answer("400", &date), b"x".to_vec()].concat();
        assert_eq!(replacement(&with_body, now), None);
    }
}
