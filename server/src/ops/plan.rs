//! Geometry an image operation decides before decoding: the size its first
//! resizing step makes, and so how far a JPEG may be shrunk while it is
//! decoded (DCT-domain scaling by 1/2, 1/4 or 1/8) without losing detail
//! the output needs. The decoder ([`super::decode`]) and the memory
//! estimate ([`super::budget`]) share these functions, so the estimate
//! follows the path the operation takes.

use upcache_protocol::operation::{Fit, Step};

/// The largest size of `src`'s aspect ratio inside `bounds` (`cover`: the
/// smallest covering it), with the `image` crate's integer rounding.
pub fn fit(src: (u32, u32), bounds: (u32, u32), cover: bool) -> (u32, u32) {
    let (w, h) = (u64::from(src.0.max(1)), u64::from(src.1.max(1)));
    let (bw, bh) = (u64::from(bounds.0), u64::from(bounds.1));
    let wratio = bw as f64 / w as f64;
    let hratio = bh as f64 / h as f64;
    let use_width = if cover {
        wratio > hratio
    } else {
        wratio <= hratio
    };
    let clamp = |v: u64| v.clamp(1, u64::from(u32::MAX)) as u32;
    if use_width {
        (clamp(bw), clamp(h * bw / w))
    } else {
        (clamp(w * bh / h), clamp(bh))
    }
}

/// The size `step` resamples an image of (logical) size `src` to, before
/// any cropping; `None` when it does not resample.
pub fn resampled_size(step: &Step, src: (u32, u32)) -> Option<(u32, u32)> {
    match *step {
        Step::Thumbnail { width, height } => {
            (src.0 > width || src.1 > height).then(|| fit(src, (width, height), false))
        }
        Step::Resize {
            width,
            height,
            fit: how,
        } => Some(match how {
            Fit::Fill => (width, height),
            Fit::Contain => fit(src, (width, height), false),
            Fit::Cover => fit(src, (width, height), true),
        }),
        _ => None,
    }
}

/// The denominator (1, 2, 4 or 8) a JPEG of oriented size `src` may be
/// shrunk by while decoding: the largest whose result is still at least
/// the size the first step resamples to, in both directions. So the
/// target is at most half the source whenever it is above 1.
pub fn jpeg_shrink(src: (u32, u32), steps: &[Step]) -> u32 {
    let Some(target) = steps.first().and_then(|s| resampled_size(s, src)) else {
        return 1;
    };
    [8, 4, 2]
        .into_iter()
        .find(|&d| src.0.div_ceil(d) >= target.0 && src.1.div_ceil(d) >= target.1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_while_the_target_still_fits() {
        let thumb = |w, h| Step::Thumbnail {
            width: w,
            height: h,
        };
        assert_eq!(jpeg_shrink((3900, 3900), &[thumb(400, 400)]), 8);
        assert_eq!(jpeg_shrink((3900, 3900), &[thumb(600, 600)]), 4);
        assert_eq!(jpeg_shrink((3900, 3900), &[thumb(1950, 1950)]), 2);
        assert_eq!(jpeg_shrink((3900, 3900), &[thumb(2000, 2000)]), 1);
        assert_eq!(
            jpeg_shrink((300, 300), &[thumb(400, 400)]),
            1,
            "no enlarging"
        );
        assert_eq!(
            jpeg_shrink((4000, 1000), &[Step::Grayscale, thumb(10, 10)]),
            1,
            "only a first step decides"
        );
        let cover = Step::Resize {
            width: 400,
            height: 400,
            fit: Fit::Cover,
        };
        // Covering 400×400 from 4000×1000 needs 1600×400: half at most.
        assert_eq!(jpeg_shrink((4000, 1000), &[cover]), 2);
    }

    #[test]
    fn fit_rounds_like_the_image_crate() {
        assert_eq!(fit((640, 480), (200, 200), false), (200, 150));
        assert_eq!(fit((3900, 2600), (400, 400), false), (400, 266));
        assert_eq!(fit((4000, 1000), (400, 400), true), (1600, 400));
    }
}
