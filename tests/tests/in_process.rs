//! The service run in-process through `upcache_server::run(config, listener,
//! shutdown)`, on a clock the test moves by hand: idle uploads expire,
//! failures are retried and shortages are tried again exactly when the
//! clock says so — no test waits for the time itself to pass.
//!
//! Operations still run in the `upcache` binary's `op-worker` (named with
//! `Config::worker`), as they do in production.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use upcache_e2e::*;
use upcache_protocol::headers as h;
use upcache_protocol::status::{block_path, entry_path, OPS_PATH};
use upcache_protocol::{State, Status};
use upcache_server::clock::{ManualClock, SharedClock};
use upcache_server::metrics;
use upcache_server::Config;

/// The counters are the process's: one service at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct InProcess {
    base: String,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    data: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), upcache_server::RunError>>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = Config {
            listen: listener.local_addr().unwrap(),
            data: dir.path().join("data"),
            clock: SharedClock(clock.clone()),
            worker: Some(upcache_e2e::binary::path().to_owned()),
            ..Config::default()
        };
        tweak(&mut config);
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data = config.data.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(upcache_server::run(config, listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let up = InProcess {
            base,
            clock,
            client,
            data,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        until("the service answers", || async {
            up.client
                .get(up.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        up
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create(&self, job: &Job, block_size: Option<u64>) -> Status {
        let resp = self
            .client
            .post(self.url(OPS_PATH))
            .header(CONTENT_TYPE, h::JSON)
            .body(job.create_request(block_size).to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "create: {}", resp.status());
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
    }

    async fn status(&self, job: &Job) -> reqwest::Response {
        self.client
            .get(self.url(&entry_path(&job.key)))
            .send()
            .await
            .unwrap()
    }

    async fn state(&self, job: &Job) -> State {
        let s: Status =
            serde_json::from_slice(&self.status(job).await.bytes().await.unwrap()).unwrap();
        s.state
    }

    async fn patch(&self, job: &Job) {
        let resp = self
            .client
            .patch(self.url(&entry_path(&job.key)))
            .header(h::UPLOAD_OFFSET, 0)
            .header(CONTENT_TYPE, h::OFFSET_OCTET_STREAM)
            .body(job.input.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    /// Stops the service the way `run`'s caller does, and waits for it.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let ran = self.task.take().unwrap().await.unwrap();
        assert!(ran.is_ok(), "the service stopped cleanly: {ran:?}");
    }
}

/// Waits (in real time, at most 20 s) until `check` holds: for work the
/// service does in the background once the clock has moved.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "waited for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lets the service run whatever the clock made due, then says whether
/// `check` still holds: for what must not happen yet.
async fn still<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::sleep(Duration::from_millis(300)).await;
    check().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_uploads_expire_when_the_clock_says_so() {
    let _serial = SERIAL.lock().await;
    let up = InProcess::start(|c| c.upload_ttl = 3600).await;
    let job = Job::identity(pseudo_random(5000, 1));
    let layout = job.layout(1024);
    up.create(&job, Some(1024)).await;
    let resp = up
        .client
        .put(up.url(&block_path(&job.key, 0)))
        .header(h::UPLOAD_BLOCK_HASH, job.block_hash(&layout, 0))
        .body(job.block(&layout, 0).to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let staged = up.data.join("staging").join(job.key.to_hex());
    assert!(staged.exists());
    let tus = up
        .client
        .post(up.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 100)
        .header(
            "upload-metadata",
            tus::op_metadata(&json!({"op": "identity"})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status(), StatusCode::CREATED);
    let file = tus.headers()["location"].to_str().unwrap().to_owned();
    let file = file
        .rsplit_once("/files/")
        .map_or(file.clone(), |(_, id)| format!("/files/{id}"));

    // Sweeps run every 600 s of the clock (the upload TTL, capped); the
    // first ones find nothing due.
    let (sweeps, expired) = (metrics::SWEEPS.get(), metrics::UPLOADS_EXPIRED.get());
    until("the sweeper sleeps", || async { up.clock.sleeping() == 1 }).await;
    up.clock.advance(Duration::from_secs(3000));
    until("a sweep", || async { metrics::SWEEPS.get() > sweeps }).await;
    until("the sweeper sleeps again", || async {
        up.clock.sleeping() == 1
    })
    .await;
    assert_eq!(metrics::UPLOADS_EXPIRED.get(), expired);
    assert_eq!(
        up.state(&job).await,
        State::Uploading,
        "not due after 3000 s"
    );

    up.clock.advance(Duration::from_secs(700));
    until("both uploads expired", || async {
        metrics::UPLOADS_EXPIRED.get() == expired + 2
    })
    .await;
    assert_eq!(up.status(&job).await.status(), StatusCode::NOT_FOUND);
    assert!(!staged.exists(), "the staged bytes are gone");
    let head = up
        .client
        .head(up.url(&file))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::GONE,
        "an expired tus upload is gone"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_retried_once_failure_ttl_has_passed() {
    let _serial = SERIAL.lock().await;
    let up = InProcess::start(|c| c.failure_ttl = 600).await;
    // Not an image: refused when its header is read.
    let job = Job::new(
        pseudo_random(2000, 2),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    up.create(&job, None).await;
    up.patch(&job).await;
    until("the operation failed", || async {
        up.state(&job).await == State::Failed
    })
    .await;

    let started = metrics::OPERATIONS_STARTED.get();
    up.clock.advance(Duration::from_secs(599));
    let again = up.create(&job, None).await;
    assert_eq!(again.state, State::Failed, "remembered for 600 s");
    assert!(still(|| async { metrics::OPERATIONS_STARTED.get() == started }).await);

    up.clock.advance(Duration::from_secs(1));
    up.create(&job, None).await;
    until("the retry ran", || async {
        metrics::OPERATIONS_STARTED.get() == started + 1
    })
    .await;
    until("it failed again", || async {
        up.state(&job).await == State::Failed
    })
    .await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortage_is_tried_again_after_growing_pauses() {
    let _serial = SERIAL.lock().await;
    // No worker process can be started: a shortage, not the input's fault.
    let up = InProcess::start(|c| c.worker = Some("/nonexistent/upcache".into())).await;
    let job = Job::new(
        png(40, 30),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let started = metrics::OPERATIONS_STARTED.get();
    up.create(&job, None).await;
    up.patch(&job).await;
    let attempts = || async move { metrics::OPERATIONS_STARTED.get() - started };
    // The expiry sweeper sleeps all along; a second sleeper is the pause
    // before the next attempt.
    let pausing = || async { up.clock.sleeping() == 2 };
    until("the first attempt", || async { attempts().await == 1 }).await;
    until("a pause after it", pausing).await;
    assert!(still(|| async { attempts().await == 1 }).await);

    // Pauses of 1 s, 2 s, 4 s… on the service's clock.
    up.clock.advance(Duration::from_secs(1));
    until("the second attempt", || async { attempts().await == 2 }).await;
    until("a pause after it", pausing).await;
    up.clock.advance(Duration::from_secs(1));
    assert!(
        still(|| async { attempts().await == 2 }).await,
        "the pause doubled"
    );
    up.clock.advance(Duration::from_secs(1));
    until("the third attempt", || async { attempts().await == 3 }).await;
    assert_eq!(
        up.state(&job).await,
        State::Processing,
        "a shortage is not recorded as a failure"
    );
    up.stop().await;
}

/// Sends the clock one sweep interval ahead and waits for that sweep.
async fn next_sweep(up: &InProcess, every: u64) {
    until("the sweeper sleeps", || async { up.clock.sleeping() == 1 }).await;
    let sweeps = metrics::SWEEPS.get();
    up.clock.advance(Duration::from_secs(every));
    until("a sweep", || async { metrics::SWEEPS.get() > sweeps }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ttl_class_expires_at_its_deadline_and_not_before() {
    let _serial = SERIAL.lock().await;
    // Sweeps every 300 s (the shortest TTL); each deadline falls on one.
    let up = InProcess::start(|c| {
        c.failure_ttl = 300;
        c.result_ttl = 600;
        c.upload_ttl = 900;
        c.input_ttl = 1200;
    })
    .await;
    let failing = Job::new(
        pseudo_random(2000, 3),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let thumb = Job::new(
        png(40, 30),
        json!({"op": "image.thumbnail", "width": 10, "height": 10}),
    );
    let idle = Job::identity(pseudo_random(3000, 4));
    for job in [&failing, &thumb] {
        up.create(job, None).await;
        up.patch(job).await;
    }
    up.create(&idle, None).await;
    until("the operations settled", || async {
        up.state(&failing).await == State::Failed && up.state(&thumb).await == State::Complete
    })
    .await;
    let input = |job: &Job| up.data.join("inputs").join(job.hash.to_hex());
    assert!(input(&thumb).exists() && input(&failing).exists());

    next_sweep(&up, 300).await; // 300 s
    assert!(
        up.status(&failing).await.status() == StatusCode::NOT_FOUND,
        "failure_ttl: forgotten at 300 s"
    );
    assert_eq!(
        up.state(&thumb).await,
        State::Complete,
        "result_ttl is 600 s"
    );

    next_sweep(&up, 300).await; // 600 s
    assert!(
        up.status(&thumb).await.status() == StatusCode::NOT_FOUND,
        "result_ttl: gone at 600 s"
    );
    assert_eq!(
        up.state(&idle).await,
        State::Uploading,
        "upload_ttl is 900 s"
    );

    next_sweep(&up, 300).await; // 900 s
    assert!(
        up.status(&idle).await.status() == StatusCode::NOT_FOUND,
        "upload_ttl: gone at 900 s"
    );
    assert!(
        input(&thumb).exists(),
        "input_ttl is 1200 s from the last use"
    );

    next_sweep(&up, 300).await; // 1200 s
    assert!(
        !input(&thumb).exists() && !input(&failing).exists(),
        "input_ttl: gone at 1200 s"
    );
    // An expired input is asked for again.
    assert_eq!(up.create(&thumb, None).await.state, State::Uploading);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_reads_only_what_is_due() {
    let _serial = SERIAL.lock().await;
    let up = InProcess::start(|c| c.upload_ttl = 600).await;
    let jobs = |from: u64, n: u64| {
        (from..from + n)
            .map(|i| Job::identity(pseudo_random(100, 1000 + i)))
            .collect::<Vec<_>>()
    };
    // 300 uploads due at 600 s — more than one tick's batch — and 50 due
    // only at 900 s.
    let due = jobs(0, 300);
    for j in &due {
        up.create(j, None).await;
    }
    until("the sweeper sleeps", || async { up.clock.sleeping() == 1 }).await;
    up.clock.advance(Duration::from_secs(300));
    let later = jobs(300, 50);
    for j in &later {
        up.create(j, None).await;
    }
    let (items, expired) = (metrics::SWEEP_ITEMS.get(), metrics::UPLOADS_EXPIRED.get());
    until("the sweeper sleeps", || async { up.clock.sleeping() == 1 }).await;
    up.clock.advance(Duration::from_secs(300));
    until("the due uploads expired", || async {
        metrics::UPLOADS_EXPIRED.get() == expired + 300
    })
    .await;
    assert!(
        still(|| async { metrics::SWEEP_ITEMS.get() == items + 300 }).await,
        "each due deadline read once, none of the others"
    );
    for j in &later {
        assert_eq!(up.state(j).await, State::Uploading);
    }
    up.stop().await;
}
