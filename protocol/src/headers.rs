//! Header names, media types and header value codecs of the `/v1` API.

use base64::Engine;

use crate::operation::{Operation, OperationError};

/// BLAKE3 of the whole input (hex), on a one-shot `PUT`.
pub const UPLOAD_INPUT_HASH: &str = "upload-input-hash";
/// The operation as base64url JSON, on a one-shot `PUT`.
pub const UPLOAD_OPERATION: &str = "upload-operation";
/// Bytes received contiguously from 0 (request: where a `PATCH` starts).
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// Total input length.
pub const UPLOAD_LENGTH: &str = "upload-length";
/// Block size of the upload.
pub const UPLOAD_BLOCK_SIZE: &str = "upload-block-size";
/// BLAKE3 of one block's bytes (hex), on a block `PUT`.
pub const UPLOAD_BLOCK_HASH: &str = "upload-block-hash";
/// The entry's state (`uploading`, `processing`, `complete`, `failed`).
pub const UPLOAD_STATE: &str = "upload-state";
/// Missing blocks as ranges (`0-3,7`).
pub const UPLOAD_MISSING: &str = "upload-missing";
/// The commutative digest of the received blocks (hex).
pub const UPLOAD_DIGEST: &str = "upload-digest";
/// The entry's key (hex).
pub const UPLOAD_KEY: &str = "upload-key";
/// RFC 7240 preferences: `wait=N`, `return=minimal`, `respond-async`.
pub const PREFER: &str = "prefer";
/// Which preferences were honoured.
pub const PREFERENCE_APPLIED: &str = "preference-applied";

/// Body type of `PATCH` appends.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Body type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Body type of status documents.
pub const JSON: &str = "application/json";
/// `Cache-Control` of results: they never change under their key.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of a result's redirect to a presigned URL that is valid
/// for `ttl_secs`: kept by the client alone (the URL is a credential) and
/// for half the URL's life at most, never over a minute.
pub fn redirect_cache_control(ttl_secs: u64) -> String {
    format!("private, max-age={}", (ttl_secs / 2).min(60))
}

// tus 1.0.0 (the `/files/` front end; https://tus.io/protocols/resumable-upload).

/// The tus protocol version spoken, and the only one accepted.
pub const TUS_PROTOCOL_VERSION: &str = "1.0.0";
/// tus: the protocol version a request or response uses.
pub const TUS_RESUMABLE: &str = "tus-resumable";
/// tus: the protocol versions the server supports.
pub const TUS_VERSION: &str = "tus-version";
/// tus: the extensions the server supports.
pub const TUS_EXTENSION: &str = "tus-extension";
/// tus: the largest upload accepted, in bytes.
pub const TUS_MAX_SIZE: &str = "tus-max-size";
/// tus: the checksum algorithms supported.
pub const TUS_CHECKSUM_ALGORITHM: &str = "tus-checksum-algorithm";
/// tus: `key base64value` pairs, comma-separated.
pub const UPLOAD_METADATA: &str = "upload-metadata";
/// tus: `1` when the length is not known at creation.
pub const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
/// tus: `partial`, or `final;URL URL …`.
pub const UPLOAD_CONCAT: &str = "upload-concat";
/// tus: when an unfinished upload expires (an HTTP date).
pub const UPLOAD_EXPIRES: &str = "upload-expires";
/// tus: `algorithm base64digest` of a request's body.
pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
/// The `Host` a client used, as a reverse proxy that rewrites `Host` passes
/// it on (tus `Upload-Concat` URLs name this server by it).
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
/// Asks a `POST` to be handled as another method (tus clients behind
/// proxies that drop `PATCH`/`DELETE`).
pub const X_HTTP_METHOD_OVERRIDE: &str = "x-http-method-override";

/// Who sends a header of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Clients, on requests.
    ByClient,
    /// The server, on answers.
    ByServer,
    /// Both.
    ByBoth,
}

