//! The operation catalogue.
//!
//! An operation is a JSON object with an `"op"` field. [`Operation::parse`]
//! normalizes it: every field is checked, defaults are filled in, unknown
//! fields are rejected and the operation's version is recorded as `"v"`. The
//! key is derived from the RFC 8785 (JCS) serialization of that normalized
//! object, so equal requests give equal keys in every SDK.
//!
//! Bumping an operation's version changes every key of that operation.

use serde_json::{json, Map, Value};

/// Largest width or height an image operation may ask for.
pub const MAX_DIMENSION: u64 = 16_384;
/// Most steps an `image.pipeline` may have.
pub const MAX_STEPS: usize = 16;

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperationError {
    #[error("an operation must be a JSON object with an \"op\" field")]
    NotAnObject,
    #[error("unknown operation {0:?}")]
    Unknown(String),
    #[error("{op}: unknown field {field:?}")]
    UnknownField { op: String, field: String },
    #[error("{op}: field {field:?} {reason}")]
    InvalidField {
        op: String,
        field: String,
        reason: String,
    },
    #[error("{op}: version {given} is not supported (current version is {current})")]
    UnsupportedVersion {
        op: String,
        given: String,
        current: u64,
    },
}

/// Version of every image operation and image step. Version 2: EXIF
/// orientation is applied before any step, outputs are lossy WebP by
/// default, `quality` defaults to 80 and covers WebP and AVIF too.
pub const IMAGE_VERSION: u64 = 2;
/// The quality of lossy encodings when the operation names none.
pub const DEFAULT_QUALITY: u8 = 80;

/// An output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
    Avif,
    Gif,
    /// JPEG, or PNG when the image has an alpha channel: what `auto` becomes
    /// when the client accepts neither AVIF nor WebP.
    JpegOrPng,
    /// The best format the request's `Accept` allows; resolved by
    /// [`Operation::resolve_auto`] before the key is derived.
    Auto,
}

impl ImageFormat {
    const NAMES: &'static [&'static str] =
        &["png", "jpeg", "webp", "avif", "gif", "jpeg-or-png", "auto"];
    fn from_name(s: &str) -> Self {
        match s {
            "jpeg" => Self::Jpeg,
            "webp" => Self::Webp,
            "avif" => Self::Avif,
            "gif" => Self::Gif,
            "jpeg-or-png" => Self::JpegOrPng,
            "auto" => Self::Auto,
            _ => Self::Png,
        }
    }
    /// The name used in operations.
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
            Self::Avif => "avif",
            Self::Gif => "gif",
            Self::JpegOrPng => "jpeg-or-png",
            Self::Auto => "auto",
        }
    }
    /// The format of a file name extension (`jpg` and `jpeg` alike).
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "png" => Self::Png,
            "jpg" | "jpeg" => Self::Jpeg,
            "webp" => Self::Webp,
            "avif" => Self::Avif,
            "gif" => Self::Gif,
            _ => return None,
        })
    }
    /// The media type of encoded images, when the format alone decides it
    /// (`jpeg-or-png` and `auto` depend on the image or the request).
    pub fn media_type(self) -> Option<&'static str> {
        Some(match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Avif => "image/avif",
            Self::Gif => "image/gif",
            Self::JpegOrPng | Self::Auto => return None,
        })
    }
    /// Whether `quality` applies.
    fn lossy(self) -> bool {
        !matches!(self, Self::Png | Self::Gif)
    }
}

/// How an image is encoded at the end of an image operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    pub format: ImageFormat,
    /// Quality of lossy encodings, 1–100; absent for `png`, `gif` and
    /// lossless WebP.
    pub quality: Option<u8>,
    /// Lossless WebP.
    pub lossless: bool,
}

/// How `image.resize` fits the image into the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Exactly width × height, aspect ratio ignored.
    Fill,
    /// Inside the box, aspect ratio kept (like `image.thumbnail`, but may enlarge).
    Contain,
    /// Covers the box, aspect ratio kept, the overflow cropped from the centre.
    Cover,
}

/// One image transformation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Fit inside width × height keeping the aspect ratio; never enlarges.
    Thumbnail {
        width: u32,
        height: u32,
    },
    Resize {
        width: u32,
        height: u32,
        fit: Fit,
    },
    Crop {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    Rotate {
        degrees: u16,
    },
    Flip {
        vertical: bool,
    },
    Grayscale,
    Blur {
        sigma: f64,
    },
}

