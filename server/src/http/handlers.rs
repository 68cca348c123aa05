//! Handlers of the `/v1/ops` endpoints. They parse headers and bodies with
//! the protocol crate, call the domain, and shape the answer.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use upcache_protocol::accept;
use upcache_protocol::admin::PurgeRequest;
use upcache_protocol::headers::{self as h, Prefer};
use upcache_protocol::status::entry_path;
use upcache_protocol::{
    CreateRequest, InputHash, InputRef, Key, Operation, OperationError, Problem, ProblemType,
    State, Status,
};

use super::body::{self, Body};
use super::result;
use super::Req;
use crate::cache::{Core, Outcome};
use crate::error::{Error, Result};
use crate::upload::Start;

/// Maps an operation error to its problem type.
pub fn operation_problem(e: &OperationError) -> Error {
    let kind = match e {
        OperationError::Unknown(_) => ProblemType::UnknownOperation,
        OperationError::UnsupportedVersion { .. } => ProblemType::UnsupportedVersion,
        _ => ProblemType::InvalidOperation,
    };
    Error::problem(kind, e.to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invalid_header(name: &str, what: &str) -> Error {
    Error::problem(ProblemType::InvalidHeader, format!("{name}: {what}"))
}

fn prefer(headers: &HeaderMap) -> Prefer {
    Prefer::parse(
        headers
            .get_all(h::PREFER)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// How long a request waits for processing.
pub fn wait_for(core: &Core, headers: &HeaderMap) -> Duration {
    let secs = prefer(headers)
        .wait
        .unwrap_or(core.config().default_wait)
        .min(core.config().max_wait);
    Duration::from_secs(secs)
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| invalid_header("Content-Length", "not a number")),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, h::JSON)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(
            serde_json::to_vec(value).expect("bodies serialize"),
        ))
        .expect("valid response")
}

/// Sets the upload headers that HEAD, PATCH and block PUT answer with.
fn status_headers(headers: &mut HeaderMap, s: &Status) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(h::UPLOAD_KEY, s.key.to_hex());
    set(h::UPLOAD_STATE, s.state.as_str().into());
    set(h::UPLOAD_OFFSET, s.offset.to_string());
    set(h::UPLOAD_LENGTH, s.input.length.to_string());
    set(h::UPLOAD_BLOCK_SIZE, s.block_size.to_string());
    set(h::UPLOAD_MISSING, s.missing.clone());
    set(h::UPLOAD_DIGEST, s.digest.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn no_content(s: &Status) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())
        .expect("valid response");
    status_headers(r.headers_mut(), s);
    r
}

/// `202 Accepted`: not done yet, come back (or wait longer).
pub fn accepted(s: &Status) -> Response<Body> {
    let mut r = json(StatusCode::ACCEPTED, s);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&entry_path(&s.key)).expect("ascii path"),
    );
    status_headers(r.headers_mut(), s);
    r
}

/// Reads a JSON body of at most `max_json_body` bytes that is `what`.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    core: &Core,
    req: &mut Req,
    what: &str,
) -> Result<T> {
    let limit = core.config().max_json_body.as_u64() as usize;
    let too_large = || {
        Error::problem(
            ProblemType::RequestTooLarge,
            format!("request bodies are limited to {limit} bytes"),
        )
    };
    if content_length(req.headers())?.is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let bytes = Limited::new(req.take_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Error::problem(
                    ProblemType::MalformedRequest,
                    format!("reading the body failed: {e}"),
                )
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::problem(
            ProblemType::MalformedRequest,
            format!("the body is not {what}: {e}"),
        )
    })
}

/// `POST /v1/ops`; `admit` may refuse the request once it is parsed,
/// before anything is looked up or created (a token's scope).
pub async fn create(
    core: &Arc<Core>,
    req: &mut Req,
    admit: impl FnOnce(&CreateRequest, &Operation) -> Result<()>,
) -> Result<Response<Body>> {
    let request: CreateRequest = read_json(core, req, "a create request").await?;
    let op = Operation::parse(&request.operation).map_err(|e| operation_problem(&e))?;
    // `format: "auto"` is resolved from `Accept` before the key is derived.
    let varies = op.is_auto();
    let op = op.resolve_auto(header_str(req.headers(), "accept"));
    admit(&request, &op)?;
    let (key, status, created) = core.create(&request, &op).await?;
    let mut r = json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &status,
    );
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&entry_path(&key)).expect("ascii path"),
    );
    if varies {
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static(accept::VARY_ACCEPT));
    }
    Ok(r)
}

/// `POST /v1/admin/purge` (the caller checked the admin key).
pub async fn purge(core: &Arc<Core>, req: &mut Req) -> Result<Response<Body>> {
    let request: PurgeRequest = read_json(core, req, "a purge request").await?;
    if !request.is_valid() {
        return Err(Error::problem(
            ProblemType::MalformedRequest,
            "a purge names exactly one of key, operation, before or all (all: true)",
        ));
    }
    Ok(json(StatusCode::OK, &core.purge(&request).await?))
}

/// `GET /v1/ops/{key}`
pub fn status(core: &Core, key: &Key) -> Result<Response<Body>> {
    Ok(json(StatusCode::OK, &core.status(key)?))
}

/// `HEAD /v1/ops/{key}`. Like tus, a client asks right after its
/// connection broke: the offset includes what the broken request saved.
pub async fn head(core: &Core, key: &Key) -> Result<Response<Body>> {
    core.settle(key).await;
    let s = core.status(key)?;
    let mut r = Response::new(body::empty());
    status_headers(r.headers_mut(), &s);
    Ok(r)
}