/// Every header the API and its tus front end use — their own and the
/// standard ones they rely on — with who sends it: the one table from which
/// the server's CORS lists (what a page may send, what it may read) are made.
pub const HEADERS: &[(&str, Sent)] = &[
    (UPLOAD_INPUT_HASH, Sent::ByClient),
    (UPLOAD_OPERATION, Sent::ByClient),
    (UPLOAD_OFFSET, Sent::ByBoth),
    (UPLOAD_LENGTH, Sent::ByBoth),
    (UPLOAD_BLOCK_SIZE, Sent::ByServer),
    (UPLOAD_BLOCK_HASH, Sent::ByClient),
    (UPLOAD_STATE, Sent::ByServer),
    (UPLOAD_MISSING, Sent::ByServer),
    (UPLOAD_DIGEST, Sent::ByServer),
    (UPLOAD_KEY, Sent::ByServer),
    (PREFER, Sent::ByClient),
    (PREFERENCE_APPLIED, Sent::ByServer),
    (TUS_RESUMABLE, Sent::ByBoth),
    (TUS_VERSION, Sent::ByServer),
    (TUS_EXTENSION, Sent::ByServer),
    (TUS_MAX_SIZE, Sent::ByServer),
    (TUS_CHECKSUM_ALGORITHM, Sent::ByServer),
    (UPLOAD_METADATA, Sent::ByBoth),
    (UPLOAD_DEFER_LENGTH, Sent::ByBoth),
    (UPLOAD_CONCAT, Sent::ByBoth),
    (UPLOAD_EXPIRES, Sent::ByServer),
    (UPLOAD_CHECKSUM, Sent::ByBoth),
    (X_HTTP_METHOD_OVERRIDE, Sent::ByClient),
    // Standard headers the API relies on.
    ("authorization", Sent::ByClient),
    ("content-type", Sent::ByClient),
    ("range", Sent::ByClient),
    ("if-none-match", Sent::ByClient),
    ("x-requested-with", Sent::ByClient),
    ("x-request-id", Sent::ByClient),
    ("location", Sent::ByServer),
    ("etag", Sent::ByServer),
    ("content-range", Sent::ByServer),
    ("retry-after", Sent::ByServer),
];

/// The headers of [`HEADERS`] a client sends, comma-separated (CORS
/// `Access-Control-Allow-Headers`).
pub fn client_headers() -> String {
    listed(|s| s != Sent::ByServer)
}

/// The headers of [`HEADERS`] the server sends, comma-separated (CORS
/// `Access-Control-Expose-Headers`).
pub fn server_headers() -> String {
    listed(|s| s != Sent::ByClient)
}

fn listed(keep: impl Fn(Sent) -> bool) -> String {
    HEADERS
        .iter()
        .filter(|(_, s)| keep(*s))
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of `Upload-Block-Hash`: a block's BLAKE3, in one of two forms.
///
/// * `HEX` — the BLAKE3 of the block's bytes alone, as `b3sum` prints it for
///   a file holding just that block. Easy to compute anywhere; the server
///   hashes the block a second time to check it.
/// * `cv=HEX` — the block's chaining value in the input's BLAKE3 tree (for a
///   one-block input, the input's hash): the value the server computes
///   anyway for the whole-input check (§5.4), so checking it costs nothing,
///   and a client that hashed the input block by block already has it. It
///   also binds the block to its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockHash {
    /// BLAKE3 of the block's bytes alone.
    Alone(crate::InputHash),
    /// The block's chaining value at its place in the input.
    Chaining([u8; 32]),
}

/// A malformed `Upload-Block-Hash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Upload-Block-Hash must be 64 hex digits, or cv= and 64 hex digits")]
pub struct BlockHashError;

impl BlockHash {
    /// Parses a header value.
    pub fn parse(value: &str) -> Result<Self, BlockHashError> {
        let value = value.trim();
        match value.strip_prefix("cv=") {
            Some(hex) => {
                let mut cv = [0u8; 32];
                hex::decode_to_slice(hex, &mut cv).map_err(|_| BlockHashError)?;
                Ok(BlockHash::Chaining(cv))
            }
            None => value
                .parse()
                .map(BlockHash::Alone)
                .map_err(|_| BlockHashError),
        }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        match self {
            BlockHash::Alone(h) => h.to_hex(),
            BlockHash::Chaining(cv) => format!("cv={}", hex::encode(cv)),
        }
    }
}

