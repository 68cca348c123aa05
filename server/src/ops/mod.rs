//! Running operations: image operations ([`image`], built from [`plan`],
//! [`decode`], [`resize`], [`color`] and [`encode`]), the memory they need
//! ([`budget`]), the child processes they run in ([`worker`]) and the
//! admission of operations against a number of slots and a memory budget
//! ([`pool`]).
//!
//! Operations are pure functions of the input file: bytes in, bytes and a
//! media type out. Identity operations take no work at all; image operations
//! run in a child process each, never on the server's own threads.

pub mod budget;
pub mod color;
pub mod decode;
pub mod encode;
pub mod image;
pub mod plan;
pub mod pool;
pub mod resize;
pub mod worker;

use upcache_protocol::operation::Kind;
use upcache_protocol::{Operation, Problem, ProblemType};

/// Limits an operation runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest width × height decoded, and produced.
    pub max_pixels: u64,
    /// Largest input an image operation reads.
    pub max_image_input: u64,
}

/// Media type of results that are the input itself (that of stored inputs).
pub const OCTET_STREAM: &str = crate::store::blob::OCTET_STREAM;

/// Refuses, before anything is uploaded or run, an operation whose output
/// would exceed the pixel limit whatever its input (a resize to 16384 ×
/// 16384 of a 69-byte PNG).
pub fn check(op: &Operation, limits: &Limits) -> Result<(), Problem> {
    let Kind::Image { steps, .. } = op.kind() else {
        return Ok(());
    };
    for pixels in steps.iter().filter_map(|s| s.fixed_output_pixels()) {
        if pixels > limits.max_pixels {
            return Err(Problem::new(
                ProblemType::ImageTooLarge,
                format!(
                    "the operation makes an image of {pixels} pixels; the limit is {}",
                    limits.max_pixels
                ),
            ));
        }
    }
    Ok(())
}
