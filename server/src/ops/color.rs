//! Colour: an image with an embedded ICC profile other than sRGB is
//! converted to sRGB (with `qcms`, perceptual intent) after its geometry
//! steps, and every output is written without a profile — like all other
//! metadata (EXIF, XMP), profiles are stripped. Browsers and most tools
//! take an untagged image as sRGB, so the colours look as they did in the
//! source while no output carries the source's metadata.
//!
//! Only 8-bit RGB and RGBA images are converted; a grayscale image (a
//! `image.grayscale` step, or a grayscale source) keeps its values.

use image::DynamicImage;
use qcms::{DataType, Intent, Profile, Transform};

/// Converts `img` from the colour space of `icc` to sRGB.
pub fn to_srgb(mut img: DynamicImage, icc: Option<&[u8]>) -> DynamicImage {
    let Some(source) = icc.and_then(|icc| Profile::new_from_slice(icc, false)) else {
        return img;
    };
    if source.is_sRGB() {
        return img;
    }
    let srgb = Profile::new_sRGB();
    let (ty, data) = match &mut img {
        DynamicImage::ImageRgb8(b) => (DataType::RGB8, &mut **b),
        DynamicImage::ImageRgba8(b) => (DataType::RGBA8, &mut **b),
        _ => return img,
    };
    if let Some(t) = Transform::new(&source, &srgb, ty, Intent::Perceptual) {
        t.apply(data);
    }
    img
}
