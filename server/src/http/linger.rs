//! Lingering close: a connection the server closes while the client may still
//! be sending is not torn down under the answer.
//!
//! When a socket is closed with unread bytes in its receive buffer — or bytes
//! arrive after it closed — the kernel answers with a TCP reset, and the
//! client, still busy sending a body the server decided not to read (a hit, a
//! refusal found from the headers, a block already stored), sees "broken pipe"
//! or "connection reset" instead of the answer waiting in its receive buffer.
//! Like nginx's `lingering_close`, the connection's transport ([`Lingering`])
//! therefore, when dropped, shuts down only its sending side (the client reads
//! the answer, then end-of-stream) and goes on reading and discarding what the
//! client sends until the client closes, the client pauses for
//! [`LINGER_IDLE`], or [`LINGER_TIME`] is over. Only then is the socket closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest a closed connection is drained.
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// Longest pause of the client while draining.
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// A TCP connection that lingers when dropped.
pub struct Lingering {
    stream: Option<TcpStream>,
}

impl Lingering {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
        }
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        Pin::new(self.get_mut().stream.as_mut().expect("open until dropped"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        // Outside a runtime (shutting down) there is nobody left to answer.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// Half-closes `stream` and discards what the client still sends, within bounds.
async fn linger(mut stream: TcpStream) {
    // The answer already went out; ending the sending side lets the client
    // see the end of the response stream after it.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}
