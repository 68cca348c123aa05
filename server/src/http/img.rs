//! `GET|HEAD /img/{signature}/{options}/{input}[.{ext}]`: image operations
//! on stored inputs, for `<img src>` and CDNs.
//!
//! The signature is imgproxy's, so its URL-signing libraries work as they
//! are: `base64url_nopad(HMAC-SHA256(key, salt ‖ path))`, where `path` is
//! everything after the signature, from its `/`, and `key` and `salt` are
//! the configured `url_key` and `url_salt` (pairs, for rotation). A wrong
//! or missing signature is `403 invalid-signature`, unless the operator
//! turned `url_unsigned` on. The options ([`upcache_protocol::imgurl`])
//! become the operation `POST /v1/ops` would take for the same request, so
//! a URL and the API share entries: the result is computed once (single
//! flight), cached like any result, and served with its `ETag` and
//! immutable `Cache-Control` — plus `Vary: Accept` when the format is
//! `auto`.

use std::sync::Arc;

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderValue, Response};
use sha2::Sha256;
use upcache_protocol::accept::VARY_ACCEPT;
use upcache_protocol::{imgurl, CreateRequest, InputRef, Operation, ProblemType};

use super::body::Body;
use super::handlers::operation_problem;
use super::result;
use crate::cache::Core;
use crate::config::Config;
use crate::error::{Error, Result};

/// Whether `signature` signs `path` with one of the configured pairs.
pub fn signed(config: &Config, signature: &str, path: &str) -> bool {
    let Ok(given) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature.trim_end_matches('='))
    else {
        return false;
    };
    let pairs = config.url_signing_pairs().unwrap_or_default();
    pairs.iter().any(|(key, salt)| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(salt);
        mac.update(path.as_bytes());
        // Compared in constant time.
        mac.verify_slice(&given).is_ok()
    })
}

/// `GET|HEAD /img/…`; `rest` is the path after `/img`.
pub async fn get(
    core: &Arc<Core>,
    rest: &str,
    method: &http::Method,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (signature, path) = match rest.split_once('/') {
        Some((s, p)) => (s, format!("/{p}")),
        None => (rest, String::new()),
    };
    if !core.config().url_unsigned && !signed(core.config(), signature, &path) {
        return Err(Error::problem(
            ProblemType::InvalidSignature,
            "the URL's signature is missing or does not match its path",
        ));
    }
    let presets = |name: &str| core.config().url_presets.get(name).cloned();
    let url = imgurl::parse(&path, &presets)
        .map_err(|e| Error::problem(ProblemType::InvalidUrlOptions, e.to_string()))?;
    let op = Operation::parse(&url.operation).map_err(|e| operation_problem(&e))?;
    let varies = op.is_auto();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let op = op.resolve_auto(accept);
    let Some(stored) = core.stored_input(&url.input)? else {
        return Err(Error::problem(
            ProblemType::NotFound,
            format!("the input {} is not stored here", url.input),
        ));
    };
    let request = CreateRequest {
        input: InputRef {
            blake3: url.input,
            length: stored.length,
        },
        operation: op.normalized().clone(),
        block_size: None,
    };
    let (key, _, _) = core.create(&request, &op).await?;
    let mut response = result::get(core, &key, method, headers).await?;
    if varies {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static(VARY_ACCEPT));
    }
    Ok(response)
}
