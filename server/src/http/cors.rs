//! CORS for browser clients (tus-js-client and Uppy in a page, or `/v1`
//! from a web app): allowed origins come from `cors_origins`.

use std::sync::LazyLock;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use upcache_protocol::headers;

use super::body::{self, Body};
use super::Req;
use crate::config::Config;

/// Every header a browser script may need to read from an answer, and every
/// request header it may send: from the protocol's one header table.
static EXPOSE: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&headers::server_headers()).expect("header names are valid")
});
static ALLOW_HEADERS: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&headers::client_headers()).expect("header names are valid")
});
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The `Access-Control-Allow-Origin` value for this request, if its
/// `Origin` is allowed.
pub fn allowed_origin(config: &Config, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    config.cors_origins.iter().find_map(|o| match o.as_str() {
        "*" => Some(HeaderValue::from_static("*")),
        allowed if allowed.eq_ignore_ascii_case(text) => Some(origin.clone()),
        _ => None,
    })
}

/// Answers a preflight request (`OPTIONS` with `Access-Control-Request-Method`).
pub fn preflight(req: &Req, origin: &HeaderValue) -> Option<Response<Body>> {
    if req.parts.method != Method::OPTIONS
        || !req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let mut r = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS)
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS.clone())
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(body::empty())
        .expect("valid response");
    decorate(&mut r, origin);
    Some(r)
}

/// Lets the allowed origin read the answer and its headers.
pub fn decorate(response: &mut Response<Body>, origin: &HeaderValue) {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE.clone());
    if origin != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(value: &HeaderValue) -> Vec<String> {
        value
            .to_str()
            .unwrap()
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn the_lists_hold_what_pages_send_and_read() {
        let allow = names(&ALLOW_HEADERS);
        let expose = names(&EXPOSE);
        for sent in [
            "authorization",
            "content-type",
            "tus-resumable",
            "upload-offset",
            "upload-metadata",
            "upload-block-hash",
            "upload-input-hash",
            "upload-operation",
            "prefer",
            "range",
            "if-none-match",
            "x-http-method-override",
        ] {
            assert!(allow.contains(&sent.to_owned()), "{sent} may be sent");
        }
        for read in [
            "location",
            "upload-offset",
            "upload-length",
            "upload-key",
            "upload-missing",
            "upload-digest",
            "tus-version",
            "retry-after",
            "etag",
            "content-range",
        ] {
            assert!(expose.contains(&read.to_owned()), "{read} may be read");
        }
        assert!(!expose.contains(&"authorization".to_owned()));
        assert!(!allow.contains(&"upload-key".to_owned()));
    }
}
