//! Image outputs as a user sees them: every output format from JPEG, PNG
//! with alpha, GIF and WebP inputs, at the promised size, with alpha only
//! when the source has it; EXIF orientation applied before the geometry;
//! `format: "auto"` chosen from `Accept`.

use image::ImageFormat;
use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::pictures::{encode, inspect, jpeg_with_orientation, quadrants, stored_for};
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::entry_path;
use upcache_protocol::{Key, Operation};

const OUTPUTS: [&str; 5] = ["jpeg", "png", "webp", "avif", "gif"];

#[tokio::test]
async fn every_output_format_from_every_input_format() {
    let server = Server::start().await;
    let inputs = [
        (
            "jpeg",
            encode(&quadrants(320, 240, false), ImageFormat::Jpeg),
            false,
        ),
        (
            "png with alpha",
            encode(&quadrants(320, 240, true), ImageFormat::Png),
            true,
        ),
        (
            "gif",
            encode(&quadrants(320, 240, false), ImageFormat::Gif),
            false,
        ),
        (
            "webp",
            encode(&quadrants(320, 240, false), ImageFormat::WebP),
            false,
        ),
    ];
    for (input_name, input, alpha) in inputs {
        for format in OUTPUTS {
            let job = Job::new(
                input.clone(),
                json!({"op": "image.thumbnail", "width": 100, "height": 100, "format": format}),
            );
            let resp = server.oneshot_request(&job).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{input_name} to {format}");
            let content_type = header(resp.headers(), "content-type").to_owned();
            let seen = inspect(&resp.bytes().await.unwrap());
            assert_eq!(seen.format, format, "{input_name} to {format}");
            assert_eq!(content_type, format!("image/{format}"));
            assert_eq!(seen.size, (100, 75), "{input_name} to {format}");
            if format != "gif" {
                // GIF decodes as RGBA whatever it holds.
                assert_eq!(
                    seen.alpha,
                    alpha && format != "jpeg",
                    "{input_name} to {format}: alpha only when the source has it"
                );
            }
        }
    }
}

#[tokio::test]
async fn lossy_webp_is_small_and_quality_and_lossless_matter() {
    let server = Server::start().await;
    let input = noisy_png(640, 480, 7);
    let mut sizes = Vec::new();
    for op in [
        json!({"op": "image.thumbnail", "width": 320, "height": 320, "format": "webp", "quality": 30}),
        json!({"op": "image.thumbnail", "width": 320, "height": 320, "format": "webp", "quality": 95}),
        json!({"op": "image.thumbnail", "width": 320, "height": 320, "format": "webp", "lossless": true}),
    ] {
        let bytes = server.oneshot(&Job::new(input.clone(), op)).await;
        assert_eq!(inspect(&bytes).size, (320, 240));
        sizes.push(bytes.len());
    }
    assert!(
        sizes[0] < sizes[1] && sizes[1] < sizes[2],
        "quality 30 < quality 95 < lossless: {sizes:?}"
    );
}

#[tokio::test]
async fn exif_orientation_is_applied_before_the_geometry() {
    let server = Server::start().await;
    // Upright: 320 wide, 240 high, red in the top-left quadrant.
    let upright = quadrants(320, 240, false);
    for tag in 1..=8u16 {
        let input = jpeg_with_orientation(&stored_for(&upright, tag), tag);
        // 80 × 80: shrunk on load (by 1/2 or more); 400 × 400: decoded whole.
        for (bound, want) in [(80, (80, 60)), (400, (320, 240))] {
            let job = Job::new(
                input.clone(),
                json!({"op": "image.thumbnail", "width": bound, "height": bound, "format": "png"}),
            );
            let seen = inspect(&server.oneshot(&job).await);
            assert_eq!(seen.size, want, "orientation {tag}, box {bound}");
            let px = seen.pixels.unwrap();
            let (w, h) = want;
            let top_left = px.get_pixel(w / 4, h / 4);
            let bottom_right = px.get_pixel(3 * w / 4, 3 * h / 4);
            assert!(
                top_left[0] > 150 && top_left[2] < 100,
                "orientation {tag}, box {bound}: top-left is red, got {top_left:?}"
            );
            assert!(
                bottom_right[2] > 150 && bottom_right[0] < 100,
                "orientation {tag}, box {bound}: bottom-right is blue, got {bottom_right:?}"
            );
        }
    }
}

