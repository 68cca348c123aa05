//! Real tus clients against the real server's tus endpoint (`/files/`, spec/tus.md):
//! tus-js-client from Node and tuspy from Python, each run as a program
//! (`tests/tus-clients/*.mjs`, `*.py`) that uploads a file with an operation in its
//! `Upload-Metadata` and prints one JSON line of what it did. The tests check what
//! the clients saw (requests, offsets, where a resumed upload went on from), then
//! what the server holds: `HEAD /files/{id}` carries the `Upload-Key` that
//! `upcache key FILE --op OP` prints, and `GET /files/{id}/result` is the expected
//! bytes — the input for `identity`, the `/v1` API's own result for an image
//! operation.
//!
//! The clients are installed from the registries by `./.ci/test.sh`
//! (`npm ci --prefix tests/tus-clients`, and a venv at `tests/tus-clients/.venv`
//! from `requirements.txt`); without them these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Command;
use upcache_e2e::cli::run;
use upcache_e2e::sdk::input_file;
use upcache_e2e::tus::{assert_upload_location, parse_metadata, th, TusHead, FILES};
use upcache_e2e::*;
use upcache_protocol::headers::PREFER;
use upcache_protocol::tus::Concat;

const MIB: u64 = 1 << 20;
/// Server arguments for tests that want many blocks from inputs of a few MiB.
const SMALL_BLOCKS: &[&str] = &["--default-block-size", "1MiB"];

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tus-clients")
}

/// Panics, pointing at the install step, if `path` (part of an installed client) is missing.
fn require_installed(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run ./.ci/test.sh, which installs \
         the tus clients (npm ci --prefix tests/tus-clients; python3 -m venv \
         tests/tus-clients/.venv && tests/tus-clients/.venv/bin/pip install -r \
         tests/tus-clients/requirements.txt)",
        path.display()
    );
}

/// What a client program printed.
struct ClientRun {
    out: Value,
    stdout: String,
    stderr: String,
}

impl ClientRun {
    fn get(&self, pointer: &str) -> &Value {
        self.out.pointer(pointer).unwrap_or_else(|| {
            panic!(
                "the client's output has no {pointer}: {}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn u64(&self, pointer: &str) -> u64 {
        self.get(pointer)
            .as_u64()
            .unwrap_or_else(|| panic!("{pointer} is not a number: {}", self.stdout))
    }

    fn str(&self, pointer: &str) -> &str {
        self.get(pointer)
            .as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string: {}", self.stdout))
    }

    fn array(&self, pointer: &str) -> &Vec<Value> {
        self.get(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("{pointer} is not an array: {}", self.stdout))
    }
}

/// Runs a client program with its JSON config; asserts it exits 0 and returns
/// the JSON line it printed last.
async fn run_client(mut cmd: Command, config: &Value) -> ClientRun {
    // The clients talk to loopback directly, whatever proxy the environment names
    // (Python's requests would follow HTTP_PROXY).
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "*").env("no_proxy", "*");
    cmd.arg(config.to_string())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {cmd:?} ({e}): are node (20+) and python3 installed? ./.ci/test.sh checks")
    });
    let out = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .expect("the tus client did not finish in time")
        .expect("wait for the tus client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the tus client failed ({}) with config {config}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let out = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("the client's last line is not JSON ({e}): {stdout}\nstderr:\n{stderr}")
    });
    ClientRun {
        out,
        stdout,
        stderr,
    }
}

/// `node tests/tus-clients/tus-js.mjs CONFIG` (tus-js-client).
async fn tus_js(config: Value) -> ClientRun {
    require_installed(
        &clients_dir().join("node_modules/tus-js-client/package.json"),
        "tus-js-client",
    );
    let mut cmd = Command::new("node");
    cmd.arg(clients_dir().join("tus-js.mjs"));
    run_client(cmd, &config).await
}

