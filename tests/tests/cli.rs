//! The `upcache` client subcommands as a user or a script runs them: what
//! they print (plain lines when stderr is not a terminal), the files they
//! write, and their exit codes — 0 success, 2 usage error, 3 refused by the
//! server, 4 network failure, 5 not ready.

use std::time::{Duration, Instant};

use upcache_e2e::cli::{finish, run, spawn, Run};
use upcache_e2e::sdk::input_file;
use upcache_e2e::*;
use upcache_protocol::{InputHash, Key, Operation, State, Status};

const BLOCK: u64 = 64 * 1024;
const IDENTITY: &str = r#"{"op":"identity"}"#;

/// Asserts that `stderr` is plain text: no escape sequences, no carriage
/// returns redrawing a progress bar.
fn assert_plain(stderr: &str) {
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "stderr is not a terminal, yet it holds escapes or redraws: {stderr:?}"
    );
}

/// A closed port: nothing listens there.
fn unreachable() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Creates an upload for `job` with 64 KiB blocks and stores block 0 only.
async fn partial_upload(server: &Server, job: &Job) {
    server.create(job, Some(BLOCK)).await;
    server.put_block(job, &job.layout(BLOCK), 0).await;
}

fn s(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

/// `upcache get KEY -o OUT --server URL EXTRA…`
fn get_args<'a>(
    key: &'a str,
    out: &'a std::path::Path,
    url: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["get", key, "-o", s(out), "--server", url];
    args.extend_from_slice(extra);
    args
}

/// `upcache put FILE --op '{"op":"identity"}' --server URL EXTRA…`
async fn put_identity(file: &std::path::Path, url: &str, extra: &[&str]) -> Run {
    let mut args = vec!["put", s(file), "--op", IDENTITY, "--server", url];
    args.extend_from_slice(extra);
    run(&args).await
}

#[tokio::test]
async fn put_writes_the_result_and_a_second_put_is_a_hit() {
    let server = Server::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = pseudo_random((10 * BLOCK + 99) as usize, 1);
    let file = input_file(dir.path(), "input.bin", &input);
    let key = Job::identity(input.clone()).key;
    let (out, again) = (dir.path().join("out.bin"), dir.path().join("again.bin"));
    let url = proxy.base_url();

    let first = put_identity(&file, &url, &["-o", s(&out), "--block-size", "64KiB"]).await;
    first.assert_code(0);
    assert!(std::fs::read(&out).unwrap() == input);
    assert_plain(&first.stderr);
    let lines: Vec<&str> = first.stderr.lines().collect();
    assert!(lines.contains(&format!("key {key}").as_str()), "{lines:?}");
    assert!(lines.contains(&"uploading 11 of 11 blocks"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("uploaded ")),
        "{lines:?}"
    );
    let uploaded = proxy.traffic().uploads;
    assert_eq!(uploaded, input.len() as u64);

    let second = put_identity(&file, &url, &["-o", s(&again)]).await;
    second.assert_code(0);
    assert_plain(&second.stderr);
    assert!(
        second.stderr.contains("hit"),
        "a hit says so: {}",
        second.stderr
    );
    assert_eq!(
        proxy.traffic().uploads,
        uploaded,
        "the hit uploaded nothing"
    );
    assert!(std::fs::read(&again).unwrap() == input);

    // Without -o, the result's URL goes to stdout.
    let third = put_identity(&file, &url, &[]).await;
    third.assert_code(0);
    assert_eq!(third.stdout, format!("{url}/v1/ops/{key}/result\n"));
}

#[tokio::test]
async fn key_prints_the_key_the_protocol_derives() {
    let dir = tempfile::tempdir().unwrap();
    let input = png(40, 30);
    let file = input_file(dir.path(), "photo.png", &input);
    // Written in another order and spacing than the normalized form.
    let op = r#"{ "height": 64, "op": "image.thumbnail", "width": 64 }"#;
    let expected = Key::derive(
        &InputHash::of(&input),
        &Operation::parse(&serde_json::from_str(op).unwrap()).unwrap(),
    );

    let out = run(&["key", s(&file), "--op", op]).await;
    out.assert_code(0);
    assert_eq!(out.stdout, format!("{expected}\n"));
    assert_eq!(out.stderr, "");
}

#[tokio::test]
async fn status_prints_the_entry_as_json() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random((3 * BLOCK) as usize, 2));
    partial_upload(&server, &job).await;

    let out = run(&["status", &job.key.to_hex(), "--server", &server.base_url()]).await;
    out.assert_code(0);
    let status: Status = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is a status document ({e}): {}", out.stdout));
    assert_eq!(status.key, job.key);
    assert_eq!(status.state, State::Uploading);
    assert_eq!(
        (status.blocks_received, status.missing.as_str()),
        (1, "1-2")
    );
}

