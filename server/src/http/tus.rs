//! The tus 1.0.0 front end at `/files/` (spec/tus.md). Parses tus headers,
//! calls the file-upload domain ([`crate::cache::files`]) and shapes tus answers;
//! no upload logic lives here.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use upcache_protocol::headers::{self as h, TUS_PROTOCOL_VERSION};
pub use upcache_protocol::tus::BASE;
use upcache_protocol::tus::{self as codec, Checksum, Concat as ConcatHeader, Metadata};
use upcache_protocol::tus::{TusHeaderError, UploadUrlError};
use upcache_protocol::{Key, Operation, ProblemType};

use super::body::{self, Body};
use super::handlers::{operation_problem, wait_for};
use super::router::Endpoint;
use super::{result, Req};
use crate::cache::files::{FileView, NewConcat, NewFile};
use crate::cache::Core;
use crate::error::{Error, Result};
use crate::upload::{BodyCheck, ChecksumAlgorithm};

/// Handles a tus endpoint. Every answer, errors included, carries
/// `Tus-Resumable`; a request speaking another tus version gets `412`.
pub async fn handle(core: &Arc<Core>, endpoint: Endpoint, req: &mut Req) -> Result<Response<Body>> {
    let versioned = !matches!(endpoint, Endpoint::TusOptions | Endpoint::TusResult(_));
    if versioned {
        let given = header_str(req.headers(), h::TUS_RESUMABLE);
        if given.map(str::trim) != Some(TUS_PROTOCOL_VERSION) {
            return Err(Error::problem(
                ProblemType::UnsupportedTusVersion,
                format!(
                    "Tus-Resumable is {}; this server speaks tus {TUS_PROTOCOL_VERSION}",
                    given.map_or("missing".into(), |v| format!("{v:?}"))
                ),
            ));
        }
    }
    match endpoint {
        Endpoint::TusOptions => Ok(options(core)),
        Endpoint::TusCreate => create(core, req).await,
        Endpoint::TusHead(id) => head(core, &id).await,
        Endpoint::TusAppend(id) => append(core, id, req).await,
        Endpoint::TusDelete(id) => {
            core.delete_file(id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Endpoint::TusResult(id) => result(core, &id, &req.parts.method, req.headers()).await,
        _ => unreachable!("not a tus endpoint"),
    }
}

/// Headers every tus answer carries (`Tus-Version` too on `412`).
pub fn decorate(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        h::TUS_RESUMABLE,
        HeaderValue::from_static(TUS_PROTOCOL_VERSION),
    );
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response.headers_mut().insert(
            h::TUS_VERSION,
            HeaderValue::from_static(TUS_PROTOCOL_VERSION),
        );
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invalid(name: &str, what: impl std::fmt::Display) -> Error {
    Error::problem(ProblemType::InvalidHeader, format!("{name}: {what}"))
}

/// A malformed tus header is `400 invalid-header`; an algorithm we do not
/// compute is `400 unsupported-checksum`.
fn header_problem(e: TusHeaderError) -> Error {
    let kind = match e {
        TusHeaderError::UnsupportedChecksum(_) => ProblemType::UnsupportedChecksum,
        _ => ProblemType::InvalidHeader,
    };
    Error::problem(kind, e.to_string())
}

fn empty(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(body::empty())
        .expect("valid response")
}

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, v);
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>> {
    header_str(headers, name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(name, "not a non-negative integer"))
        })
        .transpose()
}

/// `OPTIONS`: what this server speaks.
fn options(core: &Core) -> Response<Body> {
    let mut r = empty(StatusCode::NO_CONTENT);
    let headers = r.headers_mut();
    set(headers, h::TUS_VERSION, TUS_PROTOCOL_VERSION);
    set(
        headers,
        h::TUS_EXTENSION,
        codec::encode_extensions(&codec::EXTENSIONS),
    );
    set(
        headers,
        h::TUS_MAX_SIZE,
        core.config().max_input_size.as_u64(),
    );
    set(
        headers,
        h::TUS_CHECKSUM_ALGORITHM,
        ChecksumAlgorithm::header(),
    );
    r
}

