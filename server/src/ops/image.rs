//! Image operations: decode ([`super::decode`]: limits, shrink-on-load,
//! orientation), apply the steps in order ([`super::resize`] for the
//! resampling ones), convert to sRGB ([`super::color`]), encode once
//! ([`super::encode`]).

use std::path::Path;

use image::DynamicImage;
use upcache_protocol::operation::{Fit, Output, Step};
use upcache_protocol::{Problem, ProblemType};

use super::encode::Encoded;
use super::{plan, resize, Limits};

/// Applies one step. `logical` is the size the step computes its geometry
/// from: the whole image's, for a first step whose input was shrunk on
/// load; the image's own otherwise.
pub fn apply(
    img: DynamicImage,
    step: &Step,
    logical: Option<(u32, u32)>,
) -> Result<DynamicImage, Problem> {
    let logical = logical.unwrap_or((img.width(), img.height()));
    Ok(match *step {
        Step::Thumbnail { .. } | Step::Resize { .. } => {
            let Some(size) = plan::resampled_size(step, logical) else {
                return Ok(img);
            };
            match *step {
                Step::Resize {
                    width,
                    height,
                    fit: Fit::Cover,
                } => resize::resize(img, (width, height), true)?,
                _ => resize::resize(img, size, false)?,
            }
        }
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

/// Decodes, transforms and encodes.
pub fn run(
    path: &Path,
    steps: &[Step],
    output: &Output,
    limits: &Limits,
) -> Result<Encoded, Problem> {
    let decoded = super::decode::decode(path, steps, limits)?;
    let mut img = decoded.image;
    let mut logical = Some(decoded.logical);
    for step in steps {
        img = apply(img, step, logical.take())?;
    }
    let img = super::color::to_srgb(img, decoded.icc.as_deref());
    super::encode::encode(&img, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upcache_protocol::operation::ImageFormat;

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
                quality: Some(80),
                lossless: false,
            },
            &LIMITS,
        )
        .unwrap();
        assert_eq!(out.media_type, "image/webp");
        let img = image::load_from_memory(&out.bytes).unwrap();
        assert_eq!((img.width(), img.height()), (50, 25));
        assert!(!img.color().has_alpha(), "no alpha the source lacks");
    }

    #[test]
    fn bombs_and_garbage_are_clear_problems() {
        let dir = tempfile::tempdir().unwrap();
        let big = png(dir.path(), 1200, 1000);
        let err = super::super::decode::decode(&big, &[], &LIMITS)
            .err()
            .unwrap();
        assert_eq!(err.kind(), Some(ProblemType::ImageTooLarge));
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not an image at all").unwrap();
        assert_eq!(
            super::super::decode::decode(&junk, &[], &LIMITS)
                .err()
                .unwrap()
                .kind(),
            Some(ProblemType::InvalidImage)
        );
    }
}
