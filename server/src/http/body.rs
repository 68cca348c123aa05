//! Response bodies and request-body adapters.

use std::pin::Pin;

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

/// A request body stream that records whether it was read to its end.
pub struct Tracked {
    inner: ByteStream,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Stream for Tracked {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(None) = next {
            self.ended.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        next
    }
}

/// Adapts a request body; `ended` turns true once it was read to its end.
pub fn tracked(body: Incoming, ended: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Tracked {
    Tracked {
        inner: byte_stream(body),
        ended,
    }
}

/// Adapts a request body. Polling it is what makes hyper send `100 Continue`.
pub fn byte_stream(body: Incoming) -> ByteStream {
    Box::pin(TryStreamExt::try_filter_map(
        TryStreamExt::map_err(BodyStream::new(body), std::io::Error::other),
        |frame| std::future::ready(Ok(frame.into_data().ok())),
    ))
}
