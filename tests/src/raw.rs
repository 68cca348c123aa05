//! A hand-written HTTP/1.1 client over a plain TCP socket, for what ordinary
//! clients hide: `Expect: 100-continue` (seeing whether the server answers
//! before the body is sent), bodies cut short, connections dropped mid-request.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use upcache_protocol::headers as h;
use upcache_protocol::{Problem, ProblemType};

use crate::data::Job;
use crate::STEP_TIMEOUT;

/// Headers of a one-shot `PUT` of `job` announcing its body with
/// `Expect: 100-continue` (send them with [`RawConn::send_head`]).
pub fn oneshot_headers(job: &Job) -> Vec<(&'static str, String)> {
    vec![
        ("content-length", job.len().to_string()),
        ("expect", "100-continue".to_owned()),
        ("content-type", "application/octet-stream".to_owned()),
        (h::UPLOAD_INPUT_HASH, job.hash.to_hex()),
        (h::UPLOAD_OPERATION, job.op_header()),
    ]
}

/// Headers of a `PATCH` of `len` bytes at `offset`.
pub fn patch_headers(offset: u64, len: u64) -> Vec<(&'static str, String)> {
    vec![
        ("content-length", len.to_string()),
        ("content-type", h::OFFSET_OCTET_STREAM.to_owned()),
        (h::UPLOAD_OFFSET, offset.to_string()),
    ]
}

/// One HTTP/1.1 connection.
pub struct RawConn {
    stream: TcpStream,
    addr: SocketAddr,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

/// A response (or an interim `1xx` response, which has no body).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 100 Continue`.
    pub status_line: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts that this is the problem `kind` (status, media type, `type`).
    pub fn assert_problem(&self, kind: ProblemType) -> Problem {
        let text = self.text();
        assert_eq!(
            self.status,
            kind.status(),
            "expected {}, got `{}`: {text}",
            kind.slug(),
            self.status_line
        );
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(h::PROBLEM_JSON),
            "content type {ct:?} of a {} problem",
            kind.slug()
        );
        let problem: Problem = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a problem document ({e}): {text}"));
        assert_eq!(problem.type_uri, kind.uri(), "problem type: {text}");
        problem
    }
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            addr,
            buf: Vec::new(),
        }
    }

    /// Sends a request head: `METHOD path HTTP/1.1`, `Host`, then `headers`.
    pub async fn send_head(&mut self, method: &str, path: &str, headers: &[(&str, String)]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.send(head.as_bytes()).await;
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(STEP_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("timed out sending")
            .expect("send");
    }

    /// Sends bytes; an error (the server closed the connection) is returned, not a panic.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("timed out sending")
    }

    /// Half-closes the connection: the server sees the end of the request stream
    /// but can still answer.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Reads one response (interim or final) with its body; panics after
    /// [`STEP_TIMEOUT`] or if the connection closes first.
    pub async fn read_response(&mut self) -> RawResponse {
        match self.try_read_response(STEP_TIMEOUT).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the connection closed before a response arrived"),
            Err(_) => panic!("no response within {STEP_TIMEOUT:?}"),
        }
    }

    /// Reads one response; `Ok(None)` if the connection closed (or was reset)
    /// first, `Err(())` if nothing complete arrived within `within`.
    pub async fn try_read_response(&mut self, within: Duration) -> Result<Option<RawResponse>, ()> {
        tokio::time::timeout(within, self.read_response_inner())
            .await
            .map_err(|_| ())
    }

    /// Whether the server stays silent (sends no byte and keeps the connection
    /// open) for `dur`.
    pub async fn is_silent_for(&mut self, dur: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        // Timing out means no byte (and no end of stream) arrived.
        tokio::time::timeout(dur, self.stream.peek(&mut byte))
            .await
            .is_err()
    }

    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            self.fill().await?;
        }
    }

    async fn read_exact_buf(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn read_response_inner(&mut self) -> Option<RawResponse> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut resp = RawResponse {
            status,
            status_line,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Some(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.read_line().await?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    while !self.read_line().await?.is_empty() {} // trailers
                    break;
                }
                let chunk = self.read_exact_buf(size).await?;
                resp.body.extend_from_slice(&chunk);
                self.read_line().await?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length {len:?}"));
            resp.body = self.read_exact_buf(len).await?;
        } else {
            while self.fill().await.is_some() {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }
}