impl Step {
    /// An upper bound of the size of this step's output for an input of
    /// `size` (width, height): what an implementation may allocate for it.
    pub fn output_bound(&self, size: (u32, u32)) -> (u32, u32) {
        let (w, h) = size;
        match *self {
            Step::Thumbnail { width, height } => (w.min(width), h.min(height)),
            Step::Resize { width, height, .. } => (width, height),
            Step::Crop {
                x,
                y,
                width,
                height,
            } => (
                width.min(w.saturating_sub(x)),
                height.min(h.saturating_sub(y)),
            ),
            Step::Rotate { degrees: 90 | 270 } => (h, w),
            Step::Rotate { .. } | Step::Flip { .. } | Step::Grayscale | Step::Blur { .. } => (w, h),
        }
    }

    /// Pixels of the output whatever the input, for steps whose output size
    /// the operation alone fixes (resizes, which may enlarge).
    pub fn fixed_output_pixels(&self) -> Option<u64> {
        match *self {
            Step::Resize { width, height, .. } => Some(u64::from(width) * u64::from(height)),
            _ => None,
        }
    }
}

/// What an operation does, in typed form.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// The result is the input itself.
    Identity,
    /// Decode an image, apply the steps in order, encode.
    Image { steps: Vec<Step>, output: Output },
}

/// A normalized operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    kind: Kind,
    normalized: Value,
    canonical: String,
}

impl Operation {
    /// Parses and normalizes an operation object.
    pub fn parse(value: &Value) -> Result<Self, OperationError> {
        let map = value.as_object().ok_or(OperationError::NotAnObject)?;
        let name = map
            .get("op")
            .and_then(Value::as_str)
            .ok_or(OperationError::NotAnObject)?;
        let mut fields = Fields::new(name, map);
        let kind = match name {
            "identity" => {
                fields.version(1)?;
                Kind::Identity
            }
            "image.pipeline" => {
                fields.version(IMAGE_VERSION)?;
                let steps = fields.steps()?;
                let output = fields.output()?;
                Kind::Image { steps, output }
            }
            _ if name.starts_with("image.") && STEP_NAMES.contains(&name) => {
                let step = parse_step(&mut fields)?;
                let output = fields.output()?;
                Kind::Image {
                    steps: vec![step],
                    output,
                }
            }
            _ => return Err(OperationError::Unknown(name.to_owned())),
        };
        fields.finish()?;
        Ok(Self::from_kind(name, kind))
    }

    /// Parses an operation from JSON text.
    pub fn from_json(text: &str) -> Result<Self, OperationError> {
        let value: Value = serde_json::from_str(text).map_err(|_| OperationError::NotAnObject)?;
        Self::parse(&value)
    }

    /// The operation's name, e.g. `image.thumbnail`.
    pub fn name(&self) -> &str {
        self.normalized["op"].as_str().unwrap_or_default()
    }
    /// The typed operation.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }
    /// The normalized operation object (defaults filled in, version recorded).
    pub fn normalized(&self) -> &Value {
        &self.normalized
    }
    /// The RFC 8785 serialization the key is derived from.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
    /// Media type of the result, when known before running (image operations).
    pub fn content_type(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Identity => None,
            Kind::Image { output, .. } => output.format.media_type(),
        }
    }

    /// Whether the operation asks for `format: "auto"`.
    pub fn is_auto(&self) -> bool {
        matches!(&self.kind, Kind::Image { output, .. } if output.format == ImageFormat::Auto)
    }

    /// The operation with `format: "auto"` replaced by the best format the
    /// `Accept` header value allows ([`crate::accept::auto_format`]); any
    /// other operation unchanged. The key is derived from the result, so
    /// each resolved format is an entry of its own.
    pub fn resolve_auto(self, accept: Option<&str>) -> Self {
        if !self.is_auto() {
            return self;
        }
        let Kind::Image { steps, mut output } = self.kind else {
            return self;
        };
        output.format = crate::accept::auto_format(accept);
        let name = self.normalized["op"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Self::from_kind(&name, Kind::Image { steps, output })
    }

    fn from_kind(name: &str, kind: Kind) -> Self {
        let normalized = normalize(name, &kind);
        let canonical = serde_json_canonicalizer::to_string(&normalized)
            .expect("normalized operations contain only finite numbers");
        Self {
            kind,
            normalized,
            canonical,
        }
    }
}

