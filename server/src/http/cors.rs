//! CORS for browser clients (tus-js-client and Uppy in a page, or `/v1`
//! from a web app): allowed origins come from `cors_origins`.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::body::{self, Body};
use super::Req;
use crate::config::Config;

/// Every header a browser script may need to read from an answer.
const EXPOSE: &str = "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, Upload-Expires, Upload-Checksum, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Key, Upload-State, Upload-Block-Size, Upload-Missing, Upload-Digest, Retry-After, ETag, Content-Range, Preference-Applied";
/// Every request header a browser script may send.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, Upload-Concat, Upload-Checksum, Upload-Input-Hash, Upload-Operation, Upload-Block-Hash, Prefer, Range, If-None-Match";
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
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS)
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
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
    if origin != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
