//! Decoding with limits, orientation and shrink-on-load.
//!
//! [`probe`] reads only the header: dimensions, bytes per pixel, EXIF
//! orientation and, for JPEGs, whether `jpeg-decoder` can decode it scaled.
//! An image whose width × height exceeds the pixel limit is refused before
//! any pixel buffer is allocated, and decoders run with an allocation limit.
//!
//! A JPEG whose first step resamples it to at most half its size is decoded
//! in the DCT domain at 1/2, 1/4 or 1/8 scale ([`super::plan::jpeg_shrink`]):
//! the inverse transform of each 8×8 block makes 4×4, 2×2 or 1×1 pixels, so
//! a 15-megapixel photo bound for a 400×400 thumbnail is never decoded at
//! full size. Other JPEGs (CMYK, 16-bit, unscaled) and other formats go
//! through the `image` crate. The EXIF orientation is applied right after
//! decoding, before any step; the ICC profile is handed on for conversion
//! to sRGB ([`super::color`]).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use upcache_protocol::operation::Step;
use upcache_protocol::{Problem, ProblemType};

use super::Limits;

pub(crate) fn invalid(detail: impl std::fmt::Display) -> Problem {
    Problem::new(
        ProblemType::InvalidImage,
        format!("the input could not be decoded as an image: {detail}"),
    )
}

fn internal(e: impl std::fmt::Display) -> Problem {
    Problem::new(ProblemType::Internal, e.to_string())
}

/// What an image's header tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Stored width and height (before orientation).
    pub width: u32,
    pub height: u32,
    /// Bytes per pixel once decoded.
    pub bytes_per_pixel: u8,
    pub orientation: Orientation,
    /// Set when `jpeg-decoder` decodes it (8-bit RGB or grayscale), so
    /// it can be shrunk on load.
    pub jpeg: Option<JpegCoding>,
}

/// How a JPEG is coded, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegCoding {
    /// Progressive JPEGs keep every DCT coefficient until the last scan.
    pub progressive: bool,
}