const STEP_NAMES: &[&str] = &[
    "image.thumbnail",
    "image.resize",
    "image.crop",
    "image.rotate",
    "image.flip",
    "image.grayscale",
    "image.blur",
];

fn parse_step(f: &mut Fields<'_>) -> Result<Step, OperationError> {
    f.version(IMAGE_VERSION)?;
    let dim = |f: &mut Fields<'_>, name| f.int(name, 1, MAX_DIMENSION, None).map(|v| v as u32);
    Ok(match f.op {
        "image.thumbnail" => Step::Thumbnail {
            width: dim(f, "width")?,
            height: dim(f, "height")?,
        },
        "image.resize" => {
            let (width, height) = (dim(f, "width")?, dim(f, "height")?);
            let fit = match f.choice("fit", &["fill", "contain", "cover"], Some("fill"))? {
                "contain" => Fit::Contain,
                "cover" => Fit::Cover,
                _ => Fit::Fill,
            };
            Step::Resize { width, height, fit }
        }
        "image.crop" => Step::Crop {
            x: f.int("x", 0, MAX_DIMENSION * 4, Some(0))? as u32,
            y: f.int("y", 0, MAX_DIMENSION * 4, Some(0))? as u32,
            width: dim(f, "width")?,
            height: dim(f, "height")?,
        },
        "image.rotate" => {
            let degrees = f.int("degrees", 90, 270, None)?;
            if degrees % 90 != 0 {
                return Err(f.invalid("degrees", "must be 90, 180 or 270"));
            }
            Step::Rotate {
                degrees: degrees as u16,
            }
        }
        "image.flip" => Step::Flip {
            vertical: f.choice("direction", &["horizontal", "vertical"], Some("horizontal"))?
                == "vertical",
        },
        "image.grayscale" => Step::Grayscale,
        "image.blur" => Step::Blur {
            sigma: f.number("sigma", 0.1, 100.0)?,
        },
        other => return Err(OperationError::Unknown(other.to_owned())),
    })
}

fn step_json(step: &Step) -> Value {
    match *step {
        Step::Thumbnail { width, height } => {
            json!({"op": "image.thumbnail", "v": IMAGE_VERSION, "width": width, "height": height})
        }
        Step::Resize { width, height, fit } => {
            let fit = match fit {
                Fit::Fill => "fill",
                Fit::Contain => "contain",
                Fit::Cover => "cover",
            };
            json!({"op": "image.resize", "v": IMAGE_VERSION, "width": width, "height": height, "fit": fit})
        }
        Step::Crop {
            x,
            y,
            width,
            height,
        } => {
            json!({"op": "image.crop", "v": IMAGE_VERSION, "x": x, "y": y, "width": width, "height": height})
        }
        Step::Rotate { degrees } => {
            json!({"op": "image.rotate", "v": IMAGE_VERSION, "degrees": degrees})
        }
        Step::Flip { vertical } => json!({"op": "image.flip", "v": IMAGE_VERSION,
            "direction": if vertical { "vertical" } else { "horizontal" }}),
        Step::Grayscale => json!({"op": "image.grayscale", "v": IMAGE_VERSION}),
        Step::Blur { sigma } => json!({"op": "image.blur", "v": IMAGE_VERSION, "sigma": sigma}),
    }
}

fn normalize(name: &str, kind: &Kind) -> Value {
    match kind {
        Kind::Identity => json!({"op": "identity", "v": 1}),
        Kind::Image { steps, output } => {
            let mut obj = if name == "image.pipeline" {
                let steps: Vec<Value> = steps.iter().map(step_json).collect();
                json!({"op": "image.pipeline", "v": IMAGE_VERSION, "steps": steps})
            } else {
                step_json(&steps[0])
            };
            let map = obj.as_object_mut().expect("object");
            map.insert("format".into(), output.format.name().into());
            if let Some(q) = output.quality {
                map.insert("quality".into(), q.into());
            }
            if output.format == ImageFormat::Webp {
                map.insert("lossless".into(), output.lossless.into());
            }
            obj
        }
    }
}

