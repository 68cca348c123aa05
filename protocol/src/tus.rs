//! Codecs of the tus 1.0 headers spoken at `/files/` (spec/tus.md):
//! `Upload-Metadata`, `Upload-Concat`, `Upload-Checksum`, `Tus-Extension`
//! and `Tus-Checksum-Algorithm`. Each has its parse and its encode here, so
//! the server, the test harness and any Rust tus client spell them once.
//!
//! Every parser accepts what tus clients send in the wild (surrounding
//! whitespace, padded or unpadded base64, upper-case algorithm names) and
//! every encoder writes one canonical form, which its parser reads back to
//! the same value.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

use crate::Key;

/// Where tus uploads live: `/files/{id}`.
pub const BASE: &str = "/files/";

/// The extensions served, in the order `Tus-Extension` lists them.
pub const EXTENSIONS: [&str; 7] = [
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
];

/// A malformed tus header; the message names the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TusHeaderError {
    #[error("Upload-Metadata: {0}")]
    Metadata(String),
    #[error("Upload-Concat: {0}")]
    Concat(String),
    #[error("Upload-Checksum: {0}")]
    Checksum(String),
    /// `Upload-Checksum` names an algorithm this server does not compute.
    #[error("Upload-Checksum: {0:?} is not supported; use sha1, md5 or sha256")]
    UnsupportedChecksum(String),
    #[error("Tus-Extension: {0}")]
    Extension(String),
}

/// A tus list item (an extension or algorithm name, a metadata key): not
/// empty, visible ASCII, no comma.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// `Upload-Metadata`: `key base64value` pairs, comma-separated; a key may
/// come without a value. Keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Each key with its decoded value (empty for a key sent alone), in the
    /// order received.
    pairs: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    /// Builds metadata from pairs, checking the keys (a tus key is visible
    /// ASCII without commas) and that none repeats.
    pub fn new<K: Into<String>>(
        pairs: impl IntoIterator<Item = (K, Vec<u8>)>,
    ) -> Result<Self, TusHeaderError> {
        let mut m = Metadata::default();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            m.insert(&mut seen, key.into(), value)?;
        }
        Ok(m)
    }

    /// Adds a pair. `seen` holds the keys so far: a header of thousands of
    /// pairs must not cost a quadratic search.
    fn insert(
        &mut self,
        seen: &mut std::collections::HashSet<String>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), TusHeaderError> {
        if !is_token(&key) {
            return Err(TusHeaderError::Metadata(format!(
                "{key:?} is not a key (visible ASCII, no comma)"
            )));
        }
        if !seen.insert(key.clone()) {
            return Err(TusHeaderError::Metadata(format!("{key:?} is repeated")));
        }
        self.pairs.push((key, value));
        Ok(())
    }

    /// Parses a header value. Values are base64, padded or not.
    pub fn parse(raw: &str) -> Result<Self, TusHeaderError> {
        let mut m = Metadata::default();
        let mut seen = std::collections::HashSet::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut parts = pair.split(' ').filter(|p| !p.is_empty());
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            if parts.next().is_some() {
                return Err(TusHeaderError::Metadata(format!(
                    "{pair:?} is not `key base64value`"
                )));
            }
            let decoded = STANDARD
                .decode(value)
                .or_else(|_| STANDARD_NO_PAD.decode(value))
                .map_err(|_| {
                    TusHeaderError::Metadata(format!("the value of {key:?} is not base64"))
                })?;
            m.insert(&mut seen, key.to_owned(), decoded)?;
        }
        Ok(m)
    }

    /// The header value: padded standard base64, no spaces around commas.
    pub fn encode(&self) -> String {
        let pairs: Vec<String> = self
            .pairs
            .iter()
            .map(|(k, v)| match v.is_empty() {
                true => k.clone(),
                false => format!("{k} {}", STANDARD.encode(v)),
            })
            .collect();
        pairs.join(",")
    }

    /// The value of `key` (empty for a key sent without one).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The pairs, in the order received.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// `Upload-Concat`: `partial`, or `final;` and the parts' URLs
/// (paths or absolute URLs), separated by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    Partial,
    Final(Vec<String>),
}

impl Concat {
    /// Parses a header value. A final upload names at least one part.
    pub fn parse(raw: &str) -> Result<Self, TusHeaderError> {
        let raw = raw.trim();
        if raw == "partial" {
            return Ok(Concat::Partial);
        }
        let urls = raw.strip_prefix("final;").ok_or_else(|| {
            TusHeaderError::Concat("expected `partial` or `final;URL URL …`".into())
        })?;
        let urls: Vec<String> = urls.split_ascii_whitespace().map(str::to_owned).collect();
        if urls.is_empty() {
            return Err(TusHeaderError::Concat(
                "a final upload names its partial uploads".into(),
            ));
        }
        Ok(Concat::Final(urls))
    }

