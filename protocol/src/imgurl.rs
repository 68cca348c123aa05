//! The URL API's path: `/img/{signature}/{options}/{input}[.{ext}]`.
//!
//! Options follow imgproxy's grammar, a subset: slash-separated
//! `name:arg:arg…` segments, later ones overriding earlier ones.
//!
//! | option | meaning |
//! |---|---|
//! | `rs:{type}:{w}:{h}[:{enlarge}]`, `resize:` | `type` is `fit` (inside the box, aspect kept), `fill` (covers the box, centre cropped) or `force` (exactly w × h); `0` for a side means "from the aspect ratio"; arguments left empty keep their value |
//! | `w:{w}`, `width:`; `h:{h}`, `height:` | one side of the box |
//! | `q:{quality}`, `quality:` | 1–100; `0` is the default (80) |
//! | `f:{format}`, `format:`, `ext:` | `jpeg`/`jpg`, `png`, `webp`, `avif`, `gif`, `auto`; the input's `.{ext}` does the same |
//! | `bl:{sigma}`, `blur:` | Gaussian blur after resizing; `0` is none |
//! | `g:ce`, `gravity:ce` | crops keep the centre (the only gravity supported) |
//! | `pr:{name}[:{name}…]`, `preset:` | the options of presets the server's configuration defines |
//!
//! [`parse`] turns a path (after the signature) into the equivalent
//! operation of `POST /v1/ops`, so both paths share the cache:
//!
//! * `fit` without enlarging is `image.thumbnail` (a `0` side is 16384);
//!   with `enlarge` it is `image.resize` with `fit: "contain"`;
//! * `fill` is `image.resize` with `fit: "cover"` (`fit` when a side is `0`);
//! * `force` is `image.resize` with `fit: "fill"`;
//! * no size at all is `image.thumbnail` 16384 × 16384 (encode only);
//! * a blur is a further step: the operation is then an `image.pipeline`;
//! * no format is `auto` (from the request's `Accept`).

use serde_json::{json, Map, Value};

use crate::key::InputHash;
use crate::operation::MAX_DIMENSION;

/// Why a URL's options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

fn err(msg: impl Into<String>) -> UrlError {
    UrlError(msg.into())
}

/// A parsed URL: the operation (as a client would write it) and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImgUrl {
    pub operation: Value,
    pub input: InputHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Fit,
    Fill,
    Force,
}

