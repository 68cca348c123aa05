//! The route table: a request's method and path become an [`Endpoint`]
//! before any I/O, so routing is unit-tested without bodies.

use http::Method;
use upcache_protocol::Key;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/ops`
    Create,
    /// `GET /v1/ops/{key}`
    Status(Key),
    /// `HEAD /v1/ops/{key}`
    Head(Key),
    /// `PUT /v1/ops/{key}` — one-shot upload
    OneShot(Key),
    /// `PATCH /v1/ops/{key}` — sequential append
    Append(Key),
    /// `DELETE /v1/ops/{key}`
    Delete(Key),
    /// `PUT /v1/ops/{key}/blocks/{n}`
    Block(Key, u64),
    /// `GET|HEAD /v1/ops/{key}/result`
    Result(Key),
    /// `OPTIONS /files/` or `/files/{id}`: tus discovery
    TusOptions,
    /// `POST /files/`: tus creation
    TusCreate,
    /// `HEAD /files/{id}`
    TusHead(Key),
    /// `PATCH /files/{id}`
    TusAppend(Key),
    /// `DELETE /files/{id}`: tus termination
    TusDelete(Key),
    /// `GET|HEAD /files/{id}/result`
    TusResult(Key),
    /// `POST /v1/tokens`: mint an upload token or a presigned result URL
    Mint,
    /// `GET|HEAD /demo/…`: the demo page's files
    Demo,
    /// `POST /demo/token`: a token for the demo page
    DemoToken,
    /// `POST /v1/admin/purge`: remove entries (admin keys only)
    Purge,
    /// `GET /metrics`
    Metrics,
    /// `GET /healthz`
    Health,
    /// `GET|HEAD /img/{signature}/{options}/{input}`: the image URL API;
    /// holds the path after `/img`.
    Img(String),
}

impl Endpoint {
    /// Whether only an admin key opens it.
    pub fn is_admin(&self) -> bool {
        matches!(self, Endpoint::Purge)
    }
}

/// Why a request matched no endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists; the method does not. Carries the `Allow` value.
    MethodNotAllowed(&'static str),
    InvalidKey(String),
    InvalidBlock(String),
    /// A `/files/` id that is not one: no such upload.
    UnknownUpload(String),
}

/// Routes a request.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, RouteError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let key = |s: &str| {
        s.parse::<Key>()
            .map_err(|_| RouteError::InvalidKey(s.to_owned()))
    };
    let m = method.clone();
    if let Some(rest) = path.strip_prefix("/img/") {
        return match m {
            Method::GET | Method::HEAD => Ok(Endpoint::Img(format!("/{rest}"))),
            _ => Err(RouteError::MethodNotAllowed("GET, HEAD")),
        };
    }
    match segments.as_slice() {
        ["v1", "ops"] => match m {
            Method::POST => Ok(Endpoint::Create),
            _ => Err(RouteError::MethodNotAllowed("POST")),
        },
        ["v1", "ops", k] => {
            let k = key(k)?;
            match m {
                Method::GET => Ok(Endpoint::Status(k)),
                Method::HEAD => Ok(Endpoint::Head(k)),
                Method::PUT => Ok(Endpoint::OneShot(k)),
                Method::PATCH => Ok(Endpoint::Append(k)),
                Method::DELETE => Ok(Endpoint::Delete(k)),
                _ => Err(RouteError::MethodNotAllowed(
                    "GET, HEAD, PUT, PATCH, DELETE",
                )),
            }
        }
        ["v1", "ops", k, "result"] => {
            let k = key(k)?;
            match m {
                Method::GET | Method::HEAD => Ok(Endpoint::Result(k)),
                _ => Err(RouteError::MethodNotAllowed("GET, HEAD")),
            }
        }
        ["v1", "ops", k, "blocks", n] => {
            let k = key(k)?;
            let n = n
                .parse::<u64>()
                .map_err(|_| RouteError::InvalidBlock(n.to_string()))?;
            match m {
                Method::PUT => Ok(Endpoint::Block(k, n)),
                _ => Err(RouteError::MethodNotAllowed("PUT")),
            }
        }
        ["v1", "admin", "purge"] => match m {
            Method::POST => Ok(Endpoint::Purge),
            _ => Err(RouteError::MethodNotAllowed("POST")),
        },
        ["v1", "tokens"] => match m {
            Method::POST => Ok(Endpoint::Mint),
            _ => Err(RouteError::MethodNotAllowed("POST")),
        },
        ["demo", "token"] => match m {
            Method::POST => Ok(Endpoint::DemoToken),
            _ => Err(RouteError::MethodNotAllowed("POST")),
        },
        ["demo", ..] => match m {
            Method::GET | Method::HEAD => Ok(Endpoint::Demo),
            _ => Err(RouteError::MethodNotAllowed("GET, HEAD")),
        },
        ["files"] => match m {
            Method::POST => Ok(Endpoint::TusCreate),
            Method::OPTIONS => Ok(Endpoint::TusOptions),
            _ => Err(RouteError::MethodNotAllowed("POST, OPTIONS")),
        },
        ["files", id] => {
            let id = id
                .parse::<Key>()
                .map_err(|_| RouteError::UnknownUpload(id.to_string()))?;
            match m {
                Method::HEAD => Ok(Endpoint::TusHead(id)),
                Method::PATCH => Ok(Endpoint::TusAppend(id)),
                Method::DELETE => Ok(Endpoint::TusDelete(id)),
                Method::OPTIONS => Ok(Endpoint::TusOptions),
                _ => Err(RouteError::MethodNotAllowed("HEAD, PATCH, DELETE, OPTIONS")),
            }
        }
        ["files", id, "result"] => {
            let id = id
                .parse::<Key>()
                .map_err(|_| RouteError::UnknownUpload(id.to_string()))?;
            match m {
                Method::GET | Method::HEAD => Ok(Endpoint::TusResult(id)),
                _ => Err(RouteError::MethodNotAllowed("GET, HEAD")),
            }
        }
        ["metrics"] if m == Method::GET => Ok(Endpoint::Metrics),
        ["healthz"] if m == Method::GET || m == Method::HEAD => Ok(Endpoint::Health),
        ["metrics"] | ["healthz"] => Err(RouteError::MethodNotAllowed("GET")),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "38574c97ace8ccab61b23102d438ae3ab49da37d62e4c2221f7834cc34f2c343";

    #[test]
    fn route_table() {
        let k: Key = K.parse().unwrap();
        let cases: &[(Method, String, Result<Endpoint, RouteError>)] = &[
            (Method::POST, "/v1/ops".into(), Ok(Endpoint::Create)),
            (Method::POST, "/v1/ops/".into(), Ok(Endpoint::Create)),
            (
                Method::GET,
                "/v1/ops".into(),
                Err(RouteError::MethodNotAllowed("POST")),
            ),
            (Method::GET, format!("/v1/ops/{K}"), Ok(Endpoint::Status(k))),
            (Method::HEAD, format!("/v1/ops/{K}"), Ok(Endpoint::Head(k))),
            (
                Method::PUT,
                format!("/v1/ops/{K}"),
                Ok(Endpoint::OneShot(k)),
            ),
            (
                Method::PATCH,
                format!("/v1/ops/{K}"),
                Ok(Endpoint::Append(k)),
            ),
            (
                Method::DELETE,
                format!("/v1/ops/{K}"),
                Ok(Endpoint::Delete(k)),
            ),
            (
                Method::POST,
                format!("/v1/ops/{K}"),
                Err(RouteError::MethodNotAllowed(
                    "GET, HEAD, PUT, PATCH, DELETE",
                )),
            ),
            (
                Method::GET,
                format!("/v1/ops/{K}/result"),
                Ok(Endpoint::Result(k)),
            ),
            (
                Method::PUT,
                format!("/v1/ops/{K}/blocks/7"),
                Ok(Endpoint::Block(k, 7)),
            ),
            (
                Method::PUT,
                format!("/v1/ops/{K}/blocks/x"),
                Err(RouteError::InvalidBlock("x".into())),
            ),
            (
                Method::GET,
                "/v1/ops/abc".into(),
                Err(RouteError::InvalidKey("abc".into())),
            ),
            (Method::POST, "/v1/admin/purge".into(), Ok(Endpoint::Purge)),
            (
                Method::GET,
                "/v1/admin/purge".into(),
                Err(RouteError::MethodNotAllowed("POST")),
            ),
            (Method::POST, "/v1/admin".into(), Err(RouteError::NotFound)),
            (Method::POST, "/files/".into(), Ok(Endpoint::TusCreate)),
            (Method::OPTIONS, "/files".into(), Ok(Endpoint::TusOptions)),
            (
                Method::HEAD,
                format!("/files/{K}"),
                Ok(Endpoint::TusHead(k)),
            ),
            (
                Method::PATCH,
                format!("/files/{K}"),
                Ok(Endpoint::TusAppend(k)),
            ),
            (
                Method::DELETE,
                format!("/files/{K}"),
                Ok(Endpoint::TusDelete(k)),
            ),
            (
                Method::GET,
                format!("/files/{K}/result"),
                Ok(Endpoint::TusResult(k)),
            ),
            (
                Method::HEAD,
                "/files/nope".into(),
                Err(RouteError::UnknownUpload("nope".into())),
            ),
            (
                Method::GET,
                format!("/files/{K}"),
                Err(RouteError::MethodNotAllowed("HEAD, PATCH, DELETE, OPTIONS")),
            ),
            (Method::POST, "/v1/tokens".into(), Ok(Endpoint::Mint)),
            (
                Method::GET,
                "/v1/tokens".into(),
                Err(RouteError::MethodNotAllowed("POST")),
            ),
            (Method::GET, "/demo".into(), Ok(Endpoint::Demo)),
            (Method::GET, "/demo/".into(), Ok(Endpoint::Demo)),
            (Method::HEAD, "/demo/js/app.js".into(), Ok(Endpoint::Demo)),
            (Method::POST, "/demo/token".into(), Ok(Endpoint::DemoToken)),
            (
                Method::GET,
                "/demo/token".into(),
                Err(RouteError::MethodNotAllowed("POST")),
            ),
            (
                Method::PUT,
                "/demo/index.html".into(),
                Err(RouteError::MethodNotAllowed("GET, HEAD")),
            ),
            (Method::GET, "/demos".into(), Err(RouteError::NotFound)),
            (Method::GET, "/metrics".into(), Ok(Endpoint::Metrics)),
            (Method::GET, "/healthz".into(), Ok(Endpoint::Health)),
            (
                Method::GET,
                "/img/sig/w:10/abc.webp".into(),
                Ok(Endpoint::Img("/sig/w:10/abc.webp".into())),
            ),
            (
                Method::POST,
                "/img/sig/abc".into(),
                Err(RouteError::MethodNotAllowed("GET, HEAD")),
            ),
            (Method::GET, "/".into(), Err(RouteError::NotFound)),
            (Method::GET, "/v2/ops".into(), Err(RouteError::NotFound)),
            (
                Method::GET,
                format!("/v1/ops/{K}/other"),
                Err(RouteError::NotFound),
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(&route(method, path), want, "{method} {path}");
        }
    }
}