impl Probe {
    /// Width and height once the orientation is applied.
    pub fn oriented(&self) -> (u32, u32) {
        if transposes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Whether an orientation swaps width and height.
pub fn transposes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn reader(path: &Path) -> Result<ImageReader<BufReader<File>>, Problem> {
    let r = ImageReader::open(path).map_err(internal)?;
    let r = r.with_guessed_format().map_err(internal)?;
    if r.format().is_none() {
        return Err(invalid("unrecognised format"));
    }
    Ok(r)
}

fn jpeg_decoder(path: &Path) -> Result<jpeg_decoder::Decoder<BufReader<File>>, Problem> {
    Ok(jpeg_decoder::Decoder::new(BufReader::new(
        File::open(path).map_err(internal)?,
    )))
}

/// Reads the header of the image at `path`.
pub fn probe(path: &Path) -> Result<Probe, Problem> {
    let r = reader(path)?;
    if r.format() == Some(image::ImageFormat::Jpeg) {
        let mut d = jpeg_decoder(path)?;
        if d.read_info().is_ok() {
            if let Some(info) = d.info() {
                use jpeg_decoder::PixelFormat::{L8, RGB24};
                if matches!(info.pixel_format, RGB24 | L8) {
                    return Ok(Probe {
                        width: u32::from(info.width),
                        height: u32::from(info.height),
                        bytes_per_pixel: info.pixel_format.pixel_bytes() as u8,
                        orientation: exif_orientation(d.exif_data()),
                        jpeg: Some(JpegCoding {
                            progressive: info.coding_process
                                == jpeg_decoder::CodingProcess::DctProgressive,
                        }),
                    });
                }
            }
        }
    }
    let mut decoder = r.into_decoder().map_err(invalid)?;
    let (width, height) = decoder.dimensions();
    Ok(Probe {
        width,
        height,
        bytes_per_pixel: decoder.color_type().bytes_per_pixel(),
        orientation: decoder.orientation().unwrap_or(Orientation::NoTransforms),
        jpeg: None,
    })
}

fn exif_orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

/// A decoded image, oriented, ready for the steps.
pub struct Decoded {
    pub image: DynamicImage,
    /// The oriented size of the whole image; `image` may be smaller when
    /// it was shrunk on load. The first step computes its geometry from
    /// this size, so shrinking on load never changes an output's size.
    pub logical: (u32, u32),
    /// The embedded ICC profile, if any.
    pub icc: Option<Vec<u8>>,
}

fn check_input(path: &Path, limits: &Limits) -> Result<Probe, Problem> {
    let size = std::fs::metadata(path).map_err(internal)?.len();
    if size > limits.max_image_input {
        return Err(Problem::new(
            ProblemType::ImageTooLarge,
            format!(
                "image inputs are limited to {} bytes; this one has {size}",
                limits.max_image_input
            ),
        ));
    }
    let probe = probe(path)?;
    let (w, h) = (probe.width, probe.height);
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
    Ok(probe)
}

/// Decodes the image at `path` within `limits` for `steps`: shrunk on load
/// when the steps allow, oriented.
pub fn decode(path: &Path, steps: &[Step], limits: &Limits) -> Result<Decoded, Problem> {
    let probe = check_input(path, limits)?;
    let max_alloc = limits.max_pixels.saturating_mul(16);
    let shrink = match probe.jpeg {
        Some(_) => super::plan::jpeg_shrink(probe.oriented(), steps),
        None => 1,
    };
    let (image, icc) = if shrink > 1 {
        decode_scaled_jpeg(path, &probe, shrink, max_alloc)?
    } else {
        decode_whole(path, &probe, max_alloc)?
    };
    let mut image = opaque_without_alpha(image);
    image.apply_orientation(probe.orientation);
    Ok(Decoded {
        image,
        logical: probe.oriented(),
        icc,
    })
}

/// Drops an alpha channel in which every pixel is opaque: decoders of GIF
/// and some PNG and WebP files give one whatever the image holds, and an
/// output must not carry a channel the image does not use.
fn opaque_without_alpha(img: DynamicImage) -> DynamicImage {
    match &img {
        DynamicImage::ImageRgba8(b) if b.pixels().all(|p| p[3] == 255) => {
            DynamicImage::ImageRgb8(img.to_rgb8())
        }
        DynamicImage::ImageLumaA8(b) if b.pixels().all(|p| p[1] == 255) => {
            DynamicImage::ImageLuma8(img.to_luma8())
        }
        _ => img,
    }
}

fn decode_scaled_jpeg(
    path: &Path,
    probe: &Probe,
    shrink: u32,
    max_alloc: u64,
) -> Result<(DynamicImage, Option<Vec<u8>>), Problem> {
    let mut d = jpeg_decoder(path)?;
    d.set_max_decoding_buffer_size(usize::try_from(max_alloc).unwrap_or(usize::MAX));
    let want = |len: u32| u16::try_from(len.div_ceil(shrink)).unwrap_or(u16::MAX);
    let (w, h) = d
        .scale(want(probe.width), want(probe.height))
        .map_err(invalid)?;
    let pixels = d.decode().map_err(invalid)?;
    let icc = d.icc_profile();
    let (w, h) = (u32::from(w), u32::from(h));
    let wrong = || invalid("the decoded JPEG does not have its announced size");
    let image = match d.info().map(|i| i.pixel_format) {
        Some(jpeg_decoder::PixelFormat::RGB24) => {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels).ok_or_else(wrong)?)
        }
        Some(jpeg_decoder::PixelFormat::L8) => {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, pixels).ok_or_else(wrong)?)
        }
        _ => return Err(invalid("unsupported JPEG pixel format")),
    };
    Ok((image, icc))
}

fn decode_whole(
    path: &Path,
    probe: &Probe,
    max_alloc: u64,
) -> Result<(DynamicImage, Option<Vec<u8>>), Problem> {
    let mut r = reader(path)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(probe.width);
    l.max_image_height = Some(probe.height);
    l.max_alloc = Some(max_alloc);
    r.limits(l);
    let too_large_or_invalid = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => Problem::new(ProblemType::ImageTooLarge, e.to_string()),
        other => invalid(other),
    };
    let mut decoder = r.into_decoder().map_err(too_large_or_invalid)?;
    let icc = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder).map_err(too_large_or_invalid)?;
    Ok((image, icc))
}
