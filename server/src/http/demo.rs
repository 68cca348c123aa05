//! `/demo/`: the demo page (`client-js/demo/`, embedded at build time by
//! `build.rs`), served when `demo` is on. Its tokens come from
//! `POST /demo/token` ([`super::tokens::mint_demo`]).

use http::{header, Method, Response, StatusCode};
use upcache_protocol::ProblemType;

use super::body::{self, Body};
use super::Req;
use crate::cache::Core;
use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));
}

/// Where the page lives.
const BASE: &str = "/demo/";

/// The media type of a file, by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The embedded file a request path names (`index.html` for a directory).
fn lookup(path: &str) -> Option<(&'static str, &'static [u8])> {
    let rel = path.strip_prefix(BASE)?;
    let index;
    let rel = if rel.is_empty() || rel.ends_with('/') {
        index = format!("{rel}index.html");
        index.as_str()
    } else {
        rel
    };
    embedded::FILES
        .iter()
        .find(|(name, _)| *name == rel)
        .map(|(name, bytes)| (*name, *bytes))
}

/// `GET|HEAD /demo/…`
pub fn serve(core: &Core, req: &Req) -> Result<Response<Body>> {
    if !core.config().demo_enabled() {
        return Err(Error::problem(
            ProblemType::NotFound,
            "the demo is off (demo = false)",
        ));
    }
    let path = req.parts.uri.path();
    if path == BASE.trim_end_matches('/') {
        // The page's relative links need the trailing slash.
        return Ok(Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(header::LOCATION, BASE)
            .body(body::empty())
            .expect("valid response"));
    }
    let Some((name, bytes)) = lookup(path) else {
        return Err(Error::problem(
            ProblemType::NotFound,
            format!("{path} is not a file of the demo page"),
        ));
    };
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(name))
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        // Cross-origin isolation, so that the page's hashing workers may
        // share memory (SharedArrayBuffer); the page loads only its own origin.
        .header("cross-origin-opener-policy", "same-origin")
        .header("cross-origin-embedder-policy", "require-corp");
    let body = if req.parts.method == Method::HEAD {
        body::empty()
    } else {
        body::full(bytes)
    };
    Ok(builder.body(body).expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("pkg/hash.wasm"), "application/wasm");
        assert_eq!(content_type("README"), "application/octet-stream");
        assert!(lookup("/other/index.html").is_none());
        assert!(lookup("/demo/../Cargo.toml").is_none());
        let has_index = embedded::FILES.iter().any(|(n, _)| *n == "index.html");
        assert_eq!(lookup("/demo/").is_some(), has_index);
        assert_eq!(lookup("/demo/index.html").is_some(), has_index);
    }
}
