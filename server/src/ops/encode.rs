//! Encoders, once per operation, with no metadata (no EXIF, XMP or ICC
//! profile) and no channel the image does not have: an image without
//! alpha is encoded without alpha in every format.
//!
//! | format | encoder | notes |
//! |---|---|---|
//! | `jpeg` | `jpeg-encoder` | 4:2:0 chroma, optimized Huffman tables |
//! | `webp` | libwebp (`webp` crate, built from source) | lossy at `quality`, or `lossless` |
//! | `avif` | rav1e (`ravif`, pure Rust) | 8-bit 4:4:4, speed [`AVIF_SPEED`] |
//! | `png` | `image` (`png` crate) | 8- or 16-bit as decoded |
//! | `gif` | `image` (`gif` crate, NeuQuant) | first frame only |
//! | `jpeg-or-png` | PNG when the image has alpha, else JPEG | |
//!
//! AVIF is rav1e rather than libheif: it builds from crates.io as Rust code,
//! with no system library (libheif needs itself and an AV1 encoder library
//! installed on every machine that builds or runs the server). Its assembly
//! is on (ravif's `asm` feature: nasm at build time, which
//! `.ci/system-deps.sh` installs): without it rav1e was about as fast as
//! libvips' libaom at speed 8; with it a 400×400 AVIF thumbnail of a
//! 15-megapixel JPEG takes 0.74× vipsthumbnail's time (`benches/images.sh`).

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType};
use upcache_protocol::operation::{ImageFormat, Output, DEFAULT_QUALITY};
use upcache_protocol::{Problem, ProblemType};

/// rav1e's speed preset (1 slowest … 10 fastest). At 8 a 400×400 thumbnail
/// is within a tenth of the size libvips (libaom) makes at the same quality,
/// in about its time; 9 and 10 are two to three times faster but make files
/// a third to two thirds larger (`benches/images.sh`).
pub const AVIF_SPEED: u8 = 8;
/// NeuQuant's sampling factor (1 best … 30 fastest).
const GIF_SPEED: i32 = 10;

fn failed(e: impl std::fmt::Display) -> Problem {
    Problem::new(
        ProblemType::OperationFailed,
        format!("encoding failed: {e}"),
    )
}

/// An encoded image.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
}

/// Encodes `img` as `output` says.
pub fn encode(img: &DynamicImage, output: &Output) -> Result<Encoded, Problem> {
    let alpha = img.color().has_alpha();
    let quality = output.quality.unwrap_or(DEFAULT_QUALITY);
    let format = match output.format {
        ImageFormat::JpegOrPng | ImageFormat::Auto if alpha => ImageFormat::Png,
        ImageFormat::JpegOrPng | ImageFormat::Auto => ImageFormat::Jpeg,
        f => f,
    };
    let bytes = match format {
        ImageFormat::Jpeg => jpeg(img, quality)?,
        ImageFormat::Webp => webp(img, alpha, (!output.lossless).then_some(quality)),
        ImageFormat::Avif => avif(img, alpha, quality)?,
        ImageFormat::Gif => gif(img)?,
        _ => png(img)?,
    };
    Ok(Encoded {
        bytes,
        media_type: format.media_type().unwrap_or("image/png"),
    })
}

fn jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, Problem> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, quality);
    enc.set_optimized_huffman_tables(true);
    let (w, h) = (dim(img.width())?, dim(img.height())?);
    if img.color().has_color() {
        enc.set_sampling_factor(SamplingFactor::F_2_2);
        enc.encode(&img.to_rgb8(), w, h, ColorType::Rgb)
    } else {
        enc.encode(&img.to_luma8(), w, h, ColorType::Luma)
    }
    .map_err(failed)?;
    Ok(out)
}

fn dim(v: u32) -> Result<u16, Problem> {
    u16::try_from(v).map_err(|_| failed(format!("{v} pixels is too wide for JPEG")))
}

/// Lossy at `quality`, or lossless when it is `None`.
fn webp(img: &DynamicImage, alpha: bool, quality: Option<u8>) -> Vec<u8> {
    let (w, h) = (img.width(), img.height());
    let raw;
    let enc = if alpha {
        raw = img.to_rgba8().into_raw();
        webp::Encoder::from_rgba(&raw, w, h)
    } else {
        raw = img.to_rgb8().into_raw();
        webp::Encoder::from_rgb(&raw, w, h)
    };
    match quality {
        Some(q) => enc.encode(f32::from(q)).to_vec(),
        None => enc.encode_lossless().to_vec(),
    }
}

fn avif(img: &DynamicImage, alpha: bool, quality: u8) -> Result<Vec<u8>, Problem> {
    use ravif::{BitDepth, Encoder, Img, RGB8, RGBA8};
    let (w, h) = (img.width() as usize, img.height() as usize);
    let enc = Encoder::new()
        .with_quality(f32::from(quality.clamp(1, 100)))
        .with_alpha_quality(f32::from(quality.clamp(1, 100)))
        .with_speed(AVIF_SPEED)
        .with_bit_depth(BitDepth::Eight);
    let encoded = if alpha {
        let px: Vec<RGBA8> = img
            .to_rgba8()
            .pixels()
            .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        enc.encode_rgba(Img::new(&px[..], w, h))
    } else {
        let px: Vec<RGB8> = img
            .to_rgb8()
            .pixels()
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        enc.encode_rgb(Img::new(&px[..], w, h))
    };
    Ok(encoded.map_err(failed)?.avif_file)
}

fn png(img: &DynamicImage) -> Result<Vec<u8>, Problem> {
    let mut out = Cursor::new(Vec::new());
    img.write_with_encoder(PngEncoder::new(&mut out))
        .map_err(failed)?;
    Ok(out.into_inner())
}

fn gif(img: &DynamicImage) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::new();
    let rgba = img.to_rgba8();
    GifEncoder::new_with_speed(&mut out, GIF_SPEED)
        .encode(&rgba, rgba.width(), rgba.height(), ExtendedColorType::Rgba8)
        .map_err(failed)?;
    Ok(out)
}