/// Parsed `Upload-Metadata`: the raw value and the operation it names.
fn metadata(headers: &HeaderMap) -> Result<(Option<String>, Operation)> {
    let Some(raw) = header_str(headers, h::UPLOAD_METADATA) else {
        return Ok((None, identity()));
    };
    let parsed = Metadata::parse(raw).map_err(header_problem)?;
    let operation = match parsed.get("operation") {
        None => identity(),
        Some([]) => return Err(invalid("Upload-Metadata", "operation has no value")),
        Some(bytes) => {
            let json: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|_| invalid("Upload-Metadata", "operation: not base64 of JSON"))?;
            Operation::parse(&json)
                .map_err(|e| operation_problem(&e))?
                .resolve_auto(header_str(headers, "accept"))
        }
    };
    Ok((Some(raw.to_owned()), operation))
}

fn identity() -> Operation {
    Operation::parse(&serde_json::json!({"op": "identity"})).expect("identity is an operation")
}

/// `Upload-Concat` at creation. Its URLs must name uploads of this server:
/// paths, or absolute URLs of an authority the request was sent to.
fn concat(headers: &HeaderMap, ours: &[&str]) -> Result<NewConcat> {
    let Some(v) = header_str(headers, h::UPLOAD_CONCAT) else {
        return Ok(NewConcat::None);
    };
    match ConcatHeader::parse(v).map_err(header_problem)? {
        ConcatHeader::Partial => Ok(NewConcat::Partial),
        ConcatHeader::Final(urls) => urls
            .iter()
            .map(|u| codec::upload_id(u, ours).map_err(concat_problem))
            .collect::<Result<Vec<_>>>()
            .map(NewConcat::Final),
    }
}

fn concat_problem(e: UploadUrlError) -> Error {
    let kind = match e {
        UploadUrlError::Foreign(_) => ProblemType::ForeignUpload,
        UploadUrlError::NotAnUpload(_) => ProblemType::InvalidHeader,
    };
    Error::problem(kind, format!("Upload-Concat: {e}"))
}

/// The authorities a request was sent to: its URI's (HTTP/2, absolute
/// form) or its `Host`, and the `X-Forwarded-Host` of a reverse proxy that
/// rewrites `Host` — so that the URLs a client built from our `Location`
/// behind that proxy are recognised as ours.
fn authorities(req: &Req) -> Vec<String> {
    let direct = req
        .parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header_str(req.headers(), header::HOST.as_str()).map(str::to_owned));
    let forwarded = req
        .headers()
        .get_all(h::X_FORWARDED_HOST)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_owned());
    direct.into_iter().chain(forwarded).collect()
}

fn checksum(headers: &HeaderMap) -> Result<Option<BodyCheck>> {
    let Some(v) = header_str(headers, h::UPLOAD_CHECKSUM) else {
        return Ok(None);
    };
    let Checksum { algorithm, digest } = Checksum::parse(v).map_err(header_problem)?;
    Ok(Some(BodyCheck {
        algorithm,
        expected: digest,
    }))
}

fn require_offset_stream(headers: &HeaderMap) -> Result<()> {
    let ct = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(h::OFFSET_OCTET_STREAM) {
        return Ok(());
    }
    Err(Error::problem(
        ProblemType::UnsupportedMediaType,
        format!(
            "upload bodies must be {}, not {ct:?}",
            h::OFFSET_OCTET_STREAM
        ),
    ))
}

/// Whether a request carries a body.
fn has_body(headers: &HeaderMap) -> bool {
    let length = header_str(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|l| l > 0)
        || (length.is_none() && headers.contains_key(header::TRANSFER_ENCODING))
}

