//! The image benchmark: thumbnails of a large JPEG and a large PNG (a
//! synthetic photograph, made before any timing) to a box, as WebP, AVIF and
//! JPEG at one quality — upcache against `vipsthumbnail` (libvips) in the
//! same run, time and bytes.
//!
//! * **upcache**: one fresh server; the inputs are stored first (identity
//!   uploads), so a run times what a client waits for a thumbnail of a
//!   stored input: `POST /v1/ops` to the last byte of
//!   `GET /v1/ops/{key}/result` (`Prefer: wait`). The entry is deleted
//!   after each run, so every run computes (the worker process, decode,
//!   resize, encode and the durable write of the result included).
//! * **vips**: `vipsthumbnail INPUT -s WxH -o OUT.ext[Q=q,strip]`, the whole
//!   process, from the same files on the same disk.
//!
//! Medians of `runs` runs each, alternating the two; ratios are upcache /
//! vips (below 1 is upcache faster or smaller).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use upcache_protocol::headers as h;
use upcache_protocol::{InputHash, Key, Operation};

use crate::machine::Machine;
use crate::report::render;
use crate::server::BenchServer;
use crate::Result;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Side of the square inputs, in pixels.
    pub side: u32,
    /// The thumbnail box (square).
    pub bound: u32,
    pub quality: u8,
    pub upcache_bin: PathBuf,
    pub vips: PathBuf,
    pub work_dir: PathBuf,
}

/// A photograph-like image: smooth colour fields, discs with hard edges, a
/// striped patch and a little sensor-like noise.
pub fn photo(side: u32) -> image::RgbImage {
    let mut rng = crate::input::Xorshift::new(0x1234_5678);
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..40)
        .map(|_| {
            let x = rng.below(u64::from(side)) as f32;
            let y = rng.below(u64::from(side)) as f32;
            let r = (side as f32 / 40.0) + rng.below(u64::from(side / 8)) as f32;
            let c = [
                rng.below(256) as f32,
                rng.below(256) as f32,
                rng.below(256) as f32,
            ];
            (x, y, r, c)
        })
        .collect();
    let s = side as f32;
    image::RgbImage::from_fn(side, side, |x, y| {
        let (fx, fy) = (x as f32 / s, y as f32 / s);
        let mut c = [
            128.0 + 90.0 * (fx * 7.0 + fy * 3.0).sin(),
            120.0 + 80.0 * (fx * 4.0 - fy * 6.0 + 1.0).sin(),
            110.0 + 70.0 * ((fx + fy) * 5.0).cos(),
        ];
        for &(dx, dy, r, color) in &discs {
            let d2 = (x as f32 - dx).powi(2) + (y as f32 - dy).powi(2);
            if d2 < r * r {
                let shade = 0.75 + 0.25 * (1.0 - d2 / (r * r));
                c = [color[0] * shade, color[1] * shade, color[2] * shade];
            }
        }
        if fx > 0.6 && fy > 0.1 && fy < 0.35 && (x / 6) % 2 == 0 {
            c = [c[0] * 0.5, c[1] * 0.5, c[2] * 0.5];
        }
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 13;
        let n = noise as f32 - 6.0;
        image::Rgb(c.map(|v| (v + n).clamp(0.0, 255.0) as u8))
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Measured {
    time: Duration,
    bytes: u64,
}

async fn store(client: &reqwest::Client, base: &str, bytes: Vec<u8>) -> Result<InputHash> {
    let hash = InputHash::of(&bytes);
    let op = serde_json::json!({"op": "identity"});
    let key = Key::derive(&hash, &Operation::parse(&op)?);
    let resp = client
        .put(format!("{base}/v1/ops/{}", key.to_hex()))
        .header(h::UPLOAD_INPUT_HASH, hash.to_hex())
        .header(h::UPLOAD_OPERATION, h::encode_operation(&op))
        .body(bytes)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("storing an input: {}", resp.status()).into());
    }
    Ok(hash)
}