/// Encodes an operation for the `Upload-Operation` header (base64url, no padding).
pub fn encode_operation(op: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(op.to_string())
}

/// A bad `Upload-Operation` header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperationHeaderError {
    #[error("Upload-Operation must be base64url-encoded JSON")]
    Encoding,
    #[error(transparent)]
    Operation(#[from] OperationError),
}

/// Decodes and normalizes an `Upload-Operation` header (padding optional; the
/// standard alphabet is accepted too).
pub fn decode_operation(value: &str) -> Result<Operation, OperationHeaderError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let value = value.trim();
    let bytes = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(value).ok())
        .ok_or(OperationHeaderError::Encoding)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| OperationHeaderError::Encoding)?;
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|_| OperationHeaderError::Encoding)?;
    Ok(Operation::parse(&json)?)
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750). The
/// scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` too.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An `Authorization` value carrying `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Preferences of a request (RFC 7240 `Prefer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefer {
    /// `wait=N`: seconds the client is willing to wait.
    pub wait: Option<u64>,
    /// `return=minimal`: a redirect or status instead of a body.
    pub return_minimal: bool,
    /// `respond-async`: do not wait for processing.
    pub respond_async: bool,
}

impl Prefer {
    /// Parses every `Prefer` header value of a request; unknown preferences are ignored.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = Self::default();
        for token in values.into_iter().flat_map(|v| v.split(',')) {
            let token = token.split(';').next().unwrap_or("").trim();
            let (name, value) = match token.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (token, None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("wait", Some(v)) => p.wait = v.parse().ok().or(p.wait),
                ("return", Some(v)) if v.eq_ignore_ascii_case("minimal") => p.return_minimal = true,
                ("respond-async", _) => p.respond_async = true,
                _ => {}
            }
        }
        p
    }

    /// The header value, preferences in a fixed order; empty when none is set.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if self.respond_async {
            out.push("respond-async".to_owned());
        }
        if self.return_minimal {
            out.push("return=minimal".to_owned());
        }
        if let Some(wait) = self.wait {
            out.push(format!("wait={wait}"));
        }
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_hash_forms_round_trip() {
        let alone = BlockHash::Alone(crate::InputHash::of(b"block"));
        let chaining = BlockHash::Chaining([0xab; 32]);
        for h in [alone, chaining] {
            assert_eq!(BlockHash::parse(&h.to_header()), Ok(h));
        }
        assert_eq!(chaining.to_header(), format!("cv={}", "ab".repeat(32)));
        assert_eq!(
            BlockHash::parse(&format!(" {} ", alone.to_header())),
            Ok(alone)
        );
        for bad in [
            "",
            "cv=",
            "cv=12",
            "xyz",
            &format!("cv:{}", "ab".repeat(32)),
        ] {
            assert_eq!(BlockHash::parse(bad), Err(BlockHashError), "{bad:?}");
        }
    }

    #[test]
    fn operation_header_round_trip() {
        let op = json!({"op": "image.thumbnail", "width": 4, "height": 4});
        let decoded = decode_operation(&encode_operation(&op)).unwrap();
        assert_eq!(decoded, Operation::parse(&op).unwrap());
        assert_eq!(decode_operation("!!"), Err(OperationHeaderError::Encoding));
        assert!(matches!(
            decode_operation(&encode_operation(&json!({"op": "x"}))),
            Err(OperationHeaderError::Operation(_))
        ));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer k", "bearer k", "BEARER  k ", "bEaReR\tk"] {
            assert_eq!(bearer_token(v), Some("k"), "{v:?}");
        }
        for v in ["Basic k", "Bearer", "Bearer  ", "Bearerk", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
        assert_eq!(bearer_token(&bearer("tok")), Some("tok"));
    }

    #[test]
    fn prefer_parsing() {
        let p = Prefer::parse(["respond-async, wait=5", "return=minimal; foo"]);
        assert_eq!(
            p,
            Prefer {
                wait: Some(5),
                return_minimal: true,
                respond_async: true
            }
        );
        assert_eq!(Prefer::parse(["wait=abc"]).wait, None);
    }
}