/// `tests/tus-clients/.venv/bin/python tests/tus-clients/tuspy_upload.py CONFIG` (tuspy).
async fn tuspy(config: Value) -> ClientRun {
    let python = clients_dir().join(".venv/bin/python");
    require_installed(&python, "the Python venv with tuspy");
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("tuspy_upload.py"));
    run_client(cmd, &config).await
}

/// The path of an upload URL, absolute or not (`/files/{id}`), checking its shape.
fn upload_path(url: &str) -> String {
    let path = match url.starts_with('/') {
        true => url.to_owned(),
        false => reqwest::Url::parse(url)
            .unwrap_or_else(|e| panic!("upload URL {url:?}: {e}"))
            .path()
            .to_owned(),
    };
    assert_upload_location(&path);
    path
}

/// The value of `key` in the `Upload-Metadata` of `head`, as text.
fn metadata_value(head: &TusHead, key: &str) -> String {
    let meta = parse_metadata(header(&head.headers, th::UPLOAD_METADATA));
    let value = meta
        .get(key)
        .unwrap_or_else(|| panic!("Upload-Metadata has no {key}: {meta:?}"));
    String::from_utf8(value.clone()).expect("UTF-8 metadata")
}

/// `GET /files/{id}/result` with `Prefer: wait=60` (again while `202`), as an
/// application fetches it once its tus client is done: a plain `GET`, with no
/// tus header.
async fn tus_result(server: &Server, path: &str) -> (HeaderMap, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let resp = server
            .client()
            .get(server.url(&format!("{path}/result")))
            .header(PREFER, "wait=60")
            .send()
            .await
            .expect("GET the tus upload's result");
        match resp.status() {
            StatusCode::OK => {
                let headers = resp.headers().clone();
                return (
                    headers,
                    resp.bytes().await.expect("read the result").to_vec(),
                );
            }
            StatusCode::ACCEPTED if tokio::time::Instant::now() < deadline => continue,
            code => panic!(
                "GET {path}/result: {code}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }
}

/// `upcache key FILE --op OP`.
async fn cli_key(file: &Path, op: &Value) -> String {
    let op = op.to_string();
    let run = run(&["key", file.to_str().unwrap(), "--op", &op]).await;
    run.assert_code(0);
    run.stdout.trim().to_owned()
}

/// An input file, with what the tests send about it.
struct Input {
    _dir: tempfile::TempDir,
    file: PathBuf,
    bytes: Vec<u8>,
    op: Value,
    filename: &'static str,
    filetype: &'static str,
}

impl Input {
    fn new(bytes: Vec<u8>, op: Value, filename: &'static str, filetype: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = input_file(dir.path(), filename, &bytes);
        Self {
            _dir: dir,
            file,
            bytes,
            op,
            filename,
            filetype,
        }
    }

    fn identity(len: u64, seed: u64) -> Self {
        Self::new(
            pseudo_random(len as usize, seed),
            json!({"op": "identity"}),
            "x.bin",
            "application/octet-stream",
        )
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A path in the input's temp dir (for a client's URL storage).
    fn scratch(&self, name: &str) -> String {
        self.file.with_file_name(name).display().to_string()
    }

    /// The client config every script understands.
    fn config(&self, endpoint: &str, extra: Value) -> Value {
        let mut config = json!({
            "endpoint": endpoint,
            "file": self.file,
            "operation": self.op,
            "filename": self.filename,
            "filetype": self.filetype,
        });
        let (Value::Object(config_map), Value::Object(extra)) = (&mut config, extra) else {
            unreachable!("objects")
        };
        config_map.extend(extra);
        config
    }

    /// Asserts the finished upload at `url`: `HEAD` (offset, length, metadata,
    /// `Upload-Key` = `upcache key`), and its result is `expected`.
    async fn assert_finished(&self, server: &Server, url: &str, expected: &[u8]) -> TusHead {
        let path = upload_path(url);
        let head = server.tus_head(&path).await;
        assert_eq!(head.offset, self.len(), "Upload-Offset of {path}");
        assert_eq!(head.length, Some(self.len()), "Upload-Length of {path}");
        assert!(
            head.headers.get(th::UPLOAD_EXPIRES).is_none(),
            "a finished upload does not expire: {head:?}"
        );
        let op: Value = serde_json::from_str(&metadata_value(&head, "operation"))
            .expect("the operation in Upload-Metadata is JSON");
        assert_eq!(op, self.op, "operation kept in Upload-Metadata");
        assert_eq!(metadata_value(&head, "filename"), self.filename);
        assert_eq!(metadata_value(&head, "filetype"), self.filetype);

        let job = Job::new(self.bytes.clone(), self.op.clone());
        let key = cli_key(&self.file, &self.op).await;
        assert_eq!(key, job.key.to_string(), "upcache key");
        assert_eq!(
            head.key.as_deref(),
            Some(key.as_str()),
            "Upload-Key of {path}"
        );

        let (headers, result) = tus_result(server, &path).await;
        if let Some(content_type) = job.op.content_type() {
            assert_eq!(
                header(&headers, "content-type"),
                content_type,
                "{path}/result"
            );
        }
        assert!(
            result == expected,
            "the result of {path} ({} bytes) differs from the expected {} bytes",
            result.len(),
            expected.len()
        );
        head
    }
}

/// The recorded requests with this method.
fn requests_of<'a>(requests: &'a [Value], method: &str) -> Vec<&'a Value> {
    requests.iter().filter(|r| r["method"] == method).collect()
}