    /// The header value.
    pub fn encode(&self) -> String {
        match self {
            Concat::Partial => "partial".into(),
            Concat::Final(urls) => format!("final;{}", urls.join(" ")),
        }
    }
}

/// Where an `Upload-Concat` URL does not lead to an upload of this server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadUrlError {
    /// An absolute URL naming another host (or port).
    #[error("{0:?} points at another server")]
    Foreign(String),
    /// Not `/files/{64 hex digits}`.
    #[error("{0:?} is not an upload of this server")]
    NotAnUpload(String),
}

/// The upload id a URL of `Upload-Concat` names: a path `/files/{id}`, or an
/// absolute URL whose authority is one of `ours` (the request's `Host`, and
/// the `X-Forwarded-Host` a reverse proxy adds; any authority when `ours` is
/// empty). Default ports are equivalent to none.
pub fn upload_id(url: &str, ours: &[&str]) -> Result<Key, UploadUrlError> {
    let not_upload = || UploadUrlError::NotAnUpload(url.to_owned());
    let path = match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (host, path) = rest.split_at(end);
            if !ours.is_empty() && !ours.iter().any(|a| same_authority(scheme, host, a)) {
                return Err(UploadUrlError::Foreign(url.to_owned()));
            }
            path
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let id = path
        .trim_end_matches('/')
        .strip_prefix(BASE)
        .ok_or_else(not_upload)?;
    id.parse().map_err(|_| not_upload())
}

/// Whether `host` (of a `scheme` URL) is the authority `ours`, ignoring case,
/// user info and the scheme's default port.
fn same_authority(scheme: &str, host: &str, ours: &str) -> bool {
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    let strip = |a: &str| -> String {
        let a = a.to_ascii_lowercase();
        match default {
            Some(port) if a.ends_with(port) => a[..a.len() - port.len()].to_owned(),
            _ => a,
        }
    };
    strip(host) == strip(ours)
}

/// A checksum algorithm of the tus checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Sha1,
    Md5,
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every supported algorithm, by its tus name.
    pub const ALL: [(&'static str, ChecksumAlgorithm); 3] = [
        ("sha1", ChecksumAlgorithm::Sha1),
        ("md5", ChecksumAlgorithm::Md5),
        ("sha256", ChecksumAlgorithm::Sha256),
    ];

    /// Looks an algorithm up by its (case-insensitive) name.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| *a)
    }

    /// The tus name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .expect("every algorithm is listed")
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Md5 => 16,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// `Tus-Checksum-Algorithm`: every supported name, comma-separated.
    pub fn header() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
        names.join(",")
    }
}

/// `Upload-Checksum`: an algorithm and the base64 digest of a request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    /// Exactly [`ChecksumAlgorithm::digest_len`] bytes.
    pub digest: Vec<u8>,
}

impl Checksum {
    /// Parses a header value: `algorithm base64digest`.
    pub fn parse(raw: &str) -> Result<Self, TusHeaderError> {
        let (name, digest) = raw
            .trim()
            .split_once(' ')
            .ok_or_else(|| TusHeaderError::Checksum("expected `algorithm base64digest`".into()))?;
        let algorithm = ChecksumAlgorithm::named(name)
            .ok_or_else(|| TusHeaderError::UnsupportedChecksum(name.to_owned()))?;
        let digest = STANDARD
            .decode(digest.trim())
            .ok()
            .filter(|d| d.len() == algorithm.digest_len())
            .ok_or_else(|| TusHeaderError::Checksum(format!("not a base64 {name} digest")))?;
        Ok(Checksum { algorithm, digest })
    }

    /// The header value.
    pub fn encode(&self) -> String {
        format!(
            "{} {}",
            self.algorithm.name(),
            STANDARD.encode(&self.digest)
        )
    }
}

/// Parses `Tus-Extension` (or any tus comma-separated list of names).
pub fn parse_extensions(raw: &str) -> Result<Vec<String>, TusHeaderError> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    raw.split(',')
        .map(str::trim)
        .map(|e| match is_token(e) {
            true => Ok(e.to_owned()),
            false => Err(TusHeaderError::Extension(format!("{e:?} is not a name"))),
        })
        .collect()
}

/// Encodes `Tus-Extension`.
pub fn encode_extensions<S: AsRef<str>>(names: &[S]) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    names.join(",")
}

#[cfg(test)]
mod tests;
