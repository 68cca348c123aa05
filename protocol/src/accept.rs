//! `format: "auto"`: the best image format an `Accept` header allows.
//!
//! AVIF, then WebP, when the request's `Accept` names them with a non-zero
//! quality (`image/avif`, `image/webp`); otherwise `jpeg-or-png` (JPEG, or PNG
//! when the image has an alpha channel). Wildcards (`*/*`, `image/*`) do not
//! count: browsers send them for every image request, including browsers
//! that cannot decode AVIF, so only an explicit media type selects a modern
//! format (as imgproxy and image CDNs do). An absent header is the same as
//! one naming neither.

use crate::operation::ImageFormat;

/// The `Accept` value SDKs send by default when they ask for `auto`: every
/// format an operation can produce.
pub const ALL_IMAGES: &str = "image/avif,image/webp,image/jpeg,image/png";

/// The `Vary` value of responses that depend on `Accept`.
pub const VARY_ACCEPT: &str = "Accept";

/// Whether `accept` names `media_type` explicitly with a quality above zero.
pub fn names(accept: &str, media_type: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let ty = parts.next().unwrap_or("").trim();
        if !ty.eq_ignore_ascii_case(media_type) {
            return false;
        }
        // `q=0` means "not acceptable" (RFC 9110 §12.4.2).
        !parts.any(|p| {
            let p = p.trim();
            let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) else {
                return false;
            };
            q.trim().parse::<f32>().map(|q| q <= 0.0).unwrap_or(false)
        })
    })
}

/// The format `auto` resolves to for a request with this `Accept` value.
pub fn auto_format(accept: Option<&str>) -> ImageFormat {
    let accept = accept.unwrap_or("");
    if names(accept, "image/avif") {
        ImageFormat::Avif
    } else if names(accept, "image/webp") {
        ImageFormat::Webp
    } else {
        ImageFormat::JpegOrPng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_types_choose_wildcards_do_not() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert_eq!(auto_format(Some(chrome)), ImageFormat::Avif);
        assert_eq!(
            auto_format(Some("image/webp,*/*")),
            ImageFormat::Webp,
            "an older browser"
        );
        assert_eq!(auto_format(Some("*/*")), ImageFormat::JpegOrPng);
        assert_eq!(auto_format(Some("image/*")), ImageFormat::JpegOrPng);
        assert_eq!(auto_format(None), ImageFormat::JpegOrPng);
        assert_eq!(
            auto_format(Some("image/AVIF ; q=0, image/webp;q=0.5")),
            ImageFormat::Webp,
            "q=0 refuses a type"
        );
        assert_eq!(auto_format(Some(ALL_IMAGES)), ImageFormat::Avif);
    }
}
