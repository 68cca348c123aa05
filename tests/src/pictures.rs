//! Test images in every input format, JPEGs with an EXIF orientation, and
//! what a client can tell about an encoded output (format, size, alpha) —
//! AVIF included, read from its boxes since no AVIF decoder is linked here.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbaImage};

/// `width` × `height` pixels: a red top-left quadrant on blue, with a
/// gradient so encoders have detail to keep; `alpha` makes the right half
/// half-transparent.
pub fn quadrants(width: u32, height: u32, alpha: bool) -> DynamicImage {
    let img = RgbaImage::from_fn(width, height, |x, y| {
        let red = x < width / 2 && y < height / 2;
        let shade = ((x + y) * 60 / (width + height).max(1)) as u8;
        let a = if alpha && x >= width / 2 { 128 } else { 255 };
        if red {
            image::Rgba([230, shade, shade, a])
        } else {
            image::Rgba([shade, shade, 230, a])
        }
    });
    if alpha {
        DynamicImage::ImageRgba8(img)
    } else {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(img).to_rgb8())
    }
}

/// `img` encoded as `format` with the `image` crate.
pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let img = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(img.to_rgb8()),
        _ => img.clone(),
    };
    img.write_to(&mut out, format).expect("encode a test image");
    out.into_inner()
}

/// A JPEG of `img` that carries EXIF orientation `tag` (1–8) in an APP1
/// segment right after its SOI marker.
pub fn jpeg_with_orientation(img: &DynamicImage, tag: u16) -> Vec<u8> {
    let jpeg = encode(img, ImageFormat::Jpeg);
    // TIFF header (little-endian), one IFD entry: Orientation (0x0112),
    // SHORT, count 1, value `tag`; no next IFD.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&tag.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The stored pixels that display as `upright` under EXIF orientation `tag`.
pub fn stored_for(upright: &DynamicImage, tag: u16) -> DynamicImage {
    match tag {
        2 => upright.fliph(),
        3 => upright.rotate180(),
        4 => upright.flipv(),
        5 => upright.rotate90().fliph(),
        6 => upright.rotate270(),
        7 => upright.rotate270().fliph(),
        8 => upright.rotate90(),
        _ => upright.clone(),
    }
}

/// What an encoded image says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub format: &'static str,
    pub size: (u32, u32),
    pub alpha: bool,
    /// Decoded pixels (not for AVIF).
    pub pixels: Option<RgbaImage>,
}

/// Reads `bytes` as an image.
pub fn inspect(bytes: &[u8]) -> Seen {
    if bytes.len() > 12 && &bytes[4..12] == b"ftypavif" {
        let ispe = find(bytes, b"ispe").expect("an AVIF has an ispe box");
        let at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
        return Seen {
            format: "avif",
            size: (at(ispe + 8), at(ispe + 12)),
            alpha: find(bytes, b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha").is_some(),
            pixels: None,
        };
    }
    let format = image::guess_format(bytes).expect("a known image format");
    let img = image::load_from_memory_with_format(bytes, format)
        .unwrap_or_else(|e| panic!("decode the {format:?} output: {e}"));
    Seen {
        format: match format {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Gif => "gif",
            ImageFormat::WebP => "webp",
            _ => "other",
        },
        size: (img.width(), img.height()),
        alpha: img.color().has_alpha(),
        pixels: Some(img.to_rgba8()),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
