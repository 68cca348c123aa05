//! The upcache wire protocol, shared by the server and every client.
//!
//! # Layout
//!
//! * [`admin`] — the admin API: purge requests and reports, and the
//!   dates `before` is given in.
//! * [`accept`] — `format: "auto"`: the image format an `Accept` header allows.
//! * [`imgurl`] — the URL API's path: imgproxy-style options to an operation.
//! * [`key`] — input hashes, operation keys and their derivation.
//! * [`operation`] — the operation catalogue: parsing, normalization (defaults
//!   filled in, unknown fields rejected), versions and canonical JSON.
//! * [`blocks`] — block layout math and the `0-3,7` range encoding of block sets.
//! * [`tree`] — BLAKE3 subtree chaining values per block and their merge into
//!   the whole-input hash.
//! * [`digest`] — the commutative (order-independent) digest of a set of blocks.
//! * [`headers`] — every header name, media type and header value codec.
//! * [`range`] — the single byte ranges of `Range` and `Content-Range`.
//! * [`tus`] — the tus 1.0 header codecs (`Upload-Metadata`, `Upload-Concat`,
//!   `Upload-Checksum`, `Tus-Extension`).
//! * [`token`] — scoped, expiring upload tokens (`upc1.…`) and presigned
//!   result URLs: HMAC-SHA256 signing and verification, scopes, mint bodies.
//! * [`problem`] — the catalogue of RFC 9457 problem types.
//! * [`status`] — request and response bodies of the `/v1` API.
//! * [`props`] — the properties every parser keeps (no panic, round trips,
//!   canonical re-encoding), checked by the fuzz targets in `fuzz/`, the
//!   property tests and the corpus replay in `tests/`.
//!
//! Nothing here does I/O; every wire string is spelled once, in this crate.

pub mod accept;
pub mod admin;
pub mod blocks;
pub mod digest;
pub mod headers;
pub mod imgurl;
pub mod key;
pub mod lifecycle;
pub mod operation;
pub mod problem;
pub mod props;
pub mod range;
pub mod status;
pub mod token;
pub mod tree;
pub mod tus;

pub use blocks::{Layout, LayoutError};
pub use digest::Digest;
pub use key::{InputHash, Key};
pub use operation::{Operation, OperationError};
pub use problem::{Problem, ProblemType};
pub use status::{CreateRequest, InputRef, ResultInfo, State, Status};