fn offsets(requests: &[&Value]) -> Vec<u64> {
    requests
        .iter()
        .map(|r| r["offset"].as_u64().expect("a numeric Upload-Offset"))
        .collect()
}

/// `0, chunk, 2·chunk, …` below `len`.
fn chunk_starts(from: u64, len: u64, chunk: u64) -> Vec<u64> {
    (from..len).step_by(chunk as usize).collect()
}

/// The PATCHes of a client resuming after a cut connection: those the server
/// took (`204`) run in chunks from where the first of them started — the
/// offset it resumed from, which it returns — to the end. The server may still
/// be taking in the cut request when the client asks for its offset; then the
/// client's first PATCH is refused with `409` and the current offset, and it
/// retries from there (`status_key`, `answered_key`: the names the client's
/// log gives the status and the `Upload-Offset` answered).
fn resumed_chain(
    patches: &[Value],
    status_key: &str,
    answered_key: &str,
    len: u64,
    chunk: u64,
) -> (u64, usize) {
    let (ok, refused): (Vec<&Value>, Vec<&Value>) =
        patches.iter().partition(|p| p[status_key] == 204);
    let starts = offsets(&ok);
    let resumed = *starts
        .first()
        .unwrap_or_else(|| panic!("no PATCH succeeded after the cut: {patches:?}"));
    assert_eq!(
        starts,
        chunk_starts(resumed, len, chunk),
        "the PATCHes after the cut go on from {resumed}: {patches:?}"
    );
    for p in &refused {
        assert_eq!(
            p[status_key], 409,
            "only an offset conflict is retried: {p}"
        );
        assert!(
            p[answered_key].as_u64().is_some_and(|o| o <= resumed),
            "a 409 carries the server's offset: {p}"
        );
    }
    (resumed, refused.len())
}