/// The upload headers of `HEAD`, `PATCH` and creation answers.
fn upload_headers(headers: &mut HeaderMap, view: &FileView) {
    match view.length() {
        Some(l) => set(headers, h::UPLOAD_LENGTH, l),
        None => set(headers, h::UPLOAD_DEFER_LENGTH, 1),
    }
    if let Some(offset) = view.offset {
        set(headers, h::UPLOAD_OFFSET, offset);
    }
    if let Some(expires) = view.expires {
        set(
            headers,
            h::UPLOAD_EXPIRES,
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(expires)),
        );
    }
    if let Some(key) = view.key() {
        set(headers, h::UPLOAD_KEY, key.to_hex());
    }
}

fn location(id: &Key) -> String {
    format!("{BASE}{}", id.to_hex())
}

/// `POST /files/`: creation, with upload if a body comes along.
async fn create(core: &Arc<Core>, req: &mut Req) -> Result<Response<Body>> {
    let headers = req.headers().clone();
    let ours = authorities(req);
    let concat = concat(
        &headers,
        &ours.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let length = number(&headers, h::UPLOAD_LENGTH)?;
    let deferred = match header_str(&headers, h::UPLOAD_DEFER_LENGTH).map(str::trim) {
        None => false,
        Some("1") => true,
        Some(_) => return Err(invalid("Upload-Defer-Length", "the only value is 1")),
    };
    match (&concat, length, deferred) {
        (NewConcat::Final(_), None, false) => {}
        (NewConcat::Final(_), _, _) => {
            return Err(invalid(
                "Upload-Length",
                "a final upload's length is its partials' sum; send none",
            ))
        }
        (_, Some(_), true) => {
            return Err(invalid(
                "Upload-Length",
                "send Upload-Length or Upload-Defer-Length: 1, not both",
            ))
        }
        (_, None, false) => {
            return Err(invalid(
                "Upload-Length",
                "required (or Upload-Defer-Length: 1)",
            ))
        }
        _ => {}
    }
    let (metadata, operation) = metadata(&headers)?;
    core.check_operation(&operation)?;
    let with_body = has_body(&headers);
    let check = checksum(&headers)?;
    if with_body {
        require_offset_stream(&headers)?;
        let sent = number(&headers, header::CONTENT_LENGTH.as_str())?;
        if let (Some(sent), Some(length)) = (sent, length) {
            if sent > length {
                return Err(Error::problem(
                    ProblemType::UploadLengthExceeded,
                    format!("the body has {sent} bytes; Upload-Length is {length}"),
                ));
            }
        }
    }
    let is_final = matches!(concat, NewConcat::Final(_));
    let view = core
        .create_file(NewFile {
            length,
            metadata,
            operation,
            concat,
        })
        .await?;
    let view = if with_body && !is_final {
        let stream = req.take_stream();
        match core.append_file(view.id, 0, None, check, stream).await {
            Ok(v) => v,
            // The upload exists either way: a checksum mismatch is reported
            // with its location; a cut body leaves what was saved.
            Err(e) if e.to_problem().status == 460 => {
                let mut r = super::problem_response(&e.to_problem());
                set(r.headers_mut(), "location", location(&view.id));
                return Ok(r);
            }
            Err(_) => core.file_view(&view.id)?,
        }
    } else {
        view
    };
    let mut r = empty(StatusCode::CREATED);
    set(r.headers_mut(), "location", location(&view.id));
    upload_headers(r.headers_mut(), &view);
    Ok(r)
}

/// `HEAD /files/{id}`. A client asks right after its connection broke:
/// the offset it gets includes what the broken request saved.
async fn head(core: &Core, id: &Key) -> Result<Response<Body>> {
    core.settle(id).await;
    let view = core.file_view(id)?;
    let mut r = empty(StatusCode::OK);
    let headers = r.headers_mut();
    upload_headers(headers, &view);
    if let Some(m) = view.metadata() {
        set(headers, h::UPLOAD_METADATA, m);
    }
    match view.concat() {
        NewConcat::None => {}
        NewConcat::Partial => set(headers, h::UPLOAD_CONCAT, ConcatHeader::Partial.encode()),
        NewConcat::Final(parts) => {
            let urls = parts.iter().map(location).collect();
            set(
                headers,
                h::UPLOAD_CONCAT,
                ConcatHeader::Final(urls).encode(),
            );
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `PATCH /files/{id}`
async fn append(core: &Arc<Core>, id: Key, req: &mut Req) -> Result<Response<Body>> {
    let headers = req.headers();
    require_offset_stream(headers)?;
    let offset =
        number(headers, h::UPLOAD_OFFSET)?.ok_or_else(|| invalid("Upload-Offset", "required"))?;
    let length = number(headers, h::UPLOAD_LENGTH)?;
    let check = checksum(headers)?;
    let content_length = number(headers, header::CONTENT_LENGTH.as_str())?;
    // Refuse what can be refused before reading the body (the domain checks
    // again under the upload's lock).
    let view = core.file_view(&id)?;
    if matches!(view.concat(), NewConcat::Final(_)) {
        return Err(Error::problem(
            ProblemType::FinalUpload,
            "a final upload is made of its partial uploads and takes no bytes",
        ));
    }
    if let Some(current) = view.offset.filter(|&c| c != offset) {
        return Err(crate::upload::offset_mismatch(offset, current));
    }
    if let (Some(len), Some(limit)) = (content_length, length.or(view.length())) {
        if offset.saturating_add(len) > limit {
            return Err(Error::problem(
                ProblemType::UploadLengthExceeded,
                format!("{len} bytes at offset {offset} run past the upload's length of {limit}"),
            ));
        }
    }
    let view = core
        .append_file(id, offset, length, check, req.take_stream())
        .await?;
    let mut r = empty(StatusCode::NO_CONTENT);
    upload_headers(r.headers_mut(), &view);
    Ok(r)
}

/// The value of `key` in a raw `Upload-Metadata`, if it has one in UTF-8.
fn metadata_value(raw: &str, key: &str) -> Option<String> {
    let value = Metadata::parse(raw).ok()?.get(key)?.to_vec();
    String::from_utf8(value).ok().filter(|v| !v.is_empty())
}

/// `type/subtype`, each a token (parameters are not kept).
fn is_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

/// An identity result is the uploaded file itself: served with the
/// `filetype` and `filename` its upload gave, as a browser would expect.
fn describe_identity(r: &mut Response<Body>, view: &FileView) {
    let Some(raw) = identity_metadata(view) else {
        return;
    };
    if let Some(t) = metadata_value(raw, "filetype").filter(|t| is_media_type(t)) {
        set(r.headers_mut(), "content-type", t);
    }
    if let Some(name) = metadata_value(raw, "filename") {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        set(
            r.headers_mut(),
            "content-disposition",
            format!("inline; filename=\"{safe}\""),
        );
    }
}

/// The upload's metadata, if its result is the file itself (identity).
fn identity_metadata(view: &FileView) -> Option<&str> {
    let identity = serde_json::from_str::<serde_json::Value>(view.operation())
        .is_ok_and(|op| op["op"] == "identity");
    view.metadata().filter(|_| identity)
}

/// Whether [`describe_identity`] has headers to add: such a result is not
/// redirected to the S3 tier, which would not send them.
fn describes_identity(view: &FileView) -> bool {
    identity_metadata(view).is_some_and(|raw| {
        metadata_value(raw, "filetype").is_some_and(|t| is_media_type(&t))
            || metadata_value(raw, "filename").is_some()
    })
}

/// `GET|HEAD /files/{id}/result`: the result of the entry the upload is
/// bound to, exactly as `/v1/ops/{key}/result` serves it.
async fn result(
    core: &Arc<Core>,
    id: &Key,
    method: &http::Method,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    // The metadata and operation of an upload never change: this view
    // describes the result whenever it comes.
    let view = core.file_view(id)?;
    let key = match view.key() {
        Some(key) => Some(key),
        None => core.file_key(id, wait_for(core, headers)).await?,
    };
    match key {
        Some(key) => {
            let redirect = !describes_identity(&view);
            let mut r = result::get_as(core, &key, method, headers, redirect).await?;
            if r.status().is_success() {
                describe_identity(&mut r, &view);
            }
            Ok(r)
        }
        None => {
            let view = core.file_view(id)?;
            let state = if view.complete() {
                "complete"
            } else {
                "uploading"
            };
            let mut r = Response::builder()
                .status(StatusCode::ACCEPTED)
                .header(header::CONTENT_TYPE, h::JSON)
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::RETRY_AFTER, "1")
                .header(header::LOCATION, location(id))
                .body(body::full(
                    serde_json::json!({ "state": state, "offset": view.offset }).to_string(),
                ))
                .expect("valid response");
            upload_headers(r.headers_mut(), &view);
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_operation() {
        let mut headers = HeaderMap::new();
        let op = r#"{"op":"image.grayscale","format":"png"}"#;
        let v = Metadata::new([
            ("filename", b"hello.txt".to_vec()),
            ("operation", op.as_bytes().to_vec()),
            ("empty", vec![]),
        ])
        .unwrap()
        .encode();
        headers.insert(h::UPLOAD_METADATA, v.parse().unwrap());
        let (raw, parsed) = metadata(&headers).unwrap();
        assert_eq!(raw.as_deref(), Some(v.as_str()));
        assert_eq!(parsed.normalized()["op"], "image.grayscale");
        headers.insert(h::UPLOAD_METADATA, "filename !!!".parse().unwrap());
        assert!(metadata(&headers).is_err());
        headers.insert(h::UPLOAD_METADATA, "a YQ==,a YQ==".parse().unwrap());
        assert!(metadata(&headers).is_err(), "a repeated key");
        headers.insert(h::UPLOAD_METADATA, "operation".parse().unwrap());
        assert!(metadata(&headers).is_err(), "an operation without a value");
        headers.remove(h::UPLOAD_METADATA);
        assert_eq!(metadata(&headers).unwrap().1.normalized()["op"], "identity");
    }

    #[test]
    fn media_types_and_metadata_values() {
        assert!(is_media_type("image/png"));
        assert!(is_media_type("application/vnd.api+json"));
        assert!(!is_media_type("image/png; charset=x"));
        assert!(!is_media_type("text"));
        assert!(!is_media_type("a/b\r\nx: y"));
        let raw = "filename cGhvdG8gMS5qcGc=,filetype aW1hZ2UvanBlZw==,flag";
        assert_eq!(
            metadata_value(raw, "filename").as_deref(),
            Some("photo 1.jpg")
        );
        assert_eq!(
            metadata_value(raw, "filetype").as_deref(),
            Some("image/jpeg")
        );
        assert_eq!(metadata_value(raw, "flag"), None);
        assert_eq!(metadata_value(raw, "other"), None);
    }

    #[test]
    fn checksums_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            h::UPLOAD_CHECKSUM,
            "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=".parse().unwrap(),
        );
        let c = checksum(&headers).unwrap().unwrap();
        assert_eq!(c.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(
            hex::encode(c.expected),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        headers.insert(h::UPLOAD_CHECKSUM, "crc32 AAAA".parse().unwrap());
        let refused = checksum(&headers).unwrap_err().to_problem();
        assert_eq!(refused.kind(), Some(ProblemType::UnsupportedChecksum));
        headers.insert(
            h::UPLOAD_CHECKSUM,
            "md5 qvTGHdzF6KLavt4PO0gs2a6pQ00=".parse().unwrap(),
        );
        assert!(checksum(&headers).is_err(), "a sha1-sized md5");
    }
}
