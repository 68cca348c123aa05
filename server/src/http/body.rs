//! Response bodies and request-body adapters.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{combinators::BoxBody, BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};

/// The body of every response.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A request body as a stream of data chunks (trailers are ignored): the
/// domain's upload body type.
pub use crate::upload::BodyStream as ByteStream;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response body streamed from `stream`.
pub fn streaming(
    stream: impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
) -> Body {
    BodyExt::boxed(StreamBody::new(stream.map_ok(Frame::data)))
}

/// What became of a request body handed to a handler as a stream.
#[derive(Default)]
pub struct Fate {
    /// Whether it was read to its end.
    pub ended: bool,
    /// Whether it was read at all (reading is what sends `100 Continue`).
    pub polled: bool,
    /// The rest of a body dropped before its end, for the serving layer to
    /// settle (see `settle_unread`).
    pub rest: Option<ByteStream>,
}

/// A request body stream that reports its [`Fate`] when dropped.
pub struct Tracked {
    inner: Option<ByteStream>,
    ended: bool,
    /// The body broke off (the connection's state is unknown): nothing to settle.
    broken: bool,
    polled: bool,
    fate: Arc<Mutex<Fate>>,
}

impl Stream for Tracked {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.polled = true;
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let next = inner.as_mut().poll_next(cx);
        match &next {
            std::task::Poll::Ready(None) => self.ended = true,
            std::task::Poll::Ready(Some(Err(_))) => self.broken = true,
            _ => {}
        }
        next
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut fate = self.fate.lock().expect("body fate lock");
        fate.ended = self.ended;
        fate.polled = self.polled;
        if !self.ended && !self.broken {
            fate.rest = self.inner.take();
        }
    }
}

/// Adapts a request body; `fate` says, once the stream is dropped, how far
/// it was read, and holds what is left of it.
pub fn tracked(body: Incoming, fate: Arc<Mutex<Fate>>) -> Tracked {
    Tracked {
        inner: Some(byte_stream(body)),
        ended: false,
        broken: false,
        polled: false,
        fate,
    }
}

/// Adapts a request body. Polling it is what makes hyper send `100 Continue`.
pub fn byte_stream(body: Incoming) -> ByteStream {
    Box::pin(TryStreamExt::try_filter_map(
        TryStreamExt::map_err(BodyStream::new(body), std::io::Error::other),
        |frame| std::future::ready(Ok(frame.into_data().ok())),
    ))
}