#[tokio::test]
async fn tus_js_plain_upload_returns_the_input() {
    let server = Server::start().await;
    let input = Input::identity(3 * MIB + 1, 1);
    let run = tus_js(input.config(&server.url(FILES), json!({"mode": "upload"}))).await;

    let requests = run.array("/requests");
    let posts = requests_of(requests, "POST");
    let patches = requests_of(requests, "PATCH");
    assert_eq!(posts.len(), 1, "{requests:?}");
    assert_eq!(posts[0]["status"], 201, "{requests:?}");
    assert_eq!(posts[0]["length"], input.len(), "{requests:?}");
    assert_eq!(
        offsets(&patches),
        [0],
        "one PATCH with everything: {requests:?}"
    );
    assert_eq!(patches[0]["status"], 204, "{requests:?}");
    assert_eq!(patches[0]["responseOffset"], input.len(), "{requests:?}");

    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tus_js_grayscale_png_is_the_v1_result() {
    let op = json!({"op": "image.grayscale", "format": "png"});
    let input = Input::new(png(640, 480), op.clone(), "x.png", "image/png");

    // The expected bytes: the same operation through /v1, on a server of its own.
    let reference = Server::start().await;
    let expected_file = input.scratch("expected.png");
    let op_json = op.to_string();
    run(&[
        "put",
        input.file.to_str().unwrap(),
        "--op",
        &op_json,
        "-o",
        &expected_file,
        "--server",
        &reference.base_url(),
    ])
    .await
    .assert_code(0);
    let expected = std::fs::read(&expected_file).unwrap();
    let img = image::load_from_memory_with_format(&expected, image::ImageFormat::Png)
        .expect("the /v1 result is a PNG");
    assert_eq!((img.width(), img.height()), (640, 480));

    let server = Server::start().await;
    let run = tus_js(input.config(&server.url(FILES), json!({"mode": "upload"}))).await;
    input
        .assert_finished(&server, run.str("/uploadUrl"), &expected)
        .await;
}

#[tokio::test]
async fn tus_js_chunked_upload_sends_every_chunk_in_order() {
    // The default block size (8 MiB): two blocks, nine 1 MiB chunks and a tail.
    let server = Server::start().await;
    let input = Input::identity(9 * MIB + 12_345, 2);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({"mode": "upload", "chunkSize": MIB}),
    ))
    .await;

    let requests = run.array("/requests");
    let patches = requests_of(requests, "PATCH");
    assert_eq!(
        offsets(&patches),
        chunk_starts(0, input.len(), MIB),
        "{requests:?}"
    );
    for p in &patches {
        let next = (p["offset"].as_u64().unwrap() + MIB).min(input.len());
        assert_eq!(p["status"], 204, "{p}");
        assert_eq!(p["responseOffset"], next, "{p}");
    }
    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tus_js_sends_the_first_chunk_with_the_creation() {
    // creation-with-upload: the POST carries the first chunk.
    let server = Server::start_with(SMALL_BLOCKS).await;
    let input = Input::identity(3 * MIB + MIB / 2, 8);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({
            "mode": "upload",
            "chunkSize": MIB,
            "clientOptions": {"uploadDataDuringCreation": true},
        }),
    ))
    .await;

    let requests = run.array("/requests");
    let posts = requests_of(requests, "POST");
    assert_eq!(posts.len(), 1, "{requests:?}");
    assert_eq!(posts[0]["status"], 201, "{requests:?}");
    assert_eq!(posts[0]["responseOffset"], MIB, "the POST took a chunk");
    let patches = requests_of(requests, "PATCH");
    assert_eq!(
        offsets(&patches),
        chunk_starts(MIB, input.len(), MIB),
        "{requests:?}"
    );
    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tus_js_defers_the_length_of_a_stream() {
    // creation-defer-length: a stream of unknown size; the last PATCH says how long.
    let server = Server::start_with(SMALL_BLOCKS).await;
    let input = Input::identity(2 * MIB + 500_007, 9);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({
            "mode": "upload",
            "chunkSize": MIB,
            "source": "stream",
            "clientOptions": {"uploadLengthDeferred": true},
        }),
    ))
    .await;

    let requests = run.array("/requests");
    let posts = requests_of(requests, "POST");
    assert_eq!(posts.len(), 1, "{requests:?}");
    assert_eq!(
        posts[0]["length"],
        Value::Null,
        "no Upload-Length at creation"
    );
    let patches = requests_of(requests, "PATCH");
    assert_eq!(
        offsets(&patches),
        chunk_starts(0, input.len(), MIB),
        "{requests:?}"
    );
    let lengths: Vec<&Value> = patches.iter().map(|p| &p["length"]).collect();
    assert_eq!(
        lengths,
        [&Value::Null, &Value::Null, &json!(input.len())],
        "Upload-Length comes with the last chunk: {requests:?}"
    );
    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tus_js_overrides_the_patch_method() {
    // overridePatchMethod: every chunk is a POST with X-HTTP-Method-Override: PATCH.
    let server = Server::start().await;
    let input = Input::identity(2 * MIB + 1, 10);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({
            "mode": "upload",
            "chunkSize": MIB,
            "clientOptions": {"overridePatchMethod": true},
        }),
    ))
    .await;

    let requests = run.array("/requests");
    assert!(requests_of(requests, "PATCH").is_empty(), "{requests:?}");
    let overridden: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["override"] == "PATCH")
        .collect();
    assert_eq!(
        offsets(&overridden),
        chunk_starts(0, input.len(), MIB),
        "{requests:?}"
    );
    for r in &overridden {
        assert_eq!(r["status"], 204, "{r}");
    }
    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tus_js_resumes_an_aborted_upload_from_its_offset() {
    let server = Server::start_with(SMALL_BLOCKS).await;
    let input = Input::identity(6 * MIB + 999, 3);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({
            "mode": "resume",
            "chunkSize": MIB,
            "storage": input.scratch("tus-urls.json"),
            "interrupt": "abort",
            "abortAfter": 3 * MIB,
        }),
    ))
    .await;

    // Phase 1: three chunks, then abort().
    let phase1 = run.array("/phase1/requests");
    assert_eq!(requests_of(phase1, "POST").len(), 1, "{phase1:?}");
    assert_eq!(
        offsets(&requests_of(phase1, "PATCH")),
        [0, MIB, 2 * MIB],
        "{phase1:?}"
    );
    // Phase 2 found the same upload, which the server holds at 3 MiB…
    let url = run.str("/uploadUrl");
    assert_eq!(run.str("/firstUploadUrl"), url);
    assert_eq!(run.str("/previousUploadUrl"), url);
    assert_eq!(run.u64("/head/offset"), 3 * MIB, "{}", run.stdout);
    // …and went on from there: a HEAD, no new upload, PATCHes from 3 MiB.
    let phase2 = run.array("/phase2/requests");
    assert_eq!(phase2[0]["method"], "HEAD", "{phase2:?}");
    assert_eq!(phase2[0]["url"], url, "{phase2:?}");
    assert!(requests_of(phase2, "POST").is_empty(), "{phase2:?}");
    assert_eq!(
        offsets(&requests_of(phase2, "PATCH")),
        chunk_starts(3 * MIB, input.len(), MIB),
        "{phase2:?}"
    );
    assert_eq!(run.u64("/phase2/progress/0"), 3 * MIB, "first onProgress");

    input.assert_finished(&server, url, &input.bytes).await;
}