#[derive(Debug, Default)]
struct Options {
    kind: Option<Type>,
    width: u32,
    height: u32,
    enlarge: bool,
    quality: Option<u8>,
    format: Option<String>,
    blur: Option<f64>,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, UrlError> {
    v.parse()
        .map_err(|_| err(format!("{name}: {v:?} is not a valid number")))
}

fn dimension(name: &str, v: &str) -> Result<u32, UrlError> {
    let n: u32 = number(name, v)?;
    if u64::from(n) > MAX_DIMENSION {
        return Err(err(format!("{name}: {n} is above {MAX_DIMENSION}")));
    }
    Ok(n)
}

fn boolean(name: &str, v: &str) -> Result<bool, UrlError> {
    match v {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(err(format!("{name}: {v:?} is not a boolean"))),
    }
}

fn format_name(v: &str) -> Result<String, UrlError> {
    Ok(match v {
        "jpg" | "jpeg" => "jpeg",
        "png" => "png",
        "webp" => "webp",
        "avif" => "avif",
        "gif" => "gif",
        "auto" => "auto",
        _ => return Err(err(format!("format {v:?} is not supported"))),
    }
    .to_owned())
}

impl Options {
    fn apply(
        &mut self,
        segment: &str,
        presets: &dyn Fn(&str) -> Option<String>,
        in_preset: bool,
    ) -> Result<(), UrlError> {
        let mut parts = segment.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let arity = |min: usize, max: usize| {
            if args.len() < min || args.len() > max {
                Err(err(format!(
                    "option {name:?} takes {min} to {max} arguments"
                )))
            } else {
                Ok(())
            }
        };
        match name {
            "rs" | "resize" => {
                arity(1, 5)?;
                self.kind = Some(match args[0] {
                    "fit" => Type::Fit,
                    "fill" => Type::Fill,
                    "force" => Type::Force,
                    other => return Err(err(format!("resizing type {other:?} is not supported"))),
                });
                if let Some(w) = args.get(1).filter(|a| !a.is_empty()) {
                    self.width = dimension("width", w)?;
                }
                if let Some(h) = args.get(2).filter(|a| !a.is_empty()) {
                    self.height = dimension("height", h)?;
                }
                if let Some(e) = args.get(3).filter(|a| !a.is_empty()) {
                    self.enlarge = boolean("enlarge", e)?;
                }
                if let Some(x) = args.get(4).filter(|a| !a.is_empty()) {
                    if boolean("extend", x)? {
                        return Err(err("extend is not supported"));
                    }
                }
            }
            "w" | "width" => {
                arity(1, 1)?;
                self.width = dimension("width", args[0])?;
            }
            "h" | "height" => {
                arity(1, 1)?;
                self.height = dimension("height", args[0])?;
            }
            "q" | "quality" => {
                arity(1, 1)?;
                let q: u8 = number("quality", args[0])?;
                if q > 100 {
                    return Err(err("quality: must be 0 to 100"));
                }
                self.quality = (q > 0).then_some(q);
            }
            "f" | "format" | "ext" => {
                arity(1, 1)?;
                self.format = Some(format_name(args[0])?);
            }
            "bl" | "blur" => {
                arity(1, 1)?;
                let sigma: f64 = number("blur", args[0])?;
                if !(0.0..=100.0).contains(&sigma) {
                    return Err(err("blur: sigma must be 0 to 100"));
                }
                self.blur = (sigma > 0.0).then_some(sigma.max(0.1));
            }
            "g" | "gravity" => {
                arity(1, 3)?;
                if args[0] != "ce" {
                    return Err(err(format!(
                        "gravity {:?} is not supported (only ce)",
                        args[0]
                    )));
                }
            }
            "pr" | "preset" if !in_preset => {
                arity(1, 16)?;
                for preset in &args {
                    let text =
                        presets(preset).ok_or_else(|| err(format!("unknown preset {preset:?}")))?;
                    for segment in text.split('/').filter(|s| !s.is_empty()) {
                        self.apply(segment, presets, true)?;
                    }
                }
            }
            "pr" | "preset" => return Err(err("presets cannot name presets")),
            _ => return Err(err(format!("unknown option {name:?}"))),
        }
        Ok(())
    }

