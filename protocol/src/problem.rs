//! The catalogue of problem types (RFC 9457).
//!
//! Every error of the API is an `application/problem+json` document whose
//! `type` is `urn:upcache:problem:<slug>`. The slugs are stable: clients
//! branch on them. `spec/protocol.md` documents each one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Prefix of every problem type URI.
pub const TYPE_PREFIX: &str = "urn:upcache:problem:";

macro_rules! catalogue {
    ($($variant:ident => ($slug:literal, $status:literal, $title:literal),)*) => {
        /// Every kind of error the API reports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType { $($variant,)* }

        impl ProblemType {
            /// All problem types, for documentation and tests.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];
            /// The stable slug.
            pub fn slug(self) -> &'static str { match self { $(Self::$variant => $slug,)* } }
            /// The HTTP status it is reported with.
            pub fn status(self) -> u16 { match self { $(Self::$variant => $status,)* } }
            /// A short human summary.
            pub fn title(self) -> &'static str { match self { $(Self::$variant => $title,)* } }
        }
    };
}

catalogue! {
    MalformedRequest => ("malformed-request", 400, "The request is malformed"),
    InvalidKey => ("invalid-key", 400, "The key is not 64 hexadecimal digits"),
    KeyMismatch => ("key-mismatch", 400, "The key does not match the input and operation"),
    InvalidHeader => ("invalid-header", 400, "A header is missing or malformed"),
    InvalidUrlOptions => ("invalid-url-options", 400, "The image URL's options are not understood"),
    InvalidSignature => ("invalid-signature", 403, "The image URL's signature is missing or wrong"),
    ForeignUpload => ("foreign-upload", 400, "The upload belongs to another server"),
    UriTooLong => ("uri-too-long", 414, "The request target is too long"),
    HeadersTooLarge => ("headers-too-large", 431, "The request's header fields are too large"),
    InvalidOperation => ("invalid-operation", 422, "The operation is invalid"),
    UnknownOperation => ("unknown-operation", 422, "The operation is not known"),
    UnsupportedVersion => ("unsupported-operation-version", 422, "The operation version is not supported"),
    InvalidBlockSize => ("invalid-block-size", 400, "The block size is not allowed"),
    InvalidBlock => ("invalid-block", 400, "The block index is out of range"),
    BlockLengthMismatch => ("block-length-mismatch", 400, "The block body has the wrong length"),
    BodyLengthMismatch => ("body-length-mismatch", 400, "The body is longer or shorter than announced"),
    LengthMismatch => ("length-mismatch", 409, "The input length differs from the entry's"),
    LengthRequired => ("length-required", 411, "Content-Length is required"),
    InputTooLarge => ("input-too-large", 413, "The input exceeds the configured maximum"),
    RequestTooLarge => ("request-too-large", 413, "The request body is too large"),
    UnsupportedMediaType => ("unsupported-media-type", 415, "The body's content type is not accepted here"),
    OffsetMismatch => ("offset-mismatch", 409, "Upload-Offset does not match the received bytes"),
    NotUploading => ("not-uploading", 409, "The entry is not accepting uploads"),
    UploadBusy => ("upload-busy", 409, "Another request is writing the same bytes"),
    BodyTooSlow => ("body-too-slow", 408, "The request body arrived too slowly"),
    BlockHashMismatch => ("block-hash-mismatch", 460, "The block does not match Upload-Block-Hash"),
    ChecksumMismatch => ("checksum-mismatch", 460, "The body does not match Upload-Checksum"),
    UnsupportedChecksum => ("unsupported-checksum", 400, "The checksum algorithm is not supported"),
    UploadLengthExceeded => ("upload-length-exceeded", 413, "The body runs past the upload's length"),
    UploadExpired => ("upload-expired", 410, "The upload expired"),
    UnsupportedTusVersion => ("unsupported-tus-version", 412, "The tus protocol version is not supported"),
    FinalUpload => ("final-upload", 403, "A final upload takes no bytes of its own"),
    InputHashMismatch => ("input-hash-mismatch", 422, "The uploaded bytes do not hash to the claimed input hash"),
    InvalidImage => ("invalid-image", 422, "The input is not a decodable image"),
    ImageTooLarge => ("image-too-large", 422, "The image exceeds the decoding limits"),
    OperationFailed => ("operation-failed", 422, "The operation failed on this input"),
    OperationTimeout => ("operation-timeout", 503, "The operation took longer than allowed"),
    NotFound => ("not-found", 404, "No such entry"),
    MethodNotAllowed => ("method-not-allowed", 405, "The method is not allowed on this resource"),
    RangeNotSatisfiable => ("range-not-satisfiable", 416, "The range is outside the result"),
    Unauthorized => ("unauthorized", 401, "A valid API key is required"),
    InvalidToken => ("invalid-token", 401, "The token is malformed or its signature does not verify"),
    TokenExpired => ("token-expired", 401, "The token expired or is not valid yet"),
    UnknownTokenKey => ("unknown-token-key", 401, "The token names a signing key this server does not have"),
    OutOfScope => ("out-of-scope", 403, "The token does not cover this entry, input or operation"),
    TokenNotAllowed => ("token-not-allowed", 403, "The token does not allow this request"),
    InvalidUrlSignature => ("invalid-url-signature", 403, "The presigned URL is malformed or its signature does not verify"),
    UrlExpired => ("url-expired", 403, "The presigned URL expired"),
    Internal => ("internal", 500, "Internal server error"),
    InsufficientStorage => ("insufficient-storage", 507, "The server has no room to store the request"),
    DiskCapExceeded => ("disk-cap-exceeded", 507, "The cache's disk cap leaves no room for the request"),
    AdminKeyRequired => ("admin-key-required", 403, "This endpoint needs an admin key"),
}

impl ProblemType {
    /// The `type` URI.
    pub fn uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.slug())
    }
    /// Looks a type up by its slug (the last part of its URI).
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.slug() == slug)
    }
    /// Looks a type up by its URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let slug = uri.strip_prefix(TYPE_PREFIX)?;
        Self::ALL.iter().copied().find(|t| t.slug() == slug)
    }
}

/// A problem type travels (and is stored) as its slug.
impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.slug())
    }
}

impl<'de> Deserialize<'de> for ProblemType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let slug = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_slug(&slug)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown problem type {slug}")))
    }
}

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members (e.g. `offset` for an offset mismatch).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem of the given type with a detail message.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// The catalogued type, if the URI is one of ours.
    pub fn kind(&self) -> Option<ProblemType> {
        ProblemType::from_uri(&self.type_uri)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.status)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for t in ProblemType::ALL {
            assert!(seen.insert(t.slug()), "duplicate slug {}", t.slug());
            assert_eq!(ProblemType::from_uri(&t.uri()), Some(*t));
            assert!((400..600).contains(&t.status()));
        }
    }

    #[test]
    fn serializes_as_rfc9457() {
        let p = Problem::new(ProblemType::OffsetMismatch, "expected 10").with("offset", 10);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:upcache:problem:offset-mismatch");
        assert_eq!(v["status"], 409);
        assert_eq!(v["offset"], 10);
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}