#[tokio::test]
async fn tus_js_resumes_after_a_cut_connection_from_the_servers_offset() {
    let server = Server::start_with(SMALL_BLOCKS).await;
    let proxy = FaultProxy::start(server.addr()).await;
    // One connection per request (keepAlive off): the POST and three PATCHes go
    // through; the fourth PATCH is cut 600 000 bytes into its connection.
    const CUT: u64 = 600_000;
    proxy.plan([
        Fault::None,
        Fault::None,
        Fault::None,
        Fault::None,
        Fault::DropAfter(CUT),
    ]);
    let input = Input::identity(8 * MIB + 4321, 4);
    let run = tus_js(input.config(
        &proxy.url(FILES),
        json!({
            "mode": "resume",
            "chunkSize": MIB,
            "keepAlive": false,
            "storage": input.scratch("tus-urls.json"),
            "interrupt": "error",
        }),
    ))
    .await;
    assert_eq!(proxy.struck(), 1, "the cut happened once");

    let phase1 = run.array("/phase1/requests");
    assert_eq!(
        offsets(&requests_of(phase1, "PATCH")),
        [0, MIB, 2 * MIB, 3 * MIB],
        "{phase1:?}"
    );
    assert!(
        run.str("/phase1/error").contains("offset 3145728"),
        "phase 1 failed on the fourth chunk: {}",
        run.stdout
    );
    // Phase 2 found the upload, asked the server for its offset (a HEAD, no new
    // upload) and went on from the three chunks plus at most what reached the
    // server of the fourth.
    let url = run.str("/uploadUrl");
    assert_eq!(run.str("/previousUploadUrl"), url);
    let phase2 = run.array("/phase2/requests");
    assert_eq!(phase2[0]["method"], "HEAD", "{phase2:?}");
    assert_eq!(phase2[0]["url"], url, "{phase2:?}");
    assert!(requests_of(phase2, "POST").is_empty(), "{phase2:?}");
    let patches: Vec<Value> = requests_of(phase2, "PATCH").into_iter().cloned().collect();
    let (resumed, refused) = resumed_chain(&patches, "status", "responseOffset", input.len(), MIB);
    assert!(
        (3 * MIB..3 * MIB + CUT).contains(&resumed),
        "the server holds {resumed} bytes after the cut"
    );
    let head = run.u64("/head/offset");
    assert!(
        (3 * MIB..=resumed).contains(&head),
        "HEAD before resuming said {head}, the upload went on from {resumed}"
    );
    // Input bytes on the wire: phase 1 up to the cut, the rest once (plus any
    // chunk refused with 409).
    let sent = proxy.traffic().uploads;
    assert!(
        sent <= input.len() + CUT + refused as u64 * MIB,
        "{sent} input bytes went through the proxy for a {}-byte file",
        input.len()
    );

    input.assert_finished(&server, url, &input.bytes).await;
}

