//! A one-request HTTP/1.1 client that honours `Expect: 100-continue`: it
//! sends the headers, and the body only if the server answers `100 Continue`.
//!
//! reqwest (hyper's client) sends a body straight after the headers, so it
//! cannot show the protocol's 0-byte cache hit (§7.4): a hit must be
//! answered before any byte of the input leaves the client. This client
//! says whether the body was asked for ([`RawResponse::continued`]). One
//! connection per request, `Connection: close`, so a server that closes
//! after an early answer (as §7.4 allows) costs nothing.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;

/// A final response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server answered `100 Continue` and the body was sent.
    pub continued: bool,
}

impl RawResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `PUT path` on `addr` with `headers`, `Content-Length` and
/// `Expect: 100-continue`; `body` is sent only after a `100 Continue`.
/// The caller bounds the time.
pub async fn put_expect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;

    let mut buf = Vec::new();
    let mut continued = false;
    let (status, headers) = loop {
        let (status, headers) = read_head(&mut stream, &mut buf).await?;
        if status == 100 && !continued {
            continued = true;
            stream.write_all(body).await?;
        } else if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let body = if status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut stream, buf).await?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad Content-Length"))?;
        read_exact_body(&mut stream, buf, len).await?
    } else {
        stream.read_to_end(&mut buf).await?;
        buf
    };
    Ok(RawResponse {
        status,
        headers,
        body,
        continued,
    })
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads until `buf` holds a whole response head, parses it and removes it
/// from `buf` (what follows stays there).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, Vec<(String, String)>)> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = response.code.ok_or_else(|| invalid("no status"))?;
                let headers = response
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_owned(), value)
                    })
                    .collect();
                buf.drain(..n);
                return Ok((status, headers));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(invalid("response head too large")),
            Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
        }
        if read_more(stream, buf).await? == 0 {
            return Err(invalid("connection closed before a response head"));
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 << 10];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_exact_body(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    while buf.len() < len {
        if read_more(stream, &mut buf).await? == 0 {
            return Err(invalid("connection closed inside the body"));
        }
    }
    buf.truncate(len);
    Ok(buf)
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf) {
            Ok(httparse::Status::Complete((start, size))) => (start, size as usize),
            Ok(httparse::Status::Partial) => {
                if read_more(stream, &mut buf).await? == 0 {
                    return Err(invalid("connection closed inside a chunk size"));
                }
                continue;
            }
            Err(_) => return Err(invalid("bad chunk size")),
        };
        // The chunk's data and its CRLF.
        while buf.len() < start + size + 2 {
            if read_more(stream, &mut buf).await? == 0 {
                return Err(invalid("connection closed inside a chunk"));
            }
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[start..start + size]);
        buf.drain(..start + size + 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads the request head, answers `first`, then (if
    /// `first` is a 100) reads `body_len` bytes and answers `then`; it
    /// returns the body bytes it read.
    async fn server(
        first: &'static str,
        body_len: usize,
        then: &'static str,
    ) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            s.write_all(first.as_bytes()).await.unwrap();
            let mut body = vec![0u8; body_len];
            if first.starts_with("HTTP/1.1 100") {
                s.read_exact(&mut body).await.unwrap();
                s.write_all(then.as_bytes()).await.unwrap();
            }
            body
        });
        (addr, task)
    }

    #[tokio::test]
    async fn an_early_answer_gets_no_body() {
        let answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello";
        let (addr, task) = server(answer, 0, "").await;
        let r = put_expect(
            addr,
            "/v1/ops/k",
            &[("Upload-Input-Hash", "h".into())],
            b"input",
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.continued), (200, false));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("etag"), Some("\"x\""));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_body_follows_100_continue() {
        let then =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (addr, task) = server("HTTP/1.1 100 Continue\r\n\r\n", 5, then).await;
        let r = put_expect(addr, "/v1/ops/k", &[], b"input").await.unwrap();
        assert_eq!((r.status, r.continued), (200, true));
        assert_eq!(r.body, b"abcde");
        assert_eq!(task.await.unwrap(), b"input");
    }
}
