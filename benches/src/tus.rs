//! The tus benchmark: upcache's tus 1.0 endpoint (`/files/`, `spec/tus.md`)
//! next to the reference Node server, `@tus/server` with `@tus/file-store`
//! (the npm packages pinned in `benches/tus/package-lock.json`), with the same
//! two clients on the same input size, in the same run.
//!
//! Rows: {upcache, @tus/server} × {tus-js-client, curl}, and optionally
//! tus-js-client with a finite `chunkSize` (`--chunk-size`):
//!
//! * **tus-js-client** — `node benches/tus/tus-upload.mjs`: one `Upload` of
//!   an `fs.ReadStream` of the file with the library's defaults (`chunkSize`
//!   Infinity: creation, then the whole file in one `PATCH`), metadata
//!   `filename`, no retries. The script times itself from `upload.start()` to
//!   `onSuccess` and prints JSON; Node's start-up is not in the figure (it is
//!   in the client CPU).
//! * **curl** — `POST /files/` with `Tus-Resumable: 1.0.0`, `Upload-Length`
//!   and `Upload-Metadata: filename …` (no body), the `Location` read from
//!   the answer, then one
//!   `curl -T FILE -X PATCH -H 'Tus-Resumable: 1.0.0' -H 'Content-Type: application/offset+octet-stream' -H 'Upload-Offset: 0' URL`.
//!   The time is the two curl processes' wall time, start-up included.
//!
//! Each client is its own process, run through the measuring trampoline
//! ([`crate::process`]) for its CPU time. Each scenario has its own input
//! (nothing is ever already stored) and a **fresh server**: a new process
//! and data directory, port 0, defaults. The server's peak RSS is `VmHWM`
//! of its process (`upcache`, or `node`) over its life, read from `/proc`
//! just before it is stopped.
//!
//! A figure is printed only for an upload that is verifiably complete:
//! `HEAD` of the upload says `Upload-Offset` = `Upload-Length` = the input's
//! length; on upcache it also carries `Upload-Key`, the key of the input's
//! BLAKE3 with the identity operation, whose result must have the input's
//! length, hash and last bytes ([`check_stored`]); on @tus/server the stored
//! file must have the input's length and BLAKE3.
//!
//! The two servers do not do the same work per byte: upcache fdatasyncs and
//! hashes (BLAKE3) every byte before its `204`; @tus/file-store pipes the
//! body into `fs.createWriteStream` and answers when the write stream has
//! finished — no fsync, no hash (its `dist/index.js`). That is the issue's
//! framing, and the header says so.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use upcache_protocol::headers as h;
use upcache_protocol::tus::Metadata;
use upcache_protocol::{InputHash, Key, Operation};

use crate::client::{check_stored, http_client};
use crate::input::Input;
use crate::machine::{self, settle, Machine, SETTLE};
use crate::process::{self, Measured};
use crate::report::{announce, mib_per_s, render, size};
use crate::server::BenchServer;
use crate::Result;

const MIB: f64 = (1u64 << 20) as f64;

/// The tus protocol version, sent on every request and expected on every answer.
const TUS_VERSION: &str = "1.0.0";
const TUS_RESUMABLE: &str = "tus-resumable";
const UPLOAD_METADATA: &str = "upload-metadata";
/// The tus endpoint, on both servers.
const FILES: &str = "/files/";

/// The issue's figures for @tus/server on the same machine (MiB/s with
/// tus-js-client, with curl; peak RSS MiB), printed next to this run's.
const ISSUE_TUS_JS: f64 = 530.0;
const ISSUE_CURL: f64 = 660.0;
const ISSUE_RSS: f64 = 95.0;
/// The issue's targets: upcache at least as fast on every row...
const TARGET_SPEED: f64 = 1.0;
/// ...with at most this share of @tus/server's peak RSS.
const TARGET_RSS: f64 = 0.5;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input size of each scenario.
    pub size: u64,
    /// How many times each scenario runs, each time on a fresh server.
    pub runs: usize,
    /// The servers to measure (both, for the comparison).
    pub servers: Vec<ServerKind>,
    /// An extra tus-js-client row per server with this `chunkSize`.
    pub chunk_size: Option<u64>,
    /// The `upcache` binary.
    pub upcache_bin: PathBuf,
    /// The Node package (`benches/tus`): the scripts and their `node_modules`.
    pub tus_dir: PathBuf,
    /// The node binary.
    pub node: PathBuf,
    /// The curl binary.
    pub curl: PathBuf,
    /// Where the inputs and the servers' data go (a temporary directory is
    /// made inside it); it must be on the filesystem being measured.
    pub work_dir: PathBuf,
    /// This benchmark's own executable, run as the measuring trampoline.
    pub trampoline: PathBuf,
}