/// Reads an operation's fields, remembering which were used so that
/// [`Fields::finish`] can reject the rest.
struct Fields<'a> {
    op: &'a str,
    map: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(op: &'a str, map: &'a Map<String, Value>) -> Self {
        Self {
            op,
            map,
            used: vec!["op"],
        }
    }

    fn invalid(&self, field: &str, reason: &str) -> OperationError {
        OperationError::InvalidField {
            op: self.op.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.used.push(name);
        self.map.get(name)
    }

    /// Accepts an absent `"v"` or the current version.
    fn version(&mut self, current: u64) -> Result<(), OperationError> {
        match self.get("v") {
            None => Ok(()),
            Some(v) if v.as_u64() == Some(current) => Ok(()),
            Some(v) => Err(OperationError::UnsupportedVersion {
                op: self.op.to_owned(),
                given: v.to_string(),
                current,
            }),
        }
    }

    fn int(
        &mut self,
        name: &'static str,
        min: u64,
        max: u64,
        default: Option<u64>,
    ) -> Result<u64, OperationError> {
        match self.get(name) {
            None => default.ok_or_else(|| self.invalid(name, "is required")),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(self.invalid(name, &format!("must be an integer from {min} to {max}"))),
            },
        }
    }

    fn number(&mut self, name: &'static str, min: f64, max: f64) -> Result<f64, OperationError> {
        match self.get(name).and_then(Value::as_f64) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.invalid(name, &format!("must be a number from {min} to {max}"))),
        }
    }

    fn choice(
        &mut self,
        name: &'static str,
        choices: &'static [&'static str],
        default: Option<&'static str>,
    ) -> Result<&'static str, OperationError> {
        match self.get(name) {
            None => default.ok_or_else(|| self.invalid(name, "is required")),
            Some(v) => v
                .as_str()
                .and_then(|s| choices.iter().copied().find(|c| *c == s))
                .ok_or_else(|| {
                    self.invalid(name, &format!("must be one of {}", choices.join(", ")))
                }),
        }
    }

    fn output(&mut self) -> Result<Output, OperationError> {
        let format =
            ImageFormat::from_name(self.choice("format", ImageFormat::NAMES, Some("png"))?);
        let lossless = match self.get("lossless") {
            None => false,
            Some(Value::Bool(b)) if format == ImageFormat::Webp || !b => *b,
            Some(Value::Bool(_)) => {
                return Err(self.invalid("lossless", "applies only to the webp format"))
            }
            Some(_) => return Err(self.invalid("lossless", "must be true or false")),
        };
        let quality = if format.lossy() && !lossless {
            Some(self.int("quality", 1, 100, Some(u64::from(DEFAULT_QUALITY)))? as u8)
        } else if self.get("quality").is_some() {
            return Err(self.invalid(
                "quality",
                "applies only to lossy formats (jpeg, webp, avif, jpeg-or-png, auto)",
            ));
        } else {
            None
        };
        Ok(Output {
            format,
            quality,
            lossless,
        })
    }

    fn steps(&mut self) -> Result<Vec<Step>, OperationError> {
        let list = self.get("steps").and_then(Value::as_array);
        let list = match list {
            Some(l) if !l.is_empty() && l.len() <= MAX_STEPS => l,
            _ => {
                return Err(self.invalid(
                    "steps",
                    &format!("must be a list of 1 to {MAX_STEPS} image steps"),
                ))
            }
        };
        list.iter()
            .map(|step| {
                let map = step
                    .as_object()
                    .ok_or_else(|| self.invalid("steps", "must hold objects"))?;
                let name = map.get("op").and_then(Value::as_str).unwrap_or("");
                if !STEP_NAMES.contains(&name) {
                    return Err(self.invalid("steps", &format!("cannot hold {name:?}")));
                }
                let mut fields = Fields::new(name, map);
                let step = parse_step(&mut fields)?;
                fields.finish()?;
                Ok(step)
            })
            .collect()
    }

    fn finish(self) -> Result<(), OperationError> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(field) => Err(OperationError::UnknownField {
                op: self.op.to_owned(),
                field: field.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Operation, OperationError> {
        Operation::parse(&v)
    }

    #[test]
    fn defaults_are_filled_and_version_recorded() {
        let op = parse(json!({"op": "image.thumbnail", "width": 400, "height": 300})).unwrap();
        assert_eq!(
            op.canonical(),
            r#"{"format":"png","height":300,"op":"image.thumbnail","v":2,"width":400}"#
        );
        let explicit = parse(
            json!({"v": 2, "format": "png", "height": 300, "width": 400, "op": "image.thumbnail"}),
        );
        assert_eq!(
            explicit.unwrap().canonical(),
            op.canonical(),
            "order and defaults do not matter"
        );
    }

    #[test]
    fn lossy_formats_get_a_default_quality_others_refuse_one() {
        for format in ["jpeg", "webp", "avif", "auto", "jpeg-or-png"] {
            let op = parse(json!({"op": "image.grayscale", "format": format})).unwrap();
            assert_eq!(op.normalized()["quality"], 80, "{format}");
        }
        for format in ["png", "gif"] {
            assert!(matches!(
                parse(json!({"op": "image.grayscale", "format": format, "quality": 3})),
                Err(OperationError::InvalidField { .. })
            ));
        }
        let lossless = parse(json!({"op": "image.flip", "format": "webp", "lossless": true}));
        let lossless = lossless.unwrap();
        assert_eq!(lossless.normalized()["lossless"], true);
        assert_eq!(lossless.normalized().get("quality"), None);
        assert!(parse(
            json!({"op": "image.flip", "format": "webp", "lossless": true, "quality": 5})
        )
        .is_err());
        assert!(parse(json!({"op": "image.flip", "format": "jpeg", "lossless": true})).is_err());
        let lossy = parse(json!({"op": "image.flip", "format": "webp"})).unwrap();
        assert_eq!(lossy.normalized()["lossless"], false, "recorded either way");
    }

    #[test]
    fn auto_resolves_from_accept_into_its_own_key() {
        let auto =
            parse(json!({"op": "image.thumbnail", "width": 8, "height": 8, "format": "auto"}))
                .unwrap();
        assert!(auto.is_auto());
        let avif = auto.clone().resolve_auto(Some("image/avif,image/webp,*/*"));
        let webp = auto.clone().resolve_auto(Some("image/webp"));
        let legacy = auto.clone().resolve_auto(None);
        assert_eq!(avif.normalized()["format"], "avif");
        assert_eq!(webp.normalized()["format"], "webp");
        assert_eq!(legacy.normalized()["format"], "jpeg-or-png");
        assert_eq!(legacy.normalized()["quality"], 80);
        let direct =
            parse(json!({"op": "image.thumbnail", "width": 8, "height": 8, "format": "webp"}));
        assert_eq!(webp, direct.unwrap(), "the same entry as asking for webp");
        assert_eq!(
            webp.clone().resolve_auto(Some("image/avif")),
            webp,
            "resolved once"
        );
    }

    #[test]
    fn unknown_things_are_rejected() {
        assert_eq!(
            parse(json!({"op": "nope"})),
            Err(OperationError::Unknown("nope".into()))
        );
        assert!(matches!(
            parse(json!({"op": "identity", "x": 1})),
            Err(OperationError::UnknownField { .. })
        ));
        assert!(matches!(
            parse(json!({"op": "identity", "v": 2})),
            Err(OperationError::UnsupportedVersion { .. })
        ));
        assert_eq!(parse(json!(["identity"])), Err(OperationError::NotAnObject));
        assert!(matches!(
            parse(json!({"op": "image.thumbnail", "width": 0, "height": 10})),
            Err(OperationError::InvalidField { .. })
        ));
        assert!(matches!(
            parse(json!({"op": "image.thumbnail", "width": 10.5, "height": 10})),
            Err(OperationError::InvalidField { .. })
        ));
        assert!(matches!(
            parse(json!({"op": "image.rotate", "degrees": 45})),
            Err(OperationError::InvalidField { .. })
        ));
    }

    #[test]
    fn pipelines_normalize_their_steps() {
        let op = parse(json!({"op": "image.pipeline", "format": "webp", "steps": [
            {"op": "image.thumbnail", "width": 10, "height": 10}, {"op": "image.flip"}]}))
        .unwrap();
        assert_eq!(
            op.normalized()["steps"][1],
            json!({"op": "image.flip", "v": 2, "direction": "horizontal"})
        );
        assert!(parse(json!({"op": "image.pipeline", "steps": []})).is_err());
        assert!(parse(json!({"op": "image.pipeline", "steps": [{"op": "identity"}]})).is_err());
        assert!(parse(
            json!({"op": "image.pipeline", "steps": [{"op": "image.flip", "format": "png"}]})
        )
        .is_err());
    }
}
