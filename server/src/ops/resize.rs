//! Resampling with `fast_image_resize` (SIMD convolution, Lanczos3, alpha
//! premultiplied while filtering so transparent pixels do not bleed).
//! Images are resampled as 8-bit luma, luma + alpha, RGB or RGBA; deeper
//! images are converted to 8 bits first (every output format but PNG is
//! 8-bit anyway).

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GenericImageView};
use upcache_protocol::{Problem, ProblemType};

fn failed(e: impl std::fmt::Display) -> Problem {
    Problem::new(
        ProblemType::OperationFailed,
        format!("resizing failed: {e}"),
    )
}

/// The image as one of the four 8-bit layouts the resizer works on.
pub fn eight_bit(img: DynamicImage) -> DynamicImage {
    use DynamicImage::*;
    match img {
        ImageLuma8(_) | ImageLumaA8(_) | ImageRgb8(_) | ImageRgba8(_) => img,
        ImageLuma16(_) => ImageLuma8(img.to_luma8()),
        ImageLumaA16(_) => ImageLumaA8(img.to_luma_alpha8()),
        other if other.color().has_alpha() => ImageRgba8(other.to_rgba8()),
        other => ImageRgb8(other.to_rgb8()),
    }
}

/// Resamples `img` to `size`. With `cover`, the largest centred part of
/// `img` of the target's aspect ratio is resampled (the rest is cropped).
pub fn resize(img: DynamicImage, size: (u32, u32), cover: bool) -> Result<DynamicImage, Problem> {
    let img = eight_bit(img);
    let (sw, sh) = img.dimensions();
    let (w, h) = size;
    let crop = cover && u64::from(sw) * u64::from(h) != u64::from(sh) * u64::from(w);
    if (sw, sh) == (w, h) && !crop {
        return Ok(img);
    }
    let (pixel_type, raw) = match img {
        DynamicImage::ImageLuma8(b) => (PixelType::U8, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => (PixelType::U8x2, b.into_raw()),
        DynamicImage::ImageRgb8(b) => (PixelType::U8x3, b.into_raw()),
        DynamicImage::ImageRgba8(b) => (PixelType::U8x4, b.into_raw()),
        _ => unreachable!("eight_bit makes one of the four"),
    };
    let src = Image::from_vec_u8(sw, sh, raw, pixel_type).map_err(failed)?;
    let mut dst = Image::new(w, h, pixel_type);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if crop {
        let (sw, sh, w, h) = (f64::from(sw), f64::from(sh), f64::from(w), f64::from(h));
        options = if sw * h > sh * w {
            let cw = sh * w / h;
            options.crop((sw - cw) / 2.0, 0.0, cw, sh)
        } else {
            let ch = sw * h / w;
            options.crop(0.0, (sh - ch) / 2.0, sw, ch)
        };
    }
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(failed)?;
    let raw = dst.into_vec();
    let bad = || failed("buffer size");
    Ok(match pixel_type {
        PixelType::U8 => {
            DynamicImage::ImageLuma8(image::ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        }
        PixelType::U8x2 => {
            DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        }
        PixelType::U8x3 => {
            DynamicImage::ImageRgb8(image::ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?)
        }
        _ => DynamicImage::ImageRgba8(image::ImageBuffer::from_raw(w, h, raw).ok_or_else(bad)?),
    })
}
