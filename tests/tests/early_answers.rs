//! Every early answer reaches every client.
//!
//! The server answers some requests before reading their bodies: a block it
//! already has, a hit, a refusal found from the headers. Plain clients —
//! Python's `http.client`, Node's `fetch`, curl without `Expect` — send the
//! whole body before (or while) they read the answer; they must get the
//! answer, not a broken pipe or a reset. curl with `Expect: 100-continue`
//! must get it without sending a byte. Each client is the real one, run as a
//! process (`tests/clients/send.py`, `tests/clients/send.mjs`, `curl`), on
//! `/v1` and on `/files/`. The bodies (20 MiB) are larger than the socket
//! buffers, so a server that closed the connection under them would reset it.

use std::path::{Path, PathBuf};
use std::process::Command;

use upcache_e2e::tus::op_metadata;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::{block_path, entry_path};

const BS: u64 = 8 << 20;
const BIG: usize = 20 << 20;

#[derive(Debug, Clone, Copy)]
enum Client {
    Python,
    Node,
    Curl,
    CurlExpect,
}

const CLIENTS: [Client; 4] = [
    Client::Python,
    Client::Node,
    Client::Curl,
    Client::CurlExpect,
];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// What a client read: the status, and for curl the body bytes it sent.
#[derive(Debug)]
struct Answer {
    status: u16,
    sent: Option<u64>,
}

/// Sends `method url` with `file` as the body and `headers`, as `client` does.
fn send(client: Client, method: &str, url: &str, file: &Path, headers: &[String]) -> Answer {
    let mut cmd = match client {
        Client::Python => {
            let mut c = Command::new("python3");
            c.arg(script("send.py"));
            c
        }
        Client::Node => {
            let mut c = Command::new("node");
            c.arg(script("send.mjs"));
            c
        }
        Client::Curl | Client::CurlExpect => {
            let mut c = Command::new("curl");
            c.args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}\n%{size_upload}",
            ])
            .args(["-X", method, "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args(["--expect100-timeout", "30"]);
            if matches!(client, Client::Curl) {
                c.args(["-H", "Expect:"]);
            } else {
                c.args(["-H", "Expect: 100-continue"]);
            }
            for header in headers {
                c.args(["-H", header]);
            }
            c.arg(url);
            c
        }
    };
    if matches!(client, Client::Python | Client::Node) {
        cmd.args([method, url]).arg(file).args(headers);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {client:?} ({e}): are python3, node and curl installed?")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{client:?} {method} {url} read no answer: {stderr}"
    );
    let mut lines = stdout.lines();
    let status = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{client:?}: no status in {stdout:?} ({stderr})"));
    let sent = match client {
        Client::Curl | Client::CurlExpect => lines.next().and_then(|l| l.trim().parse().ok()),
        _ => None,
    };
    Answer { status, sent }
}

/// Runs every client and checks each read `status`; curl with `Expect` must
/// have sent no byte of the body.
async fn every_client_reads(status: u16, method: &str, url: &str, file: &Path, headers: &[String]) {
    for client in CLIENTS {
        let (method, url, file, headers) = (
            method.to_owned(),
            url.to_owned(),
            file.to_owned(),
            headers.to_vec(),
        );
        let answer =
            tokio::task::spawn_blocking(move || send(client, &method, &url, &file, &headers))
                .await
                .unwrap();
        assert_eq!(answer.status, status, "{client:?}: {answer:?}");
        if matches!(client, Client::CurlExpect) {
            assert_eq!(answer.sent, Some(0), "curl with Expect sent the body");
        }
    }
}

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
    done: Job,
}

impl Setup {
    /// A server with one complete entry, uploaded in 8 MiB blocks.
    async fn new() -> Self {
        let server = Server::start().await;
        let done = Job::identity(pseudo_random(BIG, 31));
        let layout = done.layout(BS);
        server.create(&done, Some(BS)).await;
        for n in 0..layout.blocks() {
            server.put_block(&done, &layout, n).await;
        }
        assert!(server.wait_result(&done.key).await == done.input);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("input"), &done.input).unwrap();
        Self { server, dir, done }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn a_block_already_stored_is_answered_to_every_client() {
    let s = Setup::new().await;
    // An upload still under way, whose block 0 is stored.
    let pending = Job::identity(pseudo_random(BIG, 33));
    let layout = pending.layout(BS);
    s.server.create(&pending, Some(BS)).await;
    s.server.put_block(&pending, &layout, 0).await;
    std::fs::write(s.file("pending0"), pending.block(&layout, 0)).unwrap();
    let url = s.server.url(&block_path(&pending.key, 0));
    every_client_reads(204, "PUT", &url, &s.file("pending0"), &[]).await;
    assert_eq!(s.server.head_info(&pending.key).await.missing, "1-2");
}

#[tokio::test]
async fn a_hit_is_answered_to_every_client() {
    let s = Setup::new().await;
    let url = s.server.url(&entry_path(&s.done.key));
    let headers = [
        format!("{}: {}", h::UPLOAD_INPUT_HASH, s.done.hash.to_hex()),
        format!("{}: {}", h::UPLOAD_OPERATION, s.done.op_header()),
        format!("{}: return=minimal", h::PREFER),
    ];
    every_client_reads(303, "PUT", &url, &s.file("input"), &headers).await;
    // The connection of a drained early answer stays usable: the server
    // still answers everyone afterwards.
    assert_eq!(s.server.status(&s.done.key).await.key, s.done.key);
}

#[tokio::test]
async fn a_refusal_from_the_headers_is_answered_to_every_client() {
    let s = Setup::new().await;
    let pending = Job::identity(pseudo_random(2 * BIG, 32));
    s.server.create(&pending, Some(BS)).await;
    let url = s.server.url(&entry_path(&pending.key));
    let headers = [
        format!("{}: 5", h::UPLOAD_OFFSET),
        format!("content-type: {}", h::OFFSET_OCTET_STREAM),
    ];
    every_client_reads(409, "PATCH", &url, &s.file("input"), &headers).await;
    assert_eq!(s.server.head_info(&pending.key).await.offset, 0);
}

#[tokio::test]
async fn tus_refusals_from_the_headers_are_answered_to_every_client() {
    let s = Setup::new().await;
    let location = s
        .server
        .tus_create(
            2 * BIG as u64,
            &op_metadata(&serde_json::json!({"op": "identity"})),
        )
        .await;
    let url = s.server.url(&location);
    let headers = [
        format!("{}: {}", h::TUS_RESUMABLE, h::TUS_PROTOCOL_VERSION),
        format!("{}: 5", h::UPLOAD_OFFSET),
        format!("content-type: {}", h::OFFSET_OCTET_STREAM),
    ];
    every_client_reads(409, "PATCH", &url, &s.file("input"), &headers).await;
    assert_eq!(s.server.tus_head(&location).await.offset, 0);
}