    fn steps(&self) -> Result<Vec<Value>, UrlError> {
        let (w, h) = (self.width, self.height);
        let any = |v: u32| if v == 0 { MAX_DIMENSION as u32 } else { v };
        let thumbnail = || json!({"op": "image.thumbnail", "width": any(w), "height": any(h)});
        let both = w > 0 && h > 0;
        let mut steps = vec![match self.kind.unwrap_or(Type::Fit) {
            Type::Fit if self.enlarge && both => {
                json!({"op": "image.resize", "width": w, "height": h, "fit": "contain"})
            }
            Type::Fit if self.enlarge => return Err(err("enlarge needs a width and a height")),
            Type::Fill if both => {
                json!({"op": "image.resize", "width": w, "height": h, "fit": "cover"})
            }
            Type::Fit | Type::Fill => thumbnail(),
            Type::Force if both => {
                json!({"op": "image.resize", "width": w, "height": h, "fit": "fill"})
            }
            Type::Force => return Err(err("rs:force needs a width and a height")),
        }];
        if let Some(sigma) = self.blur {
            steps.push(json!({"op": "image.blur", "sigma": sigma}));
        }
        Ok(steps)
    }
}

/// Parses `path`, everything after the signature (starting with `/`).
/// `presets` looks up the options of a named preset.
pub fn parse(path: &str, presets: &dyn Fn(&str) -> Option<String>) -> Result<ImgUrl, UrlError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (last, options) = segments
        .split_last()
        .filter(|(last, _)| !last.is_empty())
        .ok_or_else(|| err("the URL names no input"))?;
    let (hash, ext) = match last.split_once('.') {
        Some((h, e)) => (h, Some(e)),
        None => (*last, None),
    };
    let input: InputHash = hash.parse().map_err(|_| {
        err(format!(
            "the input {hash:?} is not a BLAKE3 hash (64 hex digits)"
        ))
    })?;
    let mut opts = Options::default();
    for segment in options.iter().filter(|s| !s.is_empty()) {
        opts.apply(segment, presets, false)?;
    }
    if let Some(ext) = ext {
        opts.format = Some(format_name(&ext.to_ascii_lowercase())?);
    }
    let format = opts.format.clone().unwrap_or_else(|| "auto".into());
    let lossy = !matches!(format.as_str(), "png" | "gif");
    let mut steps = opts.steps()?;
    let mut op = if steps.len() == 1 {
        steps.pop().expect("one step")
    } else {
        json!({"op": "image.pipeline", "steps": steps})
    };
    let map: &mut Map<String, Value> = op.as_object_mut().expect("an object");
    map.insert("format".into(), format.into());
    if let Some(q) = opts.quality.filter(|_| lossy) {
        map.insert("quality".into(), q.into());
    }
    Ok(ImgUrl {
        operation: op,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn presets(name: &str) -> Option<String> {
        (name == "thumb").then(|| "rs:fill:300:200/q:70".to_owned())
    }

    fn op(path: &str) -> Result<Value, UrlError> {
        parse(path, &presets).map(|u| u.operation)
    }

    #[test]
    fn options_become_the_equivalent_operation() {
        assert_eq!(
            op(&format!("/rs:fit:400:300/{HASH}.webp")).unwrap(),
            json!({"op": "image.thumbnail", "width": 400, "height": 300, "format": "webp"})
        );
        assert_eq!(
            op(&format!("/w:400/q:60/{HASH}")).unwrap(),
            json!({"op": "image.thumbnail", "width": 400, "height": 16384, "format": "auto", "quality": 60})
        );
        assert_eq!(
            op(&format!("/rs:fill:100:100/g:ce/f:jpg/{HASH}")).unwrap(),
            json!({"op": "image.resize", "width": 100, "height": 100, "fit": "cover", "format": "jpeg"})
        );
        assert_eq!(
            op(&format!("/pr:thumb/bl:2/{HASH}.png")).unwrap(),
            json!({"op": "image.pipeline", "format": "png", "steps": [
                {"op": "image.resize", "width": 300, "height": 200, "fit": "cover"},
                {"op": "image.blur", "sigma": 2.0}]}),
            "presets expand in place; png takes no quality"
        );
        assert_eq!(
            op(&format!("/{HASH}.avif")).unwrap(),
            json!({"op": "image.thumbnail", "width": 16384, "height": 16384, "format": "avif"})
        );
    }

    #[test]
    fn what_is_not_understood_is_refused() {
        for bad in [
            format!("/nope:1/{HASH}"),
            format!("/rs:crop:1:1/{HASH}"),
            format!("/g:no/{HASH}"),
            format!("/pr:missing/{HASH}"),
            format!("/q:101/{HASH}"),
            format!("/w:x/{HASH}"),
            format!("/rs:force:10:0/{HASH}"),
            format!("/w:10/{HASH}.tiff"),
            "/w:10/not-a-hash".to_owned(),
            "/w:10/".to_owned(),
        ] {
            assert!(op(&bad).is_err(), "{bad}");
        }
    }
}
