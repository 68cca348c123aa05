//! tus 1.0 at `/files/` (spec/tus.md), over raw HTTP: discovery, creation,
//! appending, checksums, expiry, termination, deferred lengths,
//! concatenation, resuming across a restart, CORS — and every status code of
//! the spec's error table. A finished tus upload is an ordinary entry: its
//! `Upload-Key` is the key `upcache key` prints, and its result is the
//! operation's result.
//!
//! One module per part of the protocol (the core, and each extension); the
//! helpers they share are here.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image::{GenericImageView, ImageFormat};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::json;
use upcache_e2e::tus::{self, th, FILES};
use upcache_e2e::*;
use upcache_protocol::headers::OFFSET_OCTET_STREAM;
use upcache_protocol::status::{entry_path, result_path};
use upcache_protocol::tus::{Checksum, ChecksumAlgorithm, Concat};
use upcache_protocol::State;

mod checksum;
mod concatenation;
mod core;
mod cors;
mod defer_length;
mod discovery;
mod method_override;
mod restart;
mod status_codes;
mod termination;

const MIB: u64 = 1024 * 1024;
/// A well-known test vector, with its well-known digests.
const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
const FOX_SHA1: &str = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12";
const FOX_MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";
const FOX_SHA256: &str = "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592";
const HELLO: &[u8] = b"hello";
const HELLO_SHA1: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

/// `Upload-Checksum` for `algorithm` and a hex digest.
fn checksum(algorithm: &str, hex_digest: &str) -> String {
    Checksum {
        algorithm: ChecksumAlgorithm::named(algorithm).expect("a tus algorithm"),
        digest: hex::decode(hex_digest).expect("a hex digest"),
    }
    .encode()
}

/// The comma-separated tokens of a header, trimmed and lower-cased.
fn tokens(headers: &HeaderMap, name: &str) -> BTreeSet<String> {
    header(headers, name)
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A random upload id nobody created.
fn unknown_location() -> String {
    format!("{FILES}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The `/v1` key of `input` under `op`, as a client derives it.
fn key_of(input: &[u8], op: serde_json::Value) -> String {
    Job::new(input.to_vec(), op).key.to_hex()
}

fn grayscale_png() -> serde_json::Value {
    json!({"op": "image.grayscale", "format": "png"})
}
