//! Image operations: the output decodes as the requested format and has the
//! geometry the operation promises.

use image::{GenericImageView, ImageFormat};
use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;

fn decode(bytes: &[u8], format: ImageFormat) -> image::DynamicImage {
    assert_eq!(
        image::guess_format(bytes).ok(),
        Some(format),
        "the result is a {format:?} file"
    );
    image::load_from_memory_with_format(bytes, format)
        .unwrap_or_else(|e| panic!("decode the {format:?} result: {e}"))
}

/// Asserts `(w, h)` is the largest size of `src`'s aspect ratio inside the box.
fn assert_fits(src: (u32, u32), bounds: (u32, u32), got: (u32, u32)) {
    let (w, h) = got;
    assert!(
        w <= bounds.0 && h <= bounds.1,
        "{got:?} is not inside {bounds:?}"
    );
    assert!(
        w == bounds.0 || h == bounds.1,
        "{got:?} does not fill {bounds:?} on either side"
    );
    // Aspect ratio kept to within a pixel of rounding.
    let want_h = w as f64 * src.1 as f64 / src.0 as f64;
    let want_w = h as f64 * src.0 as f64 / src.1 as f64;
    assert!(
        (h as f64 - want_h).abs() <= 1.0 || (w as f64 - want_w).abs() <= 1.0,
        "{got:?} does not keep the aspect ratio of {src:?}"
    );
}

#[tokio::test]
async fn thumbnail_in_every_format_keeps_the_aspect_ratio() {
    let server = Server::start().await;
    let input = png(640, 480);
    for (name, format) in [
        ("png", ImageFormat::Png),
        ("jpeg", ImageFormat::Jpeg),
        ("webp", ImageFormat::WebP),
    ] {
        let job = Job::new(
            input.clone(),
            json!({"op": "image.thumbnail", "width": 200, "height": 200, "format": name}),
        );
        let resp = server.oneshot_request(&job).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        assert_eq!(
            header(resp.headers(), "content-type"),
            job.op.content_type().unwrap()
        );
        let img = decode(&resp.bytes().await.unwrap(), format);
        assert_eq!(
            img.dimensions(),
            (200, 150),
            "640×480 into 200×200 as {name}"
        );
    }
}

#[tokio::test]
async fn thumbnail_geometry() {
    let server = Server::start().await;
    for (src, bounds) in [
        ((300, 600), (100, 100)),
        ((1000, 300), (256, 256)),
        ((333, 777), (50, 400)),
    ] {
        let job = Job::new(
            png(src.0, src.1),
            json!({"op": "image.thumbnail", "width": bounds.0, "height": bounds.1}),
        );
        let img = decode(&server.oneshot(&job).await, ImageFormat::Png);
        assert_fits(src, bounds, img.dimensions());
    }
    // A thumbnail never enlarges.
    let job = Job::new(
        png(100, 50),
        json!({"op": "image.thumbnail", "width": 400, "height": 400}),
    );
    assert_eq!(
        decode(&server.oneshot(&job).await, ImageFormat::Png).dimensions(),
        (100, 50)
    );
}

#[tokio::test]
async fn pipeline_of_steps() {
    let server = Server::start().await;
    let job = Job::new(
        png(120, 80),
        json!({"op": "image.pipeline", "steps": [
            {"op": "image.rotate", "degrees": 90},
            {"op": "image.grayscale"},
            {"op": "image.crop", "x": 10, "y": 20, "width": 50, "height": 60},
        ]}),
    );
    let img = decode(&server.oneshot(&job).await, ImageFormat::Png);
    assert_eq!(
        img.dimensions(),
        (50, 60),
        "rotated to 80×120, then cropped"
    );
    let rgb = img.to_rgb8();
    assert!(
        rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "grayscale pixels"
    );
}

#[tokio::test]
async fn resize_fill_and_cover() {
    let server = Server::start().await;
    let input = png(400, 200);
    for (fit, want) in [
        ("fill", (100, 100)),
        ("cover", (100, 100)),
        ("contain", (100, 50)),
    ] {
        let job = Job::new(
            input.clone(),
            json!({"op": "image.resize", "width": 100, "height": 100, "fit": fit}),
        );
        assert_eq!(
            decode(&server.oneshot(&job).await, ImageFormat::Png).dimensions(),
            want,
            "fit {fit}"
        );
    }
}