#[tokio::test]
async fn tus_js_parallel_uploads_are_concatenated() {
    let server = Server::start_with(SMALL_BLOCKS).await;
    let input = Input::identity(10 * MIB + 777, 5);
    let run = tus_js(input.config(
        &server.url(FILES),
        json!({"mode": "upload", "parallelUploads": 4}),
    ))
    .await;

    let requests = run.array("/requests");
    let posts = requests_of(requests, "POST");
    let concat_of = |r: &&Value| r["concat"].as_str().and_then(|c| Concat::parse(c).ok());
    let partials: Vec<_> = posts
        .iter()
        .filter(|r| concat_of(r) == Some(Concat::Partial))
        .collect();
    assert_eq!(partials.len(), 4, "{requests:?}");
    let finals: Vec<_> = posts
        .iter()
        .filter(|r| matches!(concat_of(r), Some(Concat::Final(_))))
        .collect();
    assert_eq!(finals.len(), 1, "{requests:?}");
    assert_eq!(finals[0]["status"], 201, "{requests:?}");
    let Some(Concat::Final(parts)) = concat_of(finals[0]) else {
        unreachable!("filtered as final")
    };
    assert_eq!(parts.len(), 4, "{requests:?}");
    // Every part is complete, keyless, and the parts add up to the input.
    let mut part_lengths = 0;
    for part in &parts {
        let head = server.tus_head(&upload_path(part)).await;
        assert_eq!(
            Concat::parse(header(&head.headers, th::UPLOAD_CONCAT)),
            Ok(Concat::Partial),
            "{part}"
        );
        assert_eq!(head.key, None, "a partial upload has no key: {part}");
        let len = head.length.expect("a partial upload's length");
        assert_eq!(head.offset, len, "{part} complete");
        part_lengths += len;
    }
    assert_eq!(part_lengths, input.len());

    let url = run.str("/uploadUrl");
    let head = input.assert_finished(&server, url, &input.bytes).await;
    let concat = header(&head.headers, th::UPLOAD_CONCAT);
    let Ok(Concat::Final(listed)) = Concat::parse(concat) else {
        panic!("Upload-Concat of the final upload: {concat:?}")
    };
    let listed: Vec<String> = listed.iter().map(|p| upload_path(p)).collect();
    let sent: Vec<String> = parts.iter().map(|p| upload_path(p)).collect();
    assert_eq!(listed, sent, "the final upload's parts, in order");
}

