//! The Rust SDK against the real server: a new run after a server crash
//! resumes, two clients of one input share one run of the operation, readers
//! are uploaded like files, results are saved atomically and downloads resume,
//! and failures come back as errors that say whether retrying can help.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use upcache_client::{Client, Error, Event, Options, ProblemType, ProgressFn, State};
use upcache_e2e::sdk::{fast_options, input_file, missing_bytes, quick_give_up, Events, BLOCK};
use upcache_e2e::*;
use upcache_protocol::{InputHash, Key, Operation};

/// 32 whole blocks and a partial one.
const SIZE: u64 = 32 * BLOCK + 4321;

fn identity() -> serde_json::Value {
    json!({"op": "identity"})
}

fn key_of(input: &[u8], op: &serde_json::Value) -> Key {
    Key::derive(&InputHash::of(input), &Operation::parse(op).unwrap())
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_after_a_server_crash_sends_only_the_missing_blocks() {
    const PAUSE_AT: u64 = 8;
    let mut server = Server::start().await;
    let proxy = FaultProxy::start(server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = pseudo_random(SIZE as usize, 40);
    let path = input_file(dir.path(), "input.bin", &input);

    // The first run pauses inside its progress callback once PAUSE_AT blocks
    // are stored, and the server is killed meanwhile.
    let (reached_tx, reached) = tokio::sync::oneshot::channel::<()>();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let pause = Mutex::new(Some((reached_tx, go_rx)));
    let progress: ProgressFn = Arc::new(move |event: &Event| {
        if let Event::Uploading { blocks_done, .. } = event {
            if *blocks_done >= PAUSE_AT {
                if let Some((reached, go)) = pause.lock().unwrap().take() {
                    let _ = reached.send(());
                    let _ = go.recv_timeout(STEP_TIMEOUT);
                }
            }
        }
    });
    let options = Options {
        retry: quick_give_up(3),
        ..fast_options()
    };
    let first = Client::with_options(&proxy.base_url(), options).unwrap();
    let first = tokio::spawn({
        let path = path.clone();
        async move {
            first
                .put_file_with(&path, &identity(), Some(progress))
                .await
        }
    });
    tokio::time::timeout(STEP_TIMEOUT, reached)
        .await
        .expect("the first run stores blocks")
        .unwrap();
    server.kill9();
    go.send(()).unwrap();
    let err = tokio::time::timeout(STEP_TIMEOUT, first)
        .await
        .expect("the first run gives up")
        .unwrap()
        .expect_err("the first run cannot finish without its server");
    assert!(
        err.is_network(),
        "a crashed server is a network error: {err}"
    );

    server.restart().await;
    proxy.set_target(server.addr());
    let key = key_of(&input, &identity());
    let before = server.status(&key).await;
    assert_eq!(before.state, State::Uploading);
    assert!(
        before.blocks_received >= PAUSE_AT,
        "the {PAUSE_AT} blocks acknowledged before the crash survive it: {before:?}"
    );
    let missing = missing_bytes(&before);
    assert!(missing > 0, "the crash landed mid-upload");

    // What a user does after a crash: run the same call again.
    let traffic = proxy.traffic();
    let again = Client::with_options(&proxy.base_url(), fast_options()).unwrap();
    let done = tokio::time::timeout(STEP_TIMEOUT, again.put_file(&path, &identity()))
        .await
        .expect("the second run hung")
        .expect("the second run completes");
    let sent = proxy.traffic().since(&traffic);
    assert!(!done.hit);
    assert_eq!(
        done.bytes_sent, missing,
        "the new run sends exactly the {missing} bytes of blocks the server misses, of {SIZE}"
    );
    assert_eq!(
        sent.uploads, missing,
        "input bytes through the proxy: {sent:?}"
    );
    assert_eq!(
        server.metric(metrics::BYTES_STORED).await as u64,
        missing,
        "the restarted server stored only the missing blocks"
    );
    assert!(done.bytes().await.unwrap() == input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_putting_the_same_image_at_once_share_one_run() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let image = noisy_png(400, 400, 1);
    assert!(image.len() as u64 > 7 * BLOCK, "an input of several blocks");
    let path = input_file(dir.path(), "photo.png", &image);
    let op = json!({"op": "image.thumbnail", "width": 300, "height": 300});
    let started = server.metric(metrics::OPERATIONS_STARTED).await;

    let a = Client::with_options(&server.base_url(), fast_options()).unwrap();
    let b = Client::with_options(&server.base_url(), fast_options()).unwrap();
    let (done_a, done_b) = tokio::time::timeout(
        STEP_TIMEOUT,
        futures_util::future::join(a.put_file(&path, &op), b.put_file(&path, &op)),
    )
    .await
    .expect("the two uploads hung");
    let (done_a, done_b) = (done_a.expect("client a"), done_b.expect("client b"));

    assert_eq!(done_a.key, key_of(&image, &op));
    assert_eq!(done_b.key, done_a.key);
    let (thumb_a, thumb_b) = (done_a.bytes().await.unwrap(), done_b.bytes().await.unwrap());
    assert!(thumb_a == thumb_b, "both clients get the same result");
    let thumb = image::load_from_memory_with_format(&thumb_a, image::ImageFormat::Png)
        .expect("a PNG thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (300, 300));
    assert_eq!(
        server.metric(metrics::OPERATIONS_STARTED).await - started,
        1.0,
        "the thumbnail was computed once"
    );
}

#[tokio::test]
async fn a_reader_is_uploaded_like_a_file_and_saved_atomically() {
    let server = Server::start().await;
    let input = pseudo_random(SIZE as usize, 50);
    let client = Client::with_options(&server.base_url(), fast_options()).unwrap();
    let done = client
        .put_reader(&input[..], &identity(), None)
        .await
        .expect("put_reader");
    assert_eq!(done.key, key_of(&input, &identity()));
    assert_eq!((done.hit, done.bytes_sent), (false, SIZE));

    // The same bytes from a file are the same entry: a hit.
    let dir = tempfile::tempdir().unwrap();
    let path = input_file(dir.path(), "input.bin", &input);
    assert!(client.put_file(&path, &identity()).await.unwrap().hit);

    // `save` replaces an existing file with the whole result, through a
    // temporary file it does not leave behind.
    let out = tempfile::tempdir().unwrap();
    let target = input_file(out.path(), "result.bin", b"old contents");
    done.save(&target).await.expect("save");
    assert!(std::fs::read(&target).unwrap() == input);
    assert_eq!(files_in(out.path()), ["result.bin"]);

    // A save cut off midway leaves the file it would replace as it was: the
    // first download request is cut after 300 kB, then the server is out of reach.
    let proxy = FaultProxy::start(server.addr()).await;
    proxy.plan([Fault::DropDownAfter(300_000)]);
    proxy.set_fault(Fault::DropAfter(0));
    let flaky = Options {
        retry: quick_give_up(2),
        ..fast_options()
    };
    let flaky = Client::with_options(&proxy.base_url(), flaky).unwrap();
    let other = input_file(out.path(), "other.bin", b"old contents");
    let err = upcache_client::put::save(&flaky, &done.status, &other)
        .await
        .expect_err("the save cannot complete");
    assert!(err.is_network(), "{err}");
    assert_eq!(proxy.struck(), 3, "a cut download and two failed retries");
    assert_eq!(std::fs::read(&other).unwrap(), b"old contents");
    assert_eq!(files_in(out.path()), ["other.bin", "result.bin"]);
}

#[tokio::test]
async fn a_download_cut_midway_resumes_where_it_stopped() {
    let server = Server::start().await;
    let input = pseudo_random(SIZE as usize, 60);
    let client = Client::with_options(&server.base_url(), fast_options()).unwrap();
    let done = client
        .put_reader(&input[..], &identity(), None)
        .await
        .unwrap();

    let proxy = FaultProxy::start(server.addr()).await;
    proxy.plan([Fault::DropDownAfter(700_000)]);
    let reader = Client::with_options(&proxy.base_url(), fast_options()).unwrap();
    let mut out = Vec::new();
    let n = reader
        .download(&done.status, &mut out)
        .await
        .expect("the download resumes");
    assert_eq!(n, SIZE);
    assert!(
        out == input,
        "the resumed download is byte-for-byte the result"
    );
    assert_eq!(proxy.struck(), 1);
    assert_eq!(
        proxy.accepted(),
        2,
        "one request cut short, one resuming it"
    );
    let down = proxy.traffic().down;
    assert!(
        (SIZE..SIZE + 4096).contains(&down),
        "{down} bytes came down for a {SIZE}-byte result: the second request fetched only the rest"
    );
}

#[tokio::test]
async fn an_invalid_image_is_refused_for_good() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = input_file(dir.path(), "not-a.png", &pseudo_random(300_000, 70));
    let op = json!({"op": "image.thumbnail", "width": 64, "height": 64});
    let client = Client::with_options(&server.base_url(), fast_options()).unwrap();

    let err = client.put_file(&path, &op).await.unwrap_err();
    assert_eq!(
        err.problem().and_then(|p| p.kind()),
        Some(ProblemType::InvalidImage),
        "{err}"
    );
    assert!(!err.is_retryable() && !err.is_network(), "{err}");

    // Asked again, the server remembers the failure: same answer, no upload.
    let proxy = FaultProxy::start(server.addr()).await;
    let again = Client::with_options(&proxy.base_url(), fast_options()).unwrap();
    let err = again.put_file(&path, &op).await.unwrap_err();
    assert_eq!(
        err.problem().and_then(|p| p.kind()),
        Some(ProblemType::InvalidImage)
    );
    assert_eq!(proxy.traffic().uploads, 0);
}

#[tokio::test]
async fn an_input_over_the_size_limit_is_refused_before_any_upload() {
    let server = Server::start_with(&["--max-input-size", "1MiB"]).await;
    let proxy = FaultProxy::start(server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = input_file(dir.path(), "big.bin", &pseudo_random(SIZE as usize, 80));
    let client = Client::with_options(&proxy.base_url(), fast_options()).unwrap();
    let events = Events::default();

    let err = client
        .put_file_with(&path, &identity(), Some(events.sink()))
        .await
        .unwrap_err();
    assert_eq!(
        err.problem().and_then(|p| p.kind()),
        Some(ProblemType::InputTooLarge),
        "{err}"
    );
    assert!(matches!(err, Error::Problem { status: 413, .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(events.retried_errors(), Vec::<String>::new());
    let traffic = proxy.traffic();
    assert_eq!(
        (traffic.requests, traffic.uploads),
        (1, 0),
        "one request, refused, and no input sent: {traffic:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_after_the_retries() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = input_file(dir.path(), "input.bin", &pseudo_random(100_000, 90));
    let options = Options {
        retry: quick_give_up(3),
        ..fast_options()
    };
    let client = Client::with_options(&format!("http://127.0.0.1:{port}"), options).unwrap();
    let events = Events::default();
    let started = Instant::now();

    let err = client
        .put_file_with(&path, &identity(), Some(events.sink()))
        .await
        .unwrap_err();
    assert!(err.is_network(), "{err}");
    assert!(!err.is_retryable(), "giving up is final: {err}");
    assert!(
        matches!(err, Error::GaveUp { attempts: 4, .. }),
        "three retries, then it gives up: {err}"
    );
    assert_eq!(events.retried_errors().len(), 3);
    assert!(started.elapsed() < Duration::from_secs(10));
}
