//! Memory an image operation needs, known before any pixel is decoded.
//!
//! From the input's header (dimensions, bytes per decoded pixel) and the
//! steps' output sizes ([`Step::output_bound`]), [`estimate`] bounds the
//! peak of the buffers alive at once: the decoded image (counted twice, for
//! decoders' own planes and rows), each step's input, output and working
//! buffers (resampling and blurring work in 32-bit floats, four channels),
//! and the converted copy and encoded bytes of the output. The pool admits
//! operations against this figure, and an operation whose figure exceeds
//! `op_memory_limit` is refused before it starts.

use std::path::Path;

use upcache_protocol::operation::Step;
use upcache_protocol::{Problem, ProblemType};

/// Bytes per pixel of the working buffers of resampling and blurring.
const WORK_BYTES_PER_PIXEL: u64 = 16;
/// Bytes per pixel of the 8-bit RGBA copy an encoder may make.
const ENCODE_BYTES_PER_PIXEL: u64 = 4;

/// What the input's header tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// Bytes per pixel once decoded.
    pub bytes_per_pixel: u8,
}

fn pixels((w, h): (u32, u32)) -> u64 {
    u64::from(w) * u64::from(h)
}

/// Peak bytes of memory the operation's buffers need.
pub fn estimate(header: Header, steps: &[Step]) -> u64 {
    let bpp = u64::from(header.bytes_per_pixel.max(1));
    let mut size = (header.width, header.height);
    let mut peak = 2 * pixels(size) * bpp;
    for step in steps {
        let out = step.output_bound(size);
        let work = match step {
            // Resampling runs its horizontal pass first: output width × input height.
            Step::Thumbnail { .. } | Step::Resize { .. } => {
                pixels((out.0, size.1)) * WORK_BYTES_PER_PIXEL
            }
            Step::Blur { .. } => pixels(size) * WORK_BYTES_PER_PIXEL,
            _ => 0,
        };
        peak = peak.max(pixels(size) * bpp + pixels(out) * bpp + work);
        size = out;
    }
    peak.max(pixels(size) * (bpp + 2 * ENCODE_BYTES_PER_PIXEL))
}

/// Reads the header of the image at `path`.
pub fn header(path: &Path) -> Result<Header, Problem> {
    use image::ImageDecoder;
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Problem::new(ProblemType::Internal, e.to_string()))?;
    if reader.format().is_none() {
        return Err(super::image::invalid("unrecognised format"));
    }
    let decoder = reader.into_decoder().map_err(super::image::invalid)?;
    let (width, height) = decoder.dimensions();
    Ok(Header {
        width,
        height,
        bytes_per_pixel: decoder.color_type().bytes_per_pixel(),
    })
}

/// The problem of an operation that would need more than `limit` bytes.
pub fn too_much(need: u64, limit: u64) -> Problem {
    Problem::new(
        ProblemType::ImageTooLarge,
        format!(
            "the operation would need about {} MiB of memory; the limit is {} MiB",
            need.div_ceil(1 << 20),
            limit >> 20
        ),
    )
    .with("memory", need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcache_protocol::operation::Fit;

    const RGB: Header = Header {
        width: 4000,
        height: 3000,
        bytes_per_pixel: 3,
    };

    #[test]
    fn a_thumbnail_of_a_photo_needs_about_its_decoded_size_twice_and_its_resampling() {
        let need = estimate(
            RGB,
            &[Step::Thumbnail {
                width: 400,
                height: 400,
            }],
        );
        let decoded = 4000 * 3000 * 3;
        assert!(need >= 2 * decoded, "{need}");
        assert!(need < 2 * decoded + 400 * 3000 * 16, "{need}");
    }

    #[test]
    fn enlarging_a_tiny_image_is_counted_by_its_output() {
        let tiny = Header {
            width: 1,
            height: 1,
            bytes_per_pixel: 4,
        };
        let need = estimate(
            tiny,
            &[Step::Resize {
                width: 8000,
                height: 8000,
                fit: Fit::Fill,
            }],
        );
        assert!(need >= 8000 * 8000 * 4 * 2, "{need}");
    }

    #[test]
    fn geometry_follows_the_pipeline() {
        let crop = Step::Crop {
            x: 3900,
            y: 0,
            width: 500,
            height: 10,
        };
        assert_eq!(crop.output_bound((4000, 3000)), (100, 10));
        let small = estimate(RGB, &[crop, Step::Blur { sigma: 3.0 }]);
        let big = estimate(RGB, &[Step::Blur { sigma: 3.0 }, crop]);
        assert!(small < big, "blurring after the crop needs less");
    }
}
