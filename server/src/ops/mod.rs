//! Running operations: the registry of what each operation does ([`run`]),
//! image operations ([`image`]) and the bounded worker pool ([`pool`]).
//!
//! Operations are pure functions of the input file: bytes in, bytes and a
//! media type out. They run on the pool's threads, never on the async runtime.

pub mod image;
pub mod pool;

use std::path::Path;

use upcache_protocol::operation::Kind;
use upcache_protocol::{Operation, Problem};

/// Limits an operation runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest width × height decoded.
    pub max_pixels: u64,
    /// Largest input an image operation reads.
    pub max_image_input: u64,
}

/// What an operation produced.
#[derive(Debug)]
pub enum Produced {
    /// The result is the input itself (stored once, served from the input).
    Input,
    /// New bytes of the given media type.
    Bytes {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

/// Media type of results that are the input itself.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Runs `op` on the input stored at `input`. Blocking.
pub fn run(op: &Operation, input: &Path, limits: &Limits) -> Result<Produced, Problem> {
    match op.kind() {
        Kind::Identity => Ok(Produced::Input),
        Kind::Image { steps, output } => {
            let bytes = image::run(input, steps, output, limits)?;
            Ok(Produced::Bytes {
                bytes,
                content_type: output.format.content_type(),
            })
        }
    }
}
