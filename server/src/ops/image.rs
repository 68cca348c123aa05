//! Image operations: decode with limits, transform, encode.
//!
//! The dimensions are read from the header first, so an image whose
//! width × height exceeds the pixel limit is refused before any pixel buffer
//! is allocated; the decoder additionally runs with an allocation limit.

use std::io::{BufReader, Cursor};
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};
use upcache_protocol::operation::{Fit, ImageFormat, Output, Step};
use upcache_protocol::{Problem, ProblemType};

use super::Limits;

pub(crate) fn invalid(detail: impl std::fmt::Display) -> Problem {
    Problem::new(
        ProblemType::InvalidImage,
        format!("the input could not be decoded as an image: {detail}"),
    )
}

fn reader(path: &Path) -> Result<ImageReader<BufReader<std::fs::File>>, Problem> {
    let r =
        ImageReader::open(path).map_err(|e| Problem::new(ProblemType::Internal, e.to_string()))?;
    r.with_guessed_format()
        .map_err(|e| Problem::new(ProblemType::Internal, e.to_string()))
}

/// Decodes the image at `path` within `limits`.
pub fn decode(path: &Path, limits: &Limits) -> Result<DynamicImage, Problem> {
    let size = std::fs::metadata(path)
        .map_err(|e| Problem::new(ProblemType::Internal, e.to_string()))?
        .len();
    if size > limits.max_image_input {
        return Err(Problem::new(
            ProblemType::ImageTooLarge,
            format!(
                "image inputs are limited to {} bytes; this one has {size}",
                limits.max_image_input
            ),
        ));
    }
    let probe = reader(path)?;
    if probe.format().is_none() {
        return Err(invalid("unrecognised format"));
    }
    let (w, h) = probe.into_dimensions().map_err(invalid)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(Problem::new(
            ProblemType::ImageTooLarge,
            format!(
                "{w}×{h} = {pixels} pixels exceeds the limit of {}",
                limits.max_pixels
            ),
        )
        .with("width", w)
        .with("height", h));
    }
    let mut r = reader(path)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(w);
    l.max_image_height = Some(h);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    r.limits(l);
    r.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Problem::new(ProblemType::ImageTooLarge, e.to_string()),
        other => invalid(other),
    })
}

/// Applies one step.
pub fn apply(img: DynamicImage, step: &Step) -> Result<DynamicImage, Problem> {
    Ok(match *step {
        Step::Thumbnail { width, height } => {
            if img.width() <= width && img.height() <= height {
                img
            } else {
                img.resize(width, height, FilterType::Triangle)
            }
        }
        Step::Resize { width, height, fit } => match fit {
            Fit::Fill => img.resize_exact(width, height, FilterType::Lanczos3),
            Fit::Contain => img.resize(width, height, FilterType::Lanczos3),
            Fit::Cover => img.resize_to_fill(width, height, FilterType::Lanczos3),
        },
        Step::Crop {
            x,
            y,
            width,
            height,
        } => {
            if x >= img.width() || y >= img.height() {
                return Err(Problem::new(
                    ProblemType::OperationFailed,
                    format!(
                        "crop origin ({x}, {y}) is outside the {}×{} image",
                        img.width(),
                        img.height()
                    ),
                ));
            }
            img.crop_imm(
                x,
                y,
                width.min(img.width() - x),
                height.min(img.height() - y),
            )
        }
        Step::Rotate { degrees: 90 } => img.rotate90(),
        Step::Rotate { degrees: 180 } => img.rotate180(),
        Step::Rotate { .. } => img.rotate270(),
        Step::Flip { vertical: true } => img.flipv(),
        Step::Flip { vertical: false } => img.fliph(),
        Step::Grayscale => img.grayscale(),
        Step::Blur { sigma } => img.blur(sigma as f32),
    })
}

/// Encodes an image.
pub fn encode(img: &DynamicImage, output: &Output) -> Result<Vec<u8>, Problem> {
    let mut out = Cursor::new(Vec::new());
    let failed = |e: image::ImageError| {
        Problem::new(
            ProblemType::OperationFailed,
            format!("encoding failed: {e}"),
        )
    };
    match output.format {
        ImageFormat::Png => img
            .write_with_encoder(PngEncoder::new(&mut out))
            .map_err(failed)?,
        ImageFormat::Jpeg => {
            // JPEG has no alpha channel.
            let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
            let enc = JpegEncoder::new_with_quality(&mut out, output.quality.unwrap_or(85));
            rgb.write_with_encoder(enc).map_err(failed)?
        }
        ImageFormat::Webp => {
            let rgba = DynamicImage::ImageRgba8(img.to_rgba8());
            rgba.write_with_encoder(WebPEncoder::new_lossless(&mut out))
                .map_err(failed)?
        }
    }
    Ok(out.into_inner())
}

/// Decodes, transforms and encodes.
pub fn run(
    path: &Path,
    steps: &[Step],
    output: &Output,
    limits: &Limits,
) -> Result<Vec<u8>, Problem> {
    let mut img = decode(path, limits)?;
    for step in steps {
        img = apply(img, step)?;
    }
    encode(&img, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_pixels: 1_000_000,
        max_image_input: 1 << 20,
    };

    fn png(dir: &Path, w: u32, h: u32) -> std::path::PathBuf {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let path = dir.join(format!("{w}x{h}.png"));
        img.save(&path).unwrap();
        path
    }

    #[test]
    fn thumbnail_fits_the_box_and_keeps_aspect() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            &png(dir.path(), 200, 100),
            &[Step::Thumbnail {
                width: 50,
                height: 50,
            }],
            &Output {
                format: ImageFormat::Webp,
                quality: None,
            },
            &LIMITS,
        )
        .unwrap();
        let img = image::load_from_memory(&out).unwrap();
        assert_eq!((img.width(), img.height()), (50, 25));
        assert_eq!(image::guess_format(&out).unwrap(), image::ImageFormat::WebP);
    }

    #[test]
    fn bombs_and_garbage_are_clear_problems() {
        let dir = tempfile::tempdir().unwrap();
        let big = png(dir.path(), 1200, 1000);
        let err = decode(&big, &LIMITS).unwrap_err();
        assert_eq!(err.kind(), Some(ProblemType::ImageTooLarge));
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not an image at all").unwrap();
        assert_eq!(
            decode(&junk, &LIMITS).unwrap_err().kind(),
            Some(ProblemType::InvalidImage)
        );
    }
}