/// A one-shot PUT of an `auto` operation with `accept`, to the key the
/// client derives by resolving `auto` the same way.
async fn auto_put(server: &Server, input: &[u8], accept: Option<&str>) -> reqwest::Response {
    let op_json = json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "auto"});
    let job = Job::new(input.to_vec(), op_json.clone());
    let resolved: Operation = job.op.clone().resolve_auto(accept);
    let key = Key::derive(&job.hash, &resolved);
    let mut req = server
        .client()
        .put(server.url(&entry_path(&key)))
        .header(h::UPLOAD_INPUT_HASH, job.hash.to_hex())
        .header(h::UPLOAD_OPERATION, job.op_header())
        .body(input.to_vec());
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn format_auto_follows_accept() {
    let server = Server::start().await;
    let opaque = encode(&quadrants(256, 192, false), ImageFormat::Jpeg);
    let transparent = encode(&quadrants(256, 192, true), ImageFormat::Png);
    let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    for (input, accept, want) in [
        (&opaque, Some(chrome), "avif"),
        (&opaque, Some("image/webp,*/*"), "webp"),
        (&opaque, Some("image/avif;q=0,image/webp"), "webp"),
        (&opaque, Some("image/*,*/*;q=0.8"), "jpeg"),
        (&opaque, None, "jpeg"),
        (&transparent, Some("*/*"), "png"),
        (&transparent, Some(chrome), "avif"),
    ] {
        let resp = auto_put(&server, input, accept).await;
        assert_eq!(resp.status(), StatusCode::OK, "{accept:?}");
        let seen = inspect(&resp.bytes().await.unwrap());
        assert_eq!(seen.format, want, "Accept {accept:?}");
        assert_eq!(seen.size, (64, 48));
    }
    // POST /v1/ops resolves it too, before the key, and says it varies.
    let job = Job::new(
        opaque.clone(),
        json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "auto"}),
    );
    let webp =
        job.with_op(json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "webp"}));
    let resp = server
        .client()
        .post(server.url("/v1/ops"))
        .header("content-type", h::JSON)
        .header("accept", "image/webp")
        .body(job.create_request(None).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(header(resp.headers(), "vary"), "Accept");
    let status: upcache_protocol::Status =
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.key, webp.key, "the same entry as asking for webp");
}

#[tokio::test]
async fn the_sdk_resolves_auto_with_the_accept_it_sends() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = upcache_e2e::sdk::input_file(
        dir.path(),
        "photo.jpg",
        &encode(&quadrants(256, 192, false), ImageFormat::Jpeg),
    );
    let op = json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "auto"});
    for (accept, want) in [
        (None, "image/avif"),
        (Some("image/webp"), "image/webp"),
        (Some("image/png,image/jpeg"), "image/jpeg"),
    ] {
        let mut options = upcache_e2e::sdk::fast_options();
        if let Some(a) = accept {
            options.accept = a.to_owned();
        }
        let client = upcache_client::Client::with_options(&server.base_url(), options).unwrap();
        let done = client.put_file(&path, &op).await.unwrap();
        let result = done
            .status
            .result
            .as_ref()
            .expect("a complete entry has a result");
        assert_eq!(result.content_type, want, "Accept {accept:?}");
    }
}

#[tokio::test]
async fn outputs_carry_no_metadata() {
    let server = Server::start().await;
    let input = jpeg_with_orientation(&quadrants(320, 240, false), 1);
    assert!(input.windows(4).any(|w| w == b"Exif"), "the input has EXIF");
    for format in OUTPUTS {
        let job = Job::new(
            input.clone(),
            json!({"op": "image.thumbnail", "width": 100, "height": 100, "format": format}),
        );
        let out = server.oneshot(&job).await;
        for marker in [&b"Exif"[..], b"ICC_PROFILE", b"iCCP", b"eXIf"] {
            assert!(
                !out.windows(marker.len()).any(|w| w == marker),
                "{format} output has {}",
                String::from_utf8_lossy(marker)
            );
        }
    }
}