async fn upcache_once(
    client: &reqwest::Client,
    base: &str,
    input: &InputHash,
    length: u64,
    op: &serde_json::Value,
    media_type: &str,
) -> Result<Measured> {
    let body =
        serde_json::json!({"input": {"blake3": input.to_hex(), "length": length}, "operation": op});
    let started = Instant::now();
    let created = client
        .post(format!("{base}/v1/ops"))
        .header("content-type", h::JSON)
        .body(body.to_string())
        .send()
        .await?;
    if !created.status().is_success() {
        return Err(format!("POST /v1/ops: {}", created.status()).into());
    }
    let status: serde_json::Value = serde_json::from_slice(&created.bytes().await?)?;
    let key = status["key"]
        .as_str()
        .ok_or("no key in the status")?
        .to_owned();
    let result = client
        .get(format!("{base}/v1/ops/{key}/result"))
        .header(h::PREFER, "wait=300")
        .send()
        .await?;
    let code = result.status();
    let content_type = result
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = result.bytes().await?;
    let time = started.elapsed();
    if code != reqwest::StatusCode::OK || content_type != media_type {
        return Err(format!(
            "result of {op}: {code} {content_type}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
        .into());
    }
    client.delete(format!("{base}/v1/ops/{key}")).send().await?;
    Ok(Measured {
        time,
        bytes: bytes.len() as u64,
    })
}

fn vips_once(opts: &Options, input: &Path, out: &Path) -> Result<Measured> {
    let _ = std::fs::remove_file(out);
    let target = format!("{}[Q={},strip]", out.display(), opts.quality);
    let started = Instant::now();
    let status = std::process::Command::new(&opts.vips)
        .arg(input)
        .args([
            "-s",
            &format!("{}x{}", opts.bound, opts.bound),
            "-o",
            &target,
        ])
        .status()
        .map_err(|e| format!("run {}: {e}", opts.vips.display()))?;
    let time = started.elapsed();
    if !status.success() {
        return Err(format!("vipsthumbnail {target}: {status}").into());
    }
    Ok(Measured {
        time,
        bytes: std::fs::metadata(out)?.len(),
    })
}

/// Runs the benchmark and prints its table.
pub async fn run(opts: Options) -> Result<()> {
    if opts.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    std::fs::create_dir_all(&opts.work_dir)?;
    let work = tempfile::Builder::new()
        .prefix("images-")
        .tempdir_in(&opts.work_dir)?;
    Machine::describe(work.path()).print(work.path());
    let version = std::process::Command::new(&opts.vips)
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "{} (apt-get install libvips-tools): {e}",
                opts.vips.display()
            )
        })?;
    println!(
        "reference: {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let img = photo(opts.side);
    let mut inputs = Vec::new();
    for (name, format) in [
        ("JPEG", image::ImageFormat::Jpeg),
        ("PNG", image::ImageFormat::Png),
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        if format == image::ImageFormat::Jpeg {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
            img.write_with_encoder(enc)?;
        } else {
            img.write_to(&mut bytes, format)?;
        }
        let bytes = bytes.into_inner();
        let path = work.path().join(format!("input.{}", name.to_lowercase()));
        std::fs::write(&path, &bytes)?;
        inputs.push((name, path, bytes));
    }
    println!(
        "inputs: {s}×{s} JPEG (quality 90) and PNG; thumbnails into {b}×{b} at quality {q}; {r} runs each, medians\n",
        s = opts.side,
        b = opts.bound,
        q = opts.quality,
        r = opts.runs
    );
    let server = BenchServer::start(&opts.upcache_bin, &work.path().join("server"))?;
    let base = server.base_url();
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (name, path, bytes) in inputs {
        let length = bytes.len() as u64;
        let hash = store(&client, &base, bytes).await?;
        for (format, ext, media_type) in [
            ("webp", "webp", "image/webp"),
            ("avif", "avif", "image/avif"),
            ("jpeg", "jpg", "image/jpeg"),
        ] {
            let op = serde_json::json!({"op": "image.thumbnail", "width": opts.bound,
                "height": opts.bound, "format": format, "quality": opts.quality});
            let out = work.path().join(format!("vips.{ext}"));
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let (mut our_bytes, mut their_bytes) = (0, 0);
            for _ in 0..opts.runs {
                let m = upcache_once(&client, &base, &hash, length, &op, media_type).await?;
                ours.push(m.time);
                our_bytes = m.bytes;
                let m = vips_once(&opts, &path, &out)?;
                theirs.push(m.time);
                their_bytes = m.bytes;
            }
            let (ours, theirs) = (median(ours), median(theirs));
            let label = format!("{name} → {format}");
            eprintln!("{label}: upcache {ours:?} {our_bytes} B, vips {theirs:?} {their_bytes} B");
            rows.push(vec![
                label,
                format!("{:.0}", ours.as_secs_f64() * 1000.0),
                format!("{:.0}", theirs.as_secs_f64() * 1000.0),
                format!("{:.2}×", ours.as_secs_f64() / theirs.as_secs_f64()),
                format!("{:.1}", our_bytes as f64 / 1000.0),
                format!("{:.1}", their_bytes as f64 / 1000.0),
                format!("{:.2}×", our_bytes as f64 / their_bytes.max(1) as f64),
            ]);
        }
    }
    server.stop()?;
    println!(
        "{}",
        render(
            &[
                "thumbnail",
                "upcache ms",
                "vips ms",
                "time ratio",
                "upcache KB",
                "vips KB",
                "bytes ratio",
            ],
            &rows,
        )
    );
    Ok(())
}
