//! Pins by key, through the service's own API (`Core::pin`/`Core::unpin`,
//! what the admin endpoint calls): a pinned result stays in memory through
//! a stream of others larger than `memory_cap`, and the pin is durable.
//!
//! The service runs in-process (its operations still run in the `upcache`
//! binary's `op-worker`); no HTTP is involved.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use upcache_e2e::*;
use upcache_protocol::{CreateRequest, Key, State};
use upcache_server::cache::{Outcome, ResultBody};
use upcache_server::upload::Start;
use upcache_server::{Config, Core};

async fn open(data: &std::path::Path) -> Arc<Core> {
    let config = Config {
        data: data.to_owned(),
        memory_cap: "128KiB".parse().unwrap(),
        memory_max_item: "16KiB".parse().unwrap(),
        worker: Some(upcache_e2e::binary::path().to_owned()),
        ..Config::default()
    };
    // sled lets go of its lock a moment after a database is dropped.
    for _ in 0..200 {
        let c = config.clone();
        match tokio::task::spawn_blocking(move || Core::open(c))
            .await
            .unwrap()
        {
            Ok(core) => return core,
            Err(e) if e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("open the service: {e}"),
        }
    }
    panic!("the data directory stayed locked");
}

async fn produce(core: &Arc<Core>, job: &Job) {
    let req: CreateRequest = serde_json::from_value(job.create_request(None)).unwrap();
    let (key, status, _) = core.create(&req, &job.op).await.unwrap();
    if status.state == State::Uploading {
        let bytes = Bytes::from(job.input.clone());
        let body = Box::pin(futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(bytes)
        }));
        core.append(key, Start::Whole, None, body).await.unwrap();
    }
    let outcome = core.outcome(&key, Duration::from_secs(60)).await.unwrap();
    assert!(matches!(outcome, Outcome::Ready(_)), "{outcome:?}");
}

/// The whole result of `key`, wherever it is read from.
async fn read(core: &Arc<Core>, key: &Key) -> std::io::Result<Vec<u8>> {
    let Outcome::Ready(view) = core.outcome(key, Duration::ZERO).await.unwrap() else {
        panic!("{key} is not complete");
    };
    match core.read_result(&view, None).await {
        Ok(ResultBody::Bytes(b)) => Ok(b.to_vec()),
        Ok(ResultBody::Stream(s)) => {
            use futures_util::TryStreamExt;
            let chunks: Vec<Bytes> = s.try_collect().await?;
            Ok(chunks.concat())
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_stays_in_memory_and_its_pin_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let core = open(&data).await;
    let pinned = Job::identity(pseudo_random(10_000, 1));
    let unpinned = Job::identity(pseudo_random(10_000, 2));
    produce(&core, &pinned).await;
    produce(&core, &unpinned).await;
    assert!(core.pin(pinned.key).await.unwrap(), "a new pin");
    assert!(!core.pin(pinned.key).await.unwrap(), "pinned already");

    // 400 KB of other results through a 128 KiB tier.
    for seed in 10..50 {
        produce(&core, &Job::identity(pseudo_random(10_000, seed))).await;
    }
    for job in [&pinned, &unpinned] {
        std::fs::remove_file(data.join("inputs").join(job.hash.to_hex())).unwrap();
    }
    // The disk store keeps files open and checks a kept one is still linked
    // once a second: past that, a read finds the file gone (and cannot
    // serve the old bytes from the open file, and fill memory with them).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(read(&core, &pinned.key).await.unwrap(), pinned.input);
    assert!(
        read(&core, &unpinned.key).await.is_err(),
        "the unpinned result was evicted: only its (removed) file was left"
    );

    // The pin outlives the process; unpinning says it was there.
    let file = data.join("inputs").join(pinned.hash.to_hex());
    std::fs::write(file, &pinned.input).unwrap();
    drop(core);
    let core = open(&data).await;
    assert!(
        !core.pin(pinned.key).await.unwrap(),
        "still pinned after a restart"
    );
    assert!(core.unpin(pinned.key).await.unwrap());
    assert!(!core.unpin(pinned.key).await.unwrap());
    let missing = Key([7; 32]);
    assert!(core.pin(missing).await.is_err(), "no entry, no pin");
}