/// The server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerKind {
    /// `upcache serve`, tus at `/files/`.
    Upcache,
    /// `node benches/tus/tus-server.mjs`: @tus/server + @tus/file-store.
    TusNode,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            Self::Upcache => "upcache",
            Self::TusNode => "@tus/server",
        }
    }
}

impl FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "upcache" => Ok(Self::Upcache),
            "tus-node" | "@tus/server" => Ok(Self::TusNode),
            _ => Err(format!("unknown server {s:?} (upcache or tus-node)")),
        }
    }
}

/// The client of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// tus-js-client in Node; `Some(n)`: `chunkSize: n` (default Infinity).
    TusJs(Option<u64>),
    /// `curl` POST, then one `curl -T FILE -X PATCH`.
    Curl,
}

impl ClientKind {
    fn name(self) -> String {
        match self {
            Self::TusJs(None) => "tus-js-client".into(),
            Self::TusJs(Some(n)) => format!("tus-js-client, {} chunks", size(n)),
            Self::Curl => "curl".into(),
        }
    }

    /// The @tus/server figure the issue gives for this client.
    fn issue_figure(self) -> Option<f64> {
        match self {
            Self::TusJs(None) => Some(ISSUE_TUS_JS),
            Self::TusJs(Some(_)) => None,
            Self::Curl => Some(ISSUE_CURL),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scenario {
    server: ServerKind,
    client: ClientKind,
}

impl Scenario {
    fn name(self) -> String {
        format!("{}, {}", self.server.name(), self.client.name())
    }
}

/// One measured run of one scenario.
#[derive(Debug, Clone)]
struct Row {
    scenario: Scenario,
    /// Which run (1..=runs) it belongs to.
    run: usize,
    label: String,
    bytes: u64,
    /// Creation + PATCH(es) until the last `204`.
    took: Duration,
    /// The client processes' user + system CPU seconds (start-up included).
    client_cpu: f64,
    server_rss: u64,
    server_cpu: f64,
    busy_before: f64,
    note: String,
}

/// Package versions and node's, for the header.
struct NodeSide {
    node_version: String,
    tus_server: String,
    file_store: String,
    tus_js_client: String,
}

/// Runs the benchmark and prints its report on stdout.
pub async fn run(opts: Options) -> Result<()> {
    if opts.runs == 0 || opts.servers.is_empty() || opts.chunk_size == Some(0) {
        return Err("--runs, --servers and --chunk-size must not be empty or zero".into());
    }
    let work = crate::prepare(
        "tus",
        opts.size,
        8 << 20,
        &opts.upcache_bin,
        &opts.curl,
        &opts.work_dir,
    )
    .await?;
    let node_side = check_node(&opts).await?;
    let machine = Machine::describe(work.path());
    print_header(&opts, &machine, &node_side, work.path());
    reference_rates(&opts, work.path()).await?;

    let mut servers = opts.servers.clone();
    servers.sort();
    servers.dedup();
    let mut clients = vec![ClientKind::TusJs(None)];
    clients.extend(opts.chunk_size.map(|n| ClientKind::TusJs(Some(n))));
    clients.push(ClientKind::Curl);
    // Client by client, each on every server in turn: the two figures to
    // compare are measured next to each other.
    let scenarios: Vec<Scenario> = clients
        .iter()
        .flat_map(|&client| {
            servers
                .iter()
                .map(move |&server| Scenario { server, client })
        })
        .collect();
    let width = scenarios.iter().map(|s| s.name().len()).max().unwrap_or(0);

    let mut inputs = Vec::new();
    for (i, &scenario) in scenarios.iter().enumerate() {
        let path = work.path().join(format!("input-{i}.bin"));
        let length = opts.size;
        let input = tokio::task::spawn_blocking(move || {
            Input::generate(&path, length, 0x7b5_0000 + i as u64)
        })
        .await??;
        println!(
            "  input of {:<width$}  {} (made in {:.1} s)",
            scenario.name(),
            input.hash,
            input.made_in.as_secs_f64(),
        );
        inputs.push(input);
    }
    println!();

    let mut rows = Vec::new();
    for run in 1..=opts.runs {
        for (i, (&scenario, input)) in scenarios.iter().zip(&inputs).enumerate() {
            let busy = settle().await?;
            let dir = work.path().join(format!("server-{run}-{i}"));
            let mut row = measure(&opts, scenario, input, &dir).await?;
            row.busy_before = busy;
            row.run = run;
            if opts.runs > 1 {
                row.label = format!("{} #{run}", row.label);
            }
            announce(&row.label, row.bytes, row.took, width + 3);
            rows.push(row);
        }
    }

    println!();
    println!("results: creation + PATCH until the last 204, each upload verified complete");
    println!();
    print!("{}", table(&rows));
    println!();
    summarize(&opts, &machine, &servers, &clients, &rows);
    Ok(())
}

/// Node runs, and the packages are installed (`npm ci --prefix benches/tus`).
async fn check_node(opts: &Options) -> Result<NodeSide> {
    let out = tokio::process::Command::new(&opts.node)
        .arg("--version")
        .output()
        .await;
    let node_version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => {
            return Err(format!(
                "{} does not run; install Node.js (20.19 or later)",
                opts.node.display()
            )
            .into())
        }
    };
    let version = |package: &str| -> Result<String> {
        let manifest = opts
            .tus_dir
            .join("node_modules")
            .join(package)
            .join("package.json");
        let text = std::fs::read_to_string(&manifest).map_err(|e| {
            format!(
                "{}: {e} (install the packages: npm ci --prefix {})",
                manifest.display(),
                opts.tus_dir.display()
            )
        })?;
        let v: Value = serde_json::from_str(&text)?;
        Ok(v["version"].as_str().unwrap_or("?").to_owned())
    };
    for script in ["tus-server.mjs", "tus-upload.mjs"] {
        if !opts.tus_dir.join(script).is_file() {
            return Err(format!("no {script} in {}", opts.tus_dir.display()).into());
        }
    }
    Ok(NodeSide {
        node_version,
        tus_server: version("@tus/server")?,
        file_store: version("@tus/file-store")?,
        tus_js_client: version("tus-js-client")?,
    })
}

fn print_header(opts: &Options, machine: &Machine, node: &NodeSide, work: &Path) {
    println!("upcache tus benchmark: upcache's /files/ vs @tus/server + @tus/file-store");
    machine.print(work);
    println!(
        "  upcache   {} serve (defaults; fsyncs and BLAKE3-hashes every byte before its 204)",
        opts.upcache_bin.display()
    );
    println!(
        "  @tus      node {} {}/tus-server.mjs: @tus/server {} + @tus/file-store {} (no fsync, no hash)",
        node.node_version,
        opts.tus_dir.display(),
        node.tus_server,
        node.file_store
    );
    println!(
        "  clients   tus-js-client {} ({}/tus-upload.mjs, chunkSize {}); curl POST + one curl -T FILE -X PATCH",
        node.tus_js_client,
        opts.tus_dir.display(),
        match opts.chunk_size {
            None => "Infinity".into(),
            Some(n) => format!("Infinity and {}", size(n)),
        }
    );
    println!(
        "  input     {} of pseudo-random bytes per scenario; a fresh server process and data dir each",
        size(opts.size)
    );
    println!();
}

/// What a durable, verified byte costs on this machine, next to what @tus
/// does with it (a write into the page cache).
async fn reference_rates(opts: &Options, work: &Path) -> Result<()> {
    let sz = opts.size;
    let chunk = 8usize << 20;
    let line = |what: String, took: Duration, busy: f64| {
        println!(
            "  {what:<44} {:>6.0} MiB/s  {:>8.0}%",
            mib_per_s(sz, took),
            busy * 100.0
        )
    };
    println!("reference rates, one thread, on this machine and filesystem busy before");
    let busy = settle().await?;
    let dir = work.to_path_buf();
    let took = tokio::task::spawn_blocking(move || machine::disk_write(&dir, sz, chunk, u64::MAX))
        .await??;
    line(
        format!("disk: write {}, one fdatasync at the end", size(sz)),
        took,
        busy,
    );
    let busy = settle().await?;
    let took = tokio::task::spawn_blocking(move || machine::blake3_one_core(sz, 64 << 10)).await?;
    line("BLAKE3 on one core, 64 KiB updates".into(), took, busy);
    println!();
    Ok(())
}

/// One scenario on a fresh server.
async fn measure(opts: &Options, scenario: Scenario, input: &Input, dir: &Path) -> Result<Row> {
    let server = start_server(opts, scenario.server, dir)?;
    let base = server.base_url();
    let client = http_client(1)?;
    options_check(&client, &base, scenario.server).await?;
    let endpoint = format!("{base}{FILES}");

    let (took, client_cpu, url, mut note) = match scenario.client {
        ClientKind::TusJs(chunk) => {
            let mut args: Vec<OsString> = vec![
                opts.tus_dir.join("tus-upload.mjs").into(),
                "--endpoint".into(),
                endpoint.clone().into(),
                "--file".into(),
                input.path.clone().into(),
            ];
            if let Some(n) = chunk {
                args.extend(["--chunk-size".into(), n.to_string().into()]);
            }
            let m = run_client(opts, &opts.node, &args).await?;
            let out: Value = serde_json::from_str(m.stdout.trim()).map_err(|e| {
                format!(
                    "tus-upload.mjs printed {:?} ({e}): {}",
                    m.stdout,
                    m.stderr_text()
                )
            })?;
            let (Some(url), Some(seconds), Some(bytes)) = (
                out["url"].as_str(),
                out["seconds"].as_f64(),
                out["bytes"].as_u64(),
            ) else {
                return Err(format!("tus-upload.mjs printed {out}").into());
            };
            if bytes != input.length {
                return Err(
                    format!("tus-upload.mjs sent {bytes} bytes, not {}", input.length).into(),
                );
            }
            let patches = out["patches"].as_u64().unwrap_or(0);
            (
                Duration::from_secs_f64(seconds),
                m.cpu_seconds,
                url.to_owned(),
                format!(
                    "{patches} PATCH{}; node process {:.2} s",
                    if patches == 1 { "" } else { "es" },
                    m.wall.as_secs_f64()
                ),
            )
        }
        ClientKind::Curl => {
            let created = run_client(opts, &opts.curl, &curl_create_args(&endpoint, input)).await?;
            let location = created_location(&created.stdout)
                .map_err(|e| format!("curl POST {endpoint}: {e}"))?;
            let url = resolve(&base, &location);
            let patched = run_client(opts, &opts.curl, &curl_patch_args(&url, input)).await?;
            if patched.stdout != "204" {
                return Err(format!(
                    "curl PATCH {url}: HTTP {:?}: {}",
                    patched.stdout,
                    patched.stderr_text()
                )
                .into());
            }
            (
                created.wall + patched.wall,
                created.cpu_seconds + patched.cpu_seconds,
                url,
                format!(
                    "POST {:.3} s + PATCH {:.3} s",
                    created.wall.as_secs_f64(),
                    patched.wall.as_secs_f64()
                ),
            )
        }
    };

    let key = head_check(&client, &url, input, scenario.server).await?;
    match key {
        Some(key) => {
            let after = check_stored(&client, &base, &key, input).await?;
            note.push_str(&format!("; Upload-Key ok, then {}", after.as_str()));
        }
        None => {
            let id = url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let file = dir.join("data").join(&id);
            if id.is_empty() || id.contains("..") {
                return Err(format!("odd upload URL {url}").into());
            }
            let hash = tokio::task::spawn_blocking(move || hash_file(&file)).await??;
            if hash != (input.length, input.hash) {
                return Err(format!(
                    "@tus/file-store stored {} bytes hashing to {}, not the input ({} bytes, {})",
                    hash.0, hash.1, input.length, input.hash
                )
                .into());
            }
            note.push_str("; stored file = input (BLAKE3)");
        }
    }
    let usage = server.usage()?;
    server.stop()?;
    Ok(Row {
        scenario,
        run: 1,
        label: scenario.name(),
        bytes: input.length,
        took,
        client_cpu,
        server_rss: usage.peak_rss,
        server_cpu: usage.cpu_seconds,
        busy_before: 0.0,
        note,
    })
}

/// Runs a client through the trampoline; it must exit with 0.
async fn run_client(opts: &Options, program: &Path, args: &[OsString]) -> Result<Measured> {
    let m = process::measure(&opts.trampoline, program, args).await?;
    if m.exit != 0 {
        return Err(format!(
            "{} exited with {}: {}",
            program.display(),
            m.exit,
            m.stderr_text()
        )
        .into());
    }
    Ok(m)
}

/// `OPTIONS /files/` answers with `Tus-Version: 1.0.0`: the server speaks tus.
async fn options_check(client: &Client, base: &str, server: ServerKind) -> Result<()> {
    let resp = client
        .request(reqwest::Method::OPTIONS, format!("{base}{FILES}"))
        .send()
        .await?;
    let versions = resp
        .headers()
        .get("tus-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !resp.status().is_success() || !versions.split(',').any(|v| v.trim() == TUS_VERSION) {
        return Err(format!(
            "{} does not speak tus at {FILES}: OPTIONS answered {} with Tus-Version {versions:?}",
            server.name(),
            resp.status()
        )
        .into());
    }
    Ok(())
}

/// `HEAD` of a finished upload: `Upload-Offset` and `Upload-Length` are the
/// input's length. On upcache, also `Upload-Key`, which must be the key of
/// the input with the identity operation; it is returned.
async fn head_check(
    client: &Client,
    url: &str,
    input: &Input,
    server: ServerKind,
) -> Result<Option<Key>> {
    let resp = client
        .head(url)
        .header(TUS_RESUMABLE, TUS_VERSION)
        .send()
        .await?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    if resp.status() != StatusCode::OK
        || number(h::UPLOAD_OFFSET) != Some(input.length)
        || number(h::UPLOAD_LENGTH) != Some(input.length)
    {
        return Err(format!(
            "HEAD {url}: {} with Upload-Offset {:?}, Upload-Length {:?}; expected 200 and {} for both",
            resp.status(),
            header(h::UPLOAD_OFFSET),
            header(h::UPLOAD_LENGTH),
            input.length
        )
        .into());
    }
    if server != ServerKind::Upcache {
        return Ok(None);
    }
    let expected = Key::derive(&input.hash, &Operation::parse(&json!({"op": "identity"}))?);
    let key = header(h::UPLOAD_KEY)
        .ok_or_else(|| format!("HEAD {url}: the finished upload has no Upload-Key"))?;
    if key.trim() != expected.to_hex() {
        return Err(format!("HEAD {url}: Upload-Key {key}, expected {expected}").into());
    }
    Ok(Some(expected))
}

/// The length and BLAKE3 of a file, read in 1 MiB pieces. Blocking.
fn hash_file(path: &Path) -> Result<(u64, InputHash)> {
    let mut file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
    }
    Ok((length, hasher.finalize().into()))
}

/// `Upload-Metadata: filename <base64 of the input's file name>`.
fn metadata(input: &Input) -> String {
    let name = input
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Metadata::new([("filename", name.into_bytes())])
        .expect("filename is a metadata key")
        .encode()
}

/// curl's creation: `POST /files/` without a body; the answer's headers go
/// to stdout.
fn curl_create_args(endpoint: &str, input: &Input) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-sS", "--noproxy", "*", "-X", "POST"]
        .map(OsString::from)
        .into();
    for header in [
        format!("Tus-Resumable: {TUS_VERSION}"),
        format!("Upload-Length: {}", input.length),
        format!("{UPLOAD_METADATA}: {}", metadata(input)),
    ] {
        args.extend(["-H".into(), header.into()]);
    }
    args.extend(["-o", "/dev/null", "-D", "-", endpoint].map(OsString::from));
    args
}