/// `DELETE /v1/ops/{key}`
pub async fn delete(core: &Arc<Core>, key: Key) -> Result<Response<Body>> {
    core.delete(key).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())
        .expect("valid response"))
}

/// `PATCH /v1/ops/{key}`
pub async fn append(core: &Arc<Core>, key: Key, req: &mut Req) -> Result<Response<Body>> {
    let headers = req.headers();
    let ct = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(h::OFFSET_OCTET_STREAM)
    {
        return Err(Error::problem(
            ProblemType::UnsupportedMediaType,
            format!(
                "PATCH bodies must be {}, not {ct:?}",
                h::OFFSET_OCTET_STREAM
            ),
        ));
    }
    let offset: u64 = header_str(headers, h::UPLOAD_OFFSET)
        .ok_or_else(|| invalid_header("Upload-Offset", "required"))?
        .trim()
        .parse()
        .map_err(|_| invalid_header("Upload-Offset", "not a number"))?;
    let now = core.status(&key)?;
    // §7.5: once the entry is past uploading, every PATCH is refused, an
    // empty one at the end offset too: HEAD, not PATCH, tells the state.
    not_uploading(&now)?;
    if let Some(len) = content_length(headers)? {
        if offset.saturating_add(len) > now.input.length {
            return Err(Error::problem(
                ProblemType::BodyLengthMismatch,
                format!(
                    "{len} bytes at offset {offset} run past the input's length of {}",
                    now.input.length
                ),
            ));
        }
    }
    // Refuse a wrong offset before the body is read (the domain checks again
    // under the upload's lock).
    if now.state == State::Uploading && now.offset != offset {
        return Err(crate::upload::offset_mismatch(offset, now.offset));
    }
    core.append(key, Start::Offset(offset), None, req.take_stream())
        .await?;
    Ok(no_content(&core.status(&key)?))
}

/// `409 not-uploading` unless the entry is uploading. Checked before the
/// body is read; a request that began while the entry was uploading and
/// whose bytes turned out to be in already is still acknowledged.
fn not_uploading(now: &Status) -> Result<()> {
    if now.state == State::Uploading {
        return Ok(());
    }
    Err(Error::problem(
        ProblemType::NotUploading,
        format!(
            "the entry is {}, not accepting uploads; GET its status or result",
            now.state.as_str()
        ),
    ))
}

/// `PUT /v1/ops/{key}/blocks/{n}`
pub async fn block(core: &Arc<Core>, key: Key, n: u64, req: &mut Req) -> Result<Response<Body>> {
    let verify = header_str(req.headers(), h::UPLOAD_BLOCK_HASH)
        .map(|v| {
            h::BlockHash::parse(v).map_err(|_| {
                invalid_header(
                    "Upload-Block-Hash",
                    "expected 64 hex digits, or cv= and 64 hex digits",
                )
            })
        })
        .transpose()?;
    let length = content_length(req.headers())?;
    // §7.6: a block for an entry past uploading is refused, even one that
    // was received (its answer lost): the status says what comes next.
    not_uploading(&core.status(&key)?)?;
    core.put_block(key, n, verify, length, req.take_stream())
        .await?;
    Ok(no_content(&core.status(&key)?))
}

/// `PUT /v1/ops/{key}`: one-shot upload. On a hit the answer goes out before
/// the body is read, so a client that sent `Expect: 100-continue` uploads
/// nothing.
pub async fn one_shot(core: &Arc<Core>, key: Key, req: &mut Req) -> Result<Response<Body>> {
    let headers = req.headers().clone();
    let input: InputHash = header_str(&headers, h::UPLOAD_INPUT_HASH)
        .ok_or_else(|| invalid_header("Upload-Input-Hash", "required"))?
        .trim()
        .parse()
        .map_err(|_| invalid_header("Upload-Input-Hash", "expected 64 hex digits"))?;
    let op_header = header_str(&headers, h::UPLOAD_OPERATION)
        .ok_or_else(|| invalid_header("Upload-Operation", "required"))?;
    let op = h::decode_operation(op_header)
        .map_err(|e| match e {
            h::OperationHeaderError::Operation(e) => operation_problem(&e),
            other => invalid_header("Upload-Operation", &other.to_string()),
        })?
        .resolve_auto(header_str(&headers, "accept"));
    let length = content_length(&headers)?.ok_or_else(|| {
        Error::problem(
            ProblemType::LengthRequired,
            "a one-shot PUT needs Content-Length (the input's length)",
        )
    })?;
    let derived = Key::derive(&input, &op);
    if derived != key {
        return Err(Problem::new(
            ProblemType::KeyMismatch,
            format!("input {input} with this operation has key {derived}, not {key}"),
        )
        .with("key", derived.to_hex())
        .into());
    }
    let request = CreateRequest {
        input: InputRef {
            blake3: input,
            length,
        },
        operation: op.normalized().clone(),
        block_size: None,
    };
    let (_, status, _) = core.create(&request, &op).await?;
    if status.state == State::Uploading {
        let progress = core
            .append(key, Start::Whole, None, req.take_stream())
            .await?;
        if !progress.complete {
            return Err(Error::problem(
                ProblemType::BodyLengthMismatch,
                format!("the body ended after {} of {length} bytes", progress.offset),
            ));
        }
    }
    let wait = wait_for(core, &headers);
    match core.outcome(&key, wait).await? {
        Outcome::Ready(_) if prefer(&headers).return_minimal => {
            let location = upcache_protocol::status::result_path(&key);
            Ok(Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, location)
                .header(h::UPLOAD_KEY, key.to_hex())
                .header(h::UPLOAD_STATE, State::Complete.as_str())
                .body(body::empty())
                .expect("valid response"))
        }
        outcome => result::answer(core, outcome, &headers).await,
    }
}
