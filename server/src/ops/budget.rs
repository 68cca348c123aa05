//! Memory an image operation needs, known before any pixel is decoded.
//!
//! From the input's header ([`super::decode::probe`]: dimensions, bytes per
//! decoded pixel, orientation, JPEG coding) and the steps' output sizes
//! ([`Step::output_bound`]), [`estimate`] bounds the peak of the buffers
//! alive at once, following the path the operation takes:
//!
//! * decoding: a JPEG shrunk on load ([`super::plan::jpeg_shrink`]) needs
//!   its scaled component planes and output (twice the scaled image) and,
//!   when progressive, every DCT coefficient of the whole image (two bytes
//!   per sample); any other decode counts the decoded image twice (for
//!   decoders' own planes and rows). Dropping an alpha channel that is
//!   opaque everywhere, then applying the orientation, each make one copy,
//!   within the same twice.
//! * resampling (`fast_image_resize`): the 8-bit source, a premultiplied
//!   copy when it has alpha, the horizontal pass (output width × input
//!   height) and the output; blurring works in 32-bit floats, four channels.
//! * encoding: an 8-bit copy and the encoder's own state, per output pixel
//!   ([`codec_bytes_per_pixel`]: rav1e's frames and analysis buffers for
//!   AVIF dominate), and the encoded bytes.
//!
//! The pool admits operations against this figure, and an operation whose
//! figure exceeds `op_memory_limit` is refused before it starts.

use std::path::Path;

use upcache_protocol::operation::{ImageFormat, Kind, Step};
use upcache_protocol::{Operation, Problem, ProblemType};

use super::decode::{transposes, Probe};

/// Bytes per pixel of the working buffers of blurring.
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
    /// The orientation swaps width and height.
    pub transposed: bool,
    /// Decoded by `jpeg-decoder` (so it may be shrunk on load); whether
    /// progressive.
    pub jpeg: Option<bool>,
}

impl From<Probe> for Header {
    fn from(p: Probe) -> Self {
        Self {
            width: p.width,
            height: p.height,
            bytes_per_pixel: p.bytes_per_pixel,
            transposed: transposes(p.orientation),
            jpeg: p.jpeg.map(|j| j.progressive),
        }
    }
}

fn pixels((w, h): (u32, u32)) -> u64 {
    u64::from(w) * u64::from(h)
}

/// Encoder state per output pixel, beyond the 8-bit copy of the image.
pub fn codec_bytes_per_pixel(format: ImageFormat, lossless: bool) -> u64 {
    match format {
        // rav1e: source, reconstruction and reference planes, motion and
        // rate-distortion buffers.
        ImageFormat::Avif => 24,
        // libwebp lossless: ARGB copies for its transforms and hash chains.
        ImageFormat::Webp if lossless => 24,
        // libwebp lossy: YUV planes and per-macroblock data.
        ImageFormat::Webp => 8,
        // jpeg-encoder keeps every block's coefficients for its Huffman tables.
        ImageFormat::Jpeg | ImageFormat::JpegOrPng | ImageFormat::Auto => 8,
        ImageFormat::Gif => 6,
        ImageFormat::Png => 4,
    }
}

/// [`codec_bytes_per_pixel`] of an operation's output.
pub fn codec_of(op: &Operation) -> u64 {
    match op.kind() {
        Kind::Image { output, .. } => codec_bytes_per_pixel(output.format, output.lossless),
        Kind::Identity => 0,
    }
}

/// Peak bytes of memory for `steps` and an encoder needing `codec` bytes
/// per output pixel.
pub fn estimate(header: Header, steps: &[Step], codec: u64) -> u64 {
    let bpp = u64::from(header.bytes_per_pixel.max(1));
    let stored = (header.width, header.height);
    let oriented = if header.transposed {
        (header.height, header.width)
    } else {
        stored
    };
    let shrink = match header.jpeg {
        Some(_) => super::plan::jpeg_shrink(oriented, steps),
        None => 1,
    };
    let mut size = (oriented.0.div_ceil(shrink), oriented.1.div_ceil(shrink));
    let decoded = pixels(size) * bpp;
    let coefficients = match header.jpeg {
        Some(true) if shrink > 1 => pixels(stored) * bpp * 2,
        _ => 0,
    };
    // Decoding, then one rotated copy while orienting.
    let mut peak = coefficients + 2 * decoded;
    let mut logical = Some(oriented);
    for step in steps {
        let geometry = logical.take().unwrap_or(size);
        let out = match super::plan::resampled_size(step, geometry) {
            Some(_) => step.output_bound(geometry),
            None => step.output_bound(size),
        };
        let work = match step {
            // 8-bit source, premultiplied copy, horizontal pass.
            Step::Thumbnail { .. } | Step::Resize { .. } => {
                pixels(size) * 4 * 2 + pixels((out.0, size.1)) * 4
            }
            Step::Blur { .. } => pixels(size) * WORK_BYTES_PER_PIXEL,
            _ => 0,
        };
        peak = peak.max(pixels(size) * bpp + pixels(out) * bpp + work);
        size = out;
    }
    peak.max(pixels(size) * (bpp + 2 * ENCODE_BYTES_PER_PIXEL + codec))
}

/// Reads the header of the image at `path`.
pub fn header(path: &Path) -> Result<Header, Problem> {
    super::decode::probe(path).map(Header::from)
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
        transposed: false,
        jpeg: None,
    };
    const PNG_CODEC: u64 = 4;

    #[test]
    fn a_thumbnail_of_a_photo_needs_about_its_decoded_size_twice_and_its_resampling() {
        let need = estimate(
            RGB,
            &[Step::Thumbnail {
                width: 400,
                height: 400,
            }],
            PNG_CODEC,
        );
        let decoded = 4000 * 3000 * 3;
        assert!(need >= 2 * decoded, "{need}");
        assert!(
            need < 2 * decoded + 4000 * 3000 * 8 + 400 * 3000 * 4,
            "{need}"
        );
    }

    #[test]
    fn a_jpeg_shrunk_on_load_needs_a_fraction() {
        let thumb = [Step::Thumbnail {
            width: 400,
            height: 400,
        }];
        let baseline = Header {
            jpeg: Some(false),
            ..RGB
        };
        let progressive = Header {
            jpeg: Some(true),
            ..RGB
        };
        let whole = estimate(RGB, &thumb, PNG_CODEC);
        let shrunk = estimate(baseline, &thumb, PNG_CODEC);
        assert!(shrunk * 10 < whole, "{shrunk} vs {whole}");
        let coefficients = estimate(progressive, &thumb, PNG_CODEC);
        assert!(coefficients >= 4000 * 3000 * 3 * 2, "{coefficients}");
    }

    #[test]
    fn enlarging_a_tiny_image_is_counted_by_its_output() {
        let tiny = Header {
            width: 1,
            height: 1,
            bytes_per_pixel: 4,
            transposed: false,
            jpeg: None,
        };
        let need = estimate(
            tiny,
            &[Step::Resize {
                width: 8000,
                height: 8000,
                fit: Fit::Fill,
            }],
            PNG_CODEC,
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
        let small = estimate(RGB, &[crop, Step::Blur { sigma: 3.0 }], PNG_CODEC);
        let big = estimate(RGB, &[Step::Blur { sigma: 3.0 }, crop], PNG_CODEC);
        assert!(small < big, "blurring after the crop needs less");
    }
}