/// The `Location` of a `201 Created`, from the headers curl printed.
fn created_location(headers: &str) -> Result<String, String> {
    let mut lines = headers.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("201") {
        return Err(format!("expected 201 Created, got {:?}", headers.trim()));
    }
    lines
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| format!("no Location in {:?}", headers.trim()))
}

/// A `Location` (absolute, or a path) as a URL on `base`.
pub(crate) fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}/{}", location.trim_start_matches('/'))
    }
}

/// curl's upload: the whole input in one `PATCH` from offset 0, streamed
/// from the file; curl prints only the HTTP status code.
fn curl_patch_args(url: &str, input: &Input) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-sS", "--noproxy", "*", "-X", "PATCH"]
        .map(OsString::from)
        .into();
    for header in [
        format!("Tus-Resumable: {TUS_VERSION}"),
        format!("{}: {}", header::CONTENT_TYPE, h::OFFSET_OCTET_STREAM),
        format!("{}: 0", h::UPLOAD_OFFSET),
    ] {
        args.extend(["-H".into(), header.into()]);
    }
    args.push("-T".into());
    args.push(input.path.clone().into());
    args.extend(["-o", "/dev/null", "-w", "%{http_code}", url].map(OsString::from));
    args
}

/// A server of either kind, fresh for one scenario.
fn start_server(opts: &Options, kind: ServerKind, dir: &Path) -> Result<BenchServer> {
    match kind {
        ServerKind::Upcache => BenchServer::start(&opts.upcache_bin, dir),
        ServerKind::TusNode => {
            // `node tus-server.mjs`: the node process itself is the child,
            // so its `/proc` figures are the server's.
            let mut cmd = Command::new(&opts.node);
            cmd.arg(opts.tus_dir.join("tus-server.mjs"))
                .args(["--host", "127.0.0.1", "--port", "0", "--dir"])
                .arg(dir.join("data"))
                // The `debug` package would log every request.
                .env_remove("DEBUG");
            BenchServer::spawn(cmd, "tus-server.mjs", dir)
        }
    }
}

fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "MiB/s",
        "seconds",
        "server peak RSS MiB",
        "server CPU s",
        "client CPU s",
        "busy before",
        "note",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                format!("{:.0}", mib_per_s(r.bytes, r.took)),
                format!("{:.3}", r.took.as_secs_f64()),
                format!("{:.1}", r.server_rss as f64 / MIB),
                format!("{:.2}", r.server_cpu),
                format!("{:.2}", r.client_cpu),
                format!("{:.0}%", r.busy_before * 100.0),
                r.note.clone(),
            ]
        })
        .collect();
    render(&header, &cells)
}

/// The median of `f` over the rows of `scenario`.
fn median(rows: &[Row], scenario: Scenario, f: impl Fn(&Row) -> f64) -> Option<f64> {
    let mut values: Vec<f64> = rows
        .iter()
        .filter(|r| r.scenario == scenario)
        .map(f)
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The lines under the table: upcache against @tus/server, client by
/// client, against the issue's targets; then how to read the figures.
fn summarize(
    opts: &Options,
    machine: &Machine,
    servers: &[ServerKind],
    clients: &[ClientKind],
    rows: &[Row],
) {
    let rate = |r: &Row| mib_per_s(r.bytes, r.took);
    let rss = |r: &Row| r.server_rss as f64 / MIB;
    let both = servers.contains(&ServerKind::Upcache) && servers.contains(&ServerKind::TusNode);
    let medians = if opts.runs > 1 { "medians, " } else { "" };
    if both {
        println!(
            "upcache / @tus/server ({medians}the issue's targets: speed ≥ {TARGET_SPEED:.2} on every row, server peak RSS ≤ {TARGET_RSS:.2})"
        );
        let mut lines = Vec::new();
        let mut all_met = true;
        for &client in clients {
            let at = |server| Scenario { server, client };
            let (Some(up), Some(tus), Some(up_rss), Some(tus_rss)) = (
                median(rows, at(ServerKind::Upcache), rate),
                median(rows, at(ServerKind::TusNode), rate),
                median(rows, at(ServerKind::Upcache), rss),
                median(rows, at(ServerKind::TusNode), rss),
            ) else {
                continue;
            };
            let (speed, memory) = (up / tus, up_rss / tus_rss);
            let met = speed >= TARGET_SPEED && memory <= TARGET_RSS;
            // Run by run: in how many was upcache at least as fast as
            // @tus/server with this client, measured right after it.
            let of_run = |server, run| {
                rows.iter()
                    .find(|r| r.scenario == at(server) && r.run == run)
                    .map(rate)
            };
            let ahead = (1..=opts.runs)
                .filter(|&run| {
                    matches!(
                        (of_run(ServerKind::Upcache, run), of_run(ServerKind::TusNode, run)),
                        (Some(u), Some(t)) if u >= t * TARGET_SPEED
                    )
                })
                .count();
            all_met &= met;
            lines.push(vec![
                client.name(),
                format!("{up:.0}"),
                format!("{tus:.0}"),
                client
                    .issue_figure()
                    .map_or("-".into(), |f| format!("~{f:.0}")),
                format!("{speed:.2}"),
                format!("{ahead} of {}", opts.runs),
                format!("{up_rss:.1}"),
                format!("{tus_rss:.1}"),
                format!("{memory:.2}"),
                if met { "met" } else { "MISSED" }.into(),
            ]);
        }
        print!(
            "{}",
            indent(&render(
                &[
                    "client",
                    "upcache MiB/s",
                    "@tus MiB/s",
                    "issue's @tus",
                    "speed ratio",
                    "runs ahead",
                    "upcache RSS MiB",
                    "@tus RSS MiB",
                    "RSS ratio",
                    "target",
                ],
                &lines,
            ))
        );
        println!(
            "  all targets: {}   (the issue's @tus/server peak RSS: ~{ISSUE_RSS:.0} MiB)",
            if all_met { "met" } else { "NOT met" }
        );
    }
    println!("  load avg after the run: {}", machine::load_average());
    println!();
    if both {
        println!(
            "  speed ratio  upcache's MiB/s / @tus/server's with the same client; runs ahead: the"
        );
        println!(
            "               runs in which upcache was at least as fast (each pair back to back)"
        );
        println!("  RSS ratio    upcache's server peak RSS / @tus/server's");
    }
    println!("  seconds      creation (POST) + PATCH(es) until the last 204; tus-js-client: timed");
    println!("               by the script from upload.start() to onSuccess (node start-up left");
    println!("               out); curl: the two curl processes, start-up included");
    println!("  MiB/s        input size / seconds");
    println!("  server RSS   VmHWM of the server process (upcache, or node) over its life: start,");
    println!("               upload, checks");
    println!("  server CPU   user + system seconds of the server process over its life");
    println!("  client CPU   user + system seconds of the client process(es), start-up included");
    println!(
        "  busy before  share of all CPUs busy in the {} s pause before the phase, while nothing",
        SETTLE.as_secs()
    );
    println!("               of the benchmark runs: other work on the machine (should be ~0%)");
    println!("  work/byte    upcache: write, fdatasync and BLAKE3 before each 204 (durable and");
    println!(
        "               verified); @tus/file-store: a write into the page cache, no fsync, no"
    );
    println!("               hash. The `sync` before each phase flushes what @tus left, untimed.");
    println!(
        "  all clients and servers share the machine's {} CPUs",
        machine.cpus
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_headers_give_the_location() {
        let headers =
            "HTTP/1.1 201 Created\r\nTus-Resumable: 1.0.0\r\nlocation: /files/abc\r\n\r\n";
        assert_eq!(created_location(headers).unwrap(), "/files/abc");
        assert!(created_location("HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(created_location("HTTP/1.1 201 Created\r\n\r\n").is_err());
        assert_eq!(
            resolve("http://127.0.0.1:1", "/files/abc"),
            "http://127.0.0.1:1/files/abc"
        );
        assert_eq!(
            resolve("http://127.0.0.1:1", "http://127.0.0.1:1/files/x"),
            "http://127.0.0.1:1/files/x"
        );
    }

    #[test]
    fn servers_parse() {
        assert_eq!("upcache".parse::<ServerKind>(), Ok(ServerKind::Upcache));
        assert_eq!("tus-node".parse::<ServerKind>(), Ok(ServerKind::TusNode));
        assert!("nginx".parse::<ServerKind>().is_err());
    }
}
