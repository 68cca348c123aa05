//! Operations are really bounded: an output past the pixel limit is refused
//! before any work, an operation that runs past `op_timeout` is stopped (its
//! worker and memory freed, not just its waiters answered), and a queue of
//! heavy operations neither fails nor starves a small one behind it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use upcache_e2e::*;
use upcache_protocol::{ProblemType, State};

#[tokio::test]
async fn an_enlargement_past_the_pixel_limit_is_refused_before_any_upload() {
    let server = Server::start().await;
    let job = Job::new(
        png(1, 1),
        json!({"op": "image.resize", "width": 16384, "height": 16384, "format": "png"}),
    );
    let started = Instant::now();
    let resp = server.post_create(&job.create_request(None)).await;
    let (_, problem) = assert_problem(resp, ProblemType::ImageTooLarge).await;
    assert!(
        problem
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("268435456"),
        "{problem}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing was created: the one-shot PUT is refused from its headers too.
    let resp = server.oneshot_request(&job).send().await.unwrap();
    assert_problem(resp, ProblemType::ImageTooLarge).await;
    assert_eq!(server.metric("upcache_operations_started_total").await, 0.0);
}

#[tokio::test]
async fn an_operation_over_its_memory_allowance_is_refused_without_running() {
    let server = Server::start_with_config("op_memory_limit = \"64MiB\"\n", &[]).await;
    // 2000 × 2000 decodes to 12 MB, and blurring it works on 64 MB of floats.
    let job = Job::new(
        png(2000, 2000),
        json!({"op": "image.blur", "sigma": 2.0, "format": "png"}),
    );
    let resp = server.oneshot_request(&job).send().await.unwrap();
    let (_, problem) = assert_problem(resp, ProblemType::ImageTooLarge).await;
    assert!(
        problem.detail.as_deref().unwrap_or("").contains("memory"),
        "{problem}"
    );
}

/// A small image, and operations on it that each run far past two seconds
/// (an enlargement to 49 megapixels, then a wide blur), all within limits.
fn runaway(sigma: f64) -> serde_json::Value {
    json!({"op": "image.pipeline", "format": "png", "steps": [
        {"op": "image.resize", "width": 7000, "height": 7000, "fit": "fill"},
        {"op": "image.blur", "sigma": sigma},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_operations_are_stopped_and_do_not_starve_a_small_one() {
    let server = Server::start_with_config(
        "pool_size = 1\nop_timeout = 2\nop_memory_limit = \"3GiB\"\npool_memory = \"3GiB\"\n",
        &[],
    )
    .await;
    let input = png(64, 64);
    // Store the input once; every operation after it needs no upload.
    server.oneshot(&Job::identity(input.clone())).await;

    let hostile: Vec<Job> = (0..4)
        .map(|i| Job::new(input.clone(), runaway(40.0 + f64::from(i))))
        .collect();
    for job in &hostile {
        let (code, status) = server.create(job, None).await;
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(status.state, State::Processing, "the input is stored");
    }
    let small = Job::new(
        input.clone(),
        json!({"op": "image.thumbnail", "width": 16, "height": 16, "format": "png"}),
    );
    let started = Instant::now();
    server.create(&small, None).await;

    // The small one waits its turn behind the four, each stopped at 2 s.
    let thumb = server.wait_result(&small.key).await;
    let img = image::load_from_memory(&thumb).expect("a PNG");
    assert_eq!((img.width(), img.height()), (16, 16));
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the small operation took {:?}",
        started.elapsed()
    );
    for job in &hostile {
        let resp = server
            .result_request(&job.key, Some(30))
            .send()
            .await
            .unwrap();
        assert_problem(resp, ProblemType::OperationTimeout).await;
        assert_eq!(server.status(&job.key).await.state, State::Failed);
    }
    // Stopped means stopped: no worker is left running, and the server
    // itself never held the images.
    eventually(
        "the workers to be gone",
        Duration::from_secs(10),
        || async { server.children().is_empty().then_some(()) },
    )
    .await;
    let peak_kb = server.proc_status_kb("VmHWM");
    assert!(peak_kb < 200 * 1024, "server peak RSS {peak_kb} kB");
    assert_eq!(
        server.metric("upcache_operations_completed_total").await,
        2.0,
        "the identity operation and the thumbnail"
    );
}

#[tokio::test]
async fn a_crashing_or_garbage_input_fails_only_itself() {
    let server = Server::start_with_config("pool_size = 1\n", &[]).await;
    let junk = Job::new(
        b"\x89PNG\r\n\x1a\n garbage that is no image".to_vec(),
        json!({"op": "image.thumbnail", "width": 8, "height": 8, "format": "png"}),
    );
    let resp = server.oneshot_request(&junk).send().await.unwrap();
    assert_problem(resp, ProblemType::InvalidImage).await;
    let good = Job::new(
        png(32, 32),
        json!({"op": "image.thumbnail", "width": 8, "height": 8, "format": "png"}),
    );
    let img = image::load_from_memory(&server.oneshot(&good).await).unwrap();
    assert_eq!((img.width(), img.height()), (8, 8));
}

#[tokio::test]
async fn a_worker_killed_from_outside_is_not_a_failure_and_runs_again() {
    // What the kernel's out-of-memory killer does to a worker says nothing
    // about the input: the operation is postponed, not failed.
    let server = Server::start_with_config(
        "op_timeout = 120\nop_memory_limit = \"3GiB\"\npool_memory = \"3GiB\"\n",
        &[],
    )
    .await;
    let input = png(64, 64);
    server.oneshot(&Job::identity(input.clone())).await;
    let job = Job::new(input, runaway(45.0));
    server.create(&job, None).await;
    let first = eventually("a worker to start", Duration::from_secs(20), || async {
        server.children().first().copied()
    })
    .await;
    // SAFETY: kill(2) on a process of the server's that the test found alive.
    unsafe { libc::kill(first as libc::pid_t, libc::SIGKILL) };
    let second = eventually(
        "the operation to run again",
        Duration::from_secs(20),
        || async { server.children().into_iter().find(|&p| p != first) },
    )
    .await;
    assert_ne!(second, first);
    assert_eq!(server.status(&job.key).await.state, State::Processing);
    assert_eq!(server.metric("upcache_operations_failed_total").await, 0.0);
}

#[tokio::test]
async fn operations_still_run_after_the_binary_is_replaced_on_disk() {
    // A package upgrade replaces the executable under a running server: its
    // operation workers must still start.
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("upcache");
    std::fs::copy(upcache_e2e::binary::path(), &bin).unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    std::fs::remove_file(&bin).unwrap();

    let job = Job::new(
        png(32, 32),
        json!({"op": "image.thumbnail", "width": 8, "height": 8, "format": "png"}),
    );
    let resp = reqwest::Client::new()
        .put(format!(
            "{base}{}",
            upcache_protocol::status::entry_path(&job.key)
        ))
        .header(
            upcache_protocol::headers::UPLOAD_INPUT_HASH,
            job.hash.to_hex(),
        )
        .header(upcache_protocol::headers::UPLOAD_OPERATION, job.op_header())
        .body(job.input.clone())
        .send()
        .await
        .unwrap();
    let code = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (8, 8));
}
