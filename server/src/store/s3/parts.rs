//! Multipart uploads' parts, object bodies as streams, and the check of
//! streamed bytes against their metadata.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::{ByteStream as S3Body, Length};
use bytes::{Bytes, BytesMut};
use futures_util::stream::StreamExt;
use futures_util::Stream;
use upcache_protocol::InputHash;

use super::errors::stream_kind;
use crate::store::blob::{BlobMeta, BlobName, ByteStream};

/// Where the parts of a multipart upload come from.
pub(super) enum Parts {
    /// Ranges of a local file, read when sent (and again on a retry).
    File {
        path: std::path::PathBuf,
        length: u64,
        size: u64,
        next: u64,
    },
    /// A stream, cut into parts held in memory, checked against its
    /// metadata as it passes.
    Stream {
        body: ByteStream,
        carry: BytesMut,
        // Boxed: a hasher is large beside the file variant.
        check: Box<Check>,
        size: usize,
        n: u32,
        ended: bool,
    },
}

impl Parts {
    /// The next part: its number (from 1), length and bytes; `None` after
    /// the last.
    pub(super) async fn next(&mut self) -> io::Result<Option<(u32, u64, S3Body)>> {
        match self {
            Parts::File {
                path,
                length,
                size,
                next,
            } => {
                let offset = *next * *size;
                if offset >= *length {
                    return Ok(None);
                }
                let len = (*size).min(*length - offset);
                *next += 1;
                let body = file_part(path, offset, len).await?;
                Ok(Some((*next as u32, len, body)))
            }
            Parts::Stream {
                body,
                carry,
                check,
                size,
                n,
                ended,
            } => {
                while carry.len() < *size && !*ended {
                    match body.next().await {
                        Some(chunk) => {
                            let chunk = chunk?;
                            check.add(&chunk)?;
                            carry.extend_from_slice(&chunk);
                        }
                        None => *ended = true,
                    }
                }
                if *ended && carry.len() <= *size {
                    // The last part, or none left: nothing is published
                    // unless every byte was as described.
                    check.finish()?;
                    if carry.is_empty() {
                        return Ok(None);
                    }
                }
                let part = carry.split_to(carry.len().min(*size)).freeze();
                let number = *n;
                *n += 1;
                Ok(Some((number, part.len() as u64, S3Body::from(part))))
            }
        }
    }
}

/// `len` bytes of the file at `path` from `offset`, as a body that can be
/// sent again.
pub(super) async fn file_part(path: &std::path::Path, offset: u64, len: u64) -> io::Result<S3Body> {
    S3Body::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(io::Error::other)
}

/// A part task's outcome.
pub(super) fn joined(
    part: Option<Result<io::Result<(u32, String)>, tokio::task::JoinError>>,
) -> io::Result<(u32, String)> {
    part.expect("a task was running")
        .map_err(io::Error::other)?
}

/// An object's body as a [`ByteStream`].
pub(super) struct Body(pub(super) S3Body);

impl Stream for Body {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|e| io::Error::new(stream_kind(&e), e))))
    }
}

/// Checks streamed bytes against their metadata as they pass.
pub(super) struct Check {
    what: String,
    want: (u64, InputHash),
    length: u64,
    hasher: blake3::Hasher,
}

impl Check {
    pub(super) fn new(name: BlobName, meta: &BlobMeta) -> Self {
        Self {
            what: name.to_string(),
            want: (meta.length, meta.blake3),
            length: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    pub(super) fn add(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.length += chunk.len() as u64;
        if self.length > self.want.0 {
            return Err(self.mismatch());
        }
        self.hasher.update(chunk);
        Ok(())
    }

    pub(super) fn finish(&self) -> io::Result<()> {
        let hash = InputHash(*self.hasher.finalize().as_bytes());
        if self.length != self.want.0 || hash != self.want.1 {
            return Err(self.mismatch());
        }
        Ok(())
    }

    fn mismatch(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the bytes are not the {} bytes with BLAKE3 {} their metadata describes",
                self.what, self.want.0, self.want.1
            ),
        )
    }
}
