//! The `/v1` calls around a timed upload. Wire names come from the protocol crate.

use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::json;
use upcache_protocol::headers::{JSON, PREFER};
use upcache_protocol::status::{entry_path, result_path, OPS_PATH};
use upcache_protocol::{CreateRequest, InputRef, Key, State, Status};

use crate::input::Input;
use crate::Result;

/// Bytes of the result's tail compared with the input file.
const TAIL: u64 = 64 << 10;
/// Seconds the result check lets the server take to finish processing.
const RESULT_WAIT: u64 = 300;

/// An HTTP/1.1 client (the crate is built without HTTP/2) that ignores
/// proxy settings and keeps up to `connections` idle connections.
pub fn http_client(connections: usize) -> Result<Client> {
    http_client_with_timeout(connections, Duration::from_secs(900))
}

/// [`http_client`] with another bound on each request, from its start to
/// the end of its response body.
pub fn http_client_with_timeout(connections: usize, timeout: Duration) -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .timeout(timeout)
        .build()?)
}

/// Reads a status document, or says what came instead.
async fn status_of(resp: reqwest::Response, what: &str) -> Result<Status> {
    let code = resp.status();
    let body = resp.bytes().await?;
    if !code.is_success() {
        return Err(format!("{what}: {code}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body).map_err(|e| format!("{what}: bad status document: {e}"))?)
}

/// `POST /v1/ops` for the identity operation of `input`; the entry must be
/// new (a fresh server) and uploading.
pub async fn create(client: &Client, base: &str, input: &Input, block_size: u64) -> Result<Status> {
    let request = CreateRequest {
        input: InputRef {
            blake3: input.hash,
            length: input.length,
        },
        operation: json!({"op": "identity"}),
        block_size: Some(block_size),
    };
    let resp = client
        .post(format!("{base}{OPS_PATH}"))
        .header(header::CONTENT_TYPE, JSON)
        .body(serde_json::to_vec(&request)?)
        .send()
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(format!("create: expected 201 Created, got {}", resp.status()).into());
    }
    let status = status_of(resp, "create").await?;
    if status.state != State::Uploading || status.block_size != block_size {
        return Err(format!(
            "create: the entry is {:?} with {}-byte blocks",
            status.state, status.block_size
        )
        .into());
    }
    Ok(status)
}

/// Checks what a finished upload left: the entry is processing or complete,
/// and its result — once ready — has the input's length, the input's hash as
/// ETag (identity), and the input's last bytes (a `Range` request, so the
/// input is never held in memory). Returns the state seen right after the upload.
pub async fn check_stored(client: &Client, base: &str, key: &Key, input: &Input) -> Result<State> {
    let resp = client
        .get(format!("{base}{}", entry_path(key)))
        .send()
        .await?;
    let after_upload = status_of(resp, "status").await?.state;
    if !matches!(after_upload, State::Processing | State::Complete) {
        return Err(format!(
            "after the upload the entry is {}, not processing or complete",
            after_upload.as_str()
        )
        .into());
    }
    let resp = client
        .get(format!("{base}{}", result_path(key)))
        .header(PREFER, format!("wait={RESULT_WAIT}"))
        .header(header::RANGE, format!("bytes=-{TAIL}"))
        .send()
        .await?;
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        let code = resp.status();
        return Err(format!(
            "result: expected 206, got {code}: {}",
            resp.text().await.unwrap_or_default()
        )
        .into());
    }
    let header = |name: header::HeaderName| {
        resp.headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let total = header(header::CONTENT_RANGE)
        .rsplit('/')
        .next()
        .and_then(|t| t.parse::<u64>().ok());
    if total != Some(input.length) {
        return Err(format!(
            "result: Content-Range {:?}, expected a total of {}",
            header(header::CONTENT_RANGE),
            input.length
        )
        .into());
    }
    if header(header::ETAG).trim_matches('"') != input.hash.to_hex() {
        return Err(format!(
            "result: ETag {:?} is not the input's hash {}",
            header(header::ETAG),
            input.hash
        )
        .into());
    }
    let tail = resp.bytes().await?;
    let start = input.length.saturating_sub(TAIL);
    let mut expected = vec![0u8; (input.length - start) as usize];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&input.path)?,
        &mut expected,
        start,
    )?;
    if tail[..] != expected[..] {
        return Err("result: the last bytes differ from the input's".into());
    }
    Ok(after_upload)
}
