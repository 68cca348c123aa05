//! SDK errors as `io::Error`s whose kinds callers can tell apart.

use std::io;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The HTTP status of an answer the service gave.
pub(super) fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Whether the object (or upload) is not there — not the bucket, which is
/// a configuration error.
pub(super) fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e.as_service_error().and_then(|s| s.code()) {
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => true,
        Some("NoSuchBucket") => false,
        _ => status(e) == Some(404),
    }
}

/// An SDK error as an `io::Error` whose kind says what happened.
pub(super) fn s3_error<E>(op: &str, object: &str, e: SdkError<E>) -> io::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use io::ErrorKind as K;
    let kind = match &e {
        SdkError::TimeoutError(_) => K::TimedOut,
        SdkError::DispatchFailure(d) if d.is_timeout() => K::TimedOut,
        SdkError::DispatchFailure(_) => io_kind(&e)
            .filter(|k| *k != K::Other)
            .unwrap_or(K::ConnectionRefused),
        // The answer broke off or made no sense.
        SdkError::ResponseError(_) => K::ConnectionAborted,
        SdkError::ConstructionFailure(_) => K::InvalidInput,
        SdkError::ServiceError(_) => {
            let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
            match (status(&e).unwrap_or(0), code) {
                (_, "SlowDown" | "RequestTimeout" | "ServiceUnavailable" | "InternalError") => {
                    K::ResourceBusy
                }
                (403, _) | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                    K::PermissionDenied
                }
                (404, _) => K::NotFound,
                (416, _) | (_, "InvalidRange" | "InvalidArgument" | "EntityTooLarge") => {
                    K::InvalidInput
                }
                (408 | 429, _) | (500..=599, _) => K::ResourceBusy,
                _ => K::Other,
            }
        }
        _ => K::Other,
    };
    io::Error::new(
        kind,
        format!("S3 {op} {object}: {}", DisplayErrorContext(&e)),
    )
}

/// The kind of the first `io::Error` in `e`'s chain of sources.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// The kind of an error reading a body: a stalled or cut stream is the
/// service being unavailable.
pub(super) fn stream_kind(e: &(dyn std::error::Error + 'static)) -> io::ErrorKind {
    match io_kind(e) {
        Some(k) if k != io::ErrorKind::Other => k,
        _ => io::ErrorKind::ConnectionAborted,
    }
}