#[tokio::test]
async fn get_writes_a_ready_result_and_says_when_one_is_not() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let done = Job::identity(pseudo_random(200_000, 3));
    server.oneshot(&done).await;
    let out = dir.path().join("done.bin");
    let (key, url) = (done.key.to_hex(), server.base_url());
    run(&get_args(&key, &out, &url, &[])).await.assert_code(0);
    assert!(std::fs::read(&out).unwrap() == done.input);

    // An entry still uploading is not ready, and `--wait 0` does not wait.
    let pending = Job::identity(pseudo_random((3 * BLOCK) as usize, 4));
    partial_upload(&server, &pending).await;
    let key = pending.key.to_hex();
    let target = dir.path().join("pending.bin");
    let started = Instant::now();
    let refused = run(&get_args(&key, &target, &url, &["--wait", "0"])).await;
    refused.assert_code(5);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        refused.stderr.contains("not ready") && refused.stderr.contains("hint:"),
        "{}",
        refused.stderr
    );
    assert!(
        !target.exists(),
        "nothing is written for a result not ready"
    );

    // With --wait, it waits for the upload to complete and then writes the result.
    let proxy = FaultProxy::start(server.addr()).await;
    let url = proxy.base_url();
    let mut waiting = spawn(&get_args(&key, &target, &url, &["--wait", "60"]));
    // Its status request and its waiting HEAD have reached the server.
    eventually("get to wait", STEP_TIMEOUT, || async {
        (proxy.traffic().requests >= 2).then_some(())
    })
    .await;
    assert!(waiting.try_wait().unwrap().is_none(), "get --wait waits");
    let layout = pending.layout(BLOCK);
    for n in 1..layout.blocks() {
        server.put_block(&pending, &layout, n).await;
    }
    finish(waiting).await.assert_code(0);
    assert!(std::fs::read(&target).unwrap() == pending.input);
}

#[tokio::test]
async fn rm_deletes_and_status_then_says_the_key_is_unknown() {
    let server = Server::start().await;
    let job = Job::identity(pseudo_random(100_000, 5));
    server.oneshot(&job).await;
    let (key, url) = (job.key.to_hex(), server.base_url());

    let rm = run(&["rm", &key, "--server", &url]).await;
    rm.assert_code(0);
    assert!(rm.stderr.contains("deleted"), "{}", rm.stderr);

    let status = run(&["status", &key, "--server", &url]).await;
    status.assert_code(3);
    assert_eq!(status.stdout, "");
    assert!(
        status.stderr.contains("hint: no entry has this key"),
        "a refusal comes with a hint: {}",
        status.stderr
    );
}

#[tokio::test]
async fn usage_errors_exit_2_before_contacting_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = input_file(dir.path(), "input.bin", b"hello");
    // The server is unreachable: a usage error must not get as far as the network.
    let url = unreachable();
    let file = s(&file);
    let cases: [(&[&str], &str); 6] = [
        (
            &["put", file, "--op", "{not json", "--server", &url],
            "not JSON",
        ),
        (
            &[
                "put",
                file,
                "--op",
                r#"{"op":"image.nope"}"#,
                "--server",
                &url,
            ],
            "invalid --op",
        ),
        (
            &[
                "put",
                file,
                "--op",
                r#"{"op":"image.thumbnail","width":10}"#,
            ],
            "invalid --op",
        ),
        (&["key", file, "--op", "[]"], "invalid --op"),
        (&["put", "--op", IDENTITY, "--server", &url], "<FILE>"),
        (&["status", "not-a-key", "--server", &url], "not a key"),
    ];
    for (args, says) in cases {
        let out = run(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?} says {says:?}: {out:?}");
        assert_plain(&out.stderr);
    }
    let no_output = run(&["get", &"0".repeat(64), "--server", &url]).await;
    assert_eq!(no_output.code, Some(2), "get without -o: {no_output:?}");
}

#[tokio::test]
async fn a_refusal_exits_3_with_a_hint_and_uploads_nothing() {
    let server = Server::start_with(&["--max-input-size", "1MiB"]).await;
    let proxy = FaultProxy::start(server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = input_file(dir.path(), "big.bin", &pseudo_random(2 << 20, 6));

    let out = put_identity(&file, &proxy.base_url(), &[]).await;
    out.assert_code(3);
    assert_plain(&out.stderr);
    assert!(
        out.stderr.contains("the server refused") && out.stderr.contains("max_input_size"),
        "{}",
        out.stderr
    );
    assert_eq!(proxy.traffic().uploads, 0);
}

#[tokio::test]
async fn an_unreachable_server_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let file = input_file(dir.path(), "input.bin", b"hello");
    let url = unreachable();

    let started = Instant::now();
    let put = put_identity(&file, &url, &["--retry-for", "1"]).await;
    put.assert_code(4);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "--retry-for 1 gave up after {:?}",
        started.elapsed()
    );
    assert_plain(&put.stderr);
    assert!(
        put.stderr.contains("retry 1 in"),
        "the retries are reported: {}",
        put.stderr
    );
    assert!(
        put.stderr.contains("hint: is the server running"),
        "{}",
        put.stderr
    );

    let status = run(&["status", &"0".repeat(64), "--server", &url]).await;
    status.assert_code(4);
}