#[tokio::test]
async fn tuspy_uploads_in_chunks_with_sha1_checksums() {
    let server = Server::start_with(SMALL_BLOCKS).await;
    let input = Input::identity(5 * MIB + 321, 6);
    let chunk = 768 * 1024;
    let run = tuspy(input.config(
        &server.url(FILES),
        json!({"mode": "upload", "chunk_size": chunk, "checksum": true}),
    ))
    .await;

    let patches = run.array("/patches");
    let starts: Vec<u64> = patches
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, chunk_starts(0, input.len(), chunk), "{patches:?}");
    for p in patches {
        assert!(
            p["checksum"]
                .as_str()
                .is_some_and(|c| c.starts_with("sha1 ")),
            "tuspy sent Upload-Checksum: sha1 …: {p}"
        );
        assert_eq!(p["status"], 204, "{p}");
    }
    assert_eq!(run.u64("/offset"), input.len());
    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

/// tuspy sends three chunks, a new Uploader's PATCH is cut by a proxy, and a
/// third Uploader with the same URL finishes from the server's offset.
async fn tuspy_resume(checksum: bool) {
    const CUT: u64 = 400_000;
    let chunk = 768 * 1024;
    let server = Server::start_with(SMALL_BLOCKS).await;
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.set_fault(Fault::DropAfter(CUT));
    let input = Input::identity(4 * MIB + 99, 7);
    let run = tuspy(input.config(
        &server.url(FILES),
        json!({
            "mode": "resume",
            "chunk_size": chunk,
            "checksum": checksum,
            "chunks_before": 3,
            "interrupt_base": proxy.base_url(),
        }),
    ))
    .await;
    assert_eq!(
        proxy.struck(),
        1,
        "the proxy cut one connection: {}",
        run.stdout
    );

    assert_eq!(run.u64("/phase1/offset"), 3 * chunk);
    assert_eq!(run.u64("/phase2/head_offset"), 3 * chunk);
    run.str("/phase2/error");
    let patches = run.array("/patches");
    for p in patches {
        assert_eq!(
            p["checksum"]
                .as_str()
                .is_some_and(|c| c.starts_with("sha1 ")),
            checksum,
            "Upload-Checksum: sha1 on every PATCH, or on none: {p}"
        );
    }
    assert_eq!(
        patches[3]["status"],
        Value::Null,
        "the cut PATCH: {patches:?}"
    );
    let (resumed, _) = resumed_chain(
        &patches[4..],
        "status",
        "response_offset",
        input.len(),
        chunk,
    );
    if checksum {
        // Nothing of a body is committed before its checksum matched.
        assert_eq!(resumed, 3 * chunk, "the cut chunk left the offset alone");
    } else {
        assert!(
            (3 * chunk..3 * chunk + CUT).contains(&resumed),
            "the server holds {resumed} bytes after the cut"
        );
    }
    let head = run.u64("/phase3/head_offset");
    assert!(
        (3 * chunk..=resumed).contains(&head),
        "the new Uploader's HEAD said {head}, the upload went on from {resumed}"
    );
    assert_eq!(run.u64("/phase3/offset"), input.len());

    input
        .assert_finished(&server, run.str("/uploadUrl"), &input.bytes)
        .await;
}

#[tokio::test]
async fn tuspy_resumes_a_checksummed_upload_after_a_cut_connection() {
    tuspy_resume(true).await;
}

#[tokio::test]
async fn tuspy_resumes_after_a_cut_connection_from_what_the_server_kept() {
    tuspy_resume(false).await;
}
