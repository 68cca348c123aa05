//! A data directory written by release 0.1 (the first release that kept
//! input records beside the inputs) is served and resumed by this build:
//! complete results, a half-done block upload, a failed entry, a half-done
//! and a complete tus upload. The directory in `tests/fixtures/data-0.1.tar.gz`
//! was made by that release's binary with [`make_fixture`]; it is never
//! rewritten by later builds, so it keeps proving that their migration
//! reads what 0.1 wrote.
//!
//! Remake it (only with the binary of the release it is named after):
//! `UPCACHE_FIXTURE_OUT=tests/fixtures/data-0.1.tar.gz cargo nextest run -p upcache-tests --test upgrade --run-ignored only`

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{json, Value};
use upcache_e2e::*;
use upcache_protocol::{InputHash, Key, Operation, ProblemType, State};

const BS: u64 = 16 * 1024;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data-0.1.tar.gz")
}

/// The inputs and operations of the fixture, made the same way each time.
struct Plan {
    /// Complete, with a result file of its own.
    thumb: Job,
    /// Complete, served from the stored input itself.
    whole: Job,
    /// Uploading: blocks 0, 2 and 5 of 8 are in.
    half: Job,
    /// Failed: the bytes uploaded did not hash to the claimed input.
    liar: Job,
    /// A tus upload with 40,000 of its bytes in.
    tus_half: Vec<u8>,
    /// A complete tus upload, processed.
    tus_done: Vec<u8>,
}

const HALF_IN: [u64; 3] = [0, 2, 5];
const TUS_HALF_SENT: usize = 40_000;

fn plan() -> Plan {
    let png = noisy_png(300, 200, 7);
    let real = pseudo_random(5 * BS as usize, 3);
    let op = json!({"op": "identity"});
    let claimed = InputHash::of(&real);
    let parsed = Operation::parse(&op).unwrap();
    Plan {
        thumb: Job::new(
            png.clone(),
            json!({"op": "image.thumbnail", "width": 64, "height": 64, "format": "png"}),
        ),
        whole: Job::identity(pseudo_random(100_000, 1)),
        half: Job::identity(pseudo_random(7 * BS as usize + 100, 2)),
        liar: Job {
            key: Key::derive(&claimed, &parsed),
            hash: claimed,
            op_json: op,
            op: parsed,
            input: pseudo_random(5 * BS as usize, 4),
        },
        tus_half: pseudo_random(100_000, 5),
        tus_done: pseudo_random(30_000, 6),
    }
}

fn tus_metadata() -> String {
    upcache_e2e::tus::op_metadata(&json!({"op": "identity"}))
}

/// Makes the fixture with the `upcache` binary under test. Run by hand, with
/// the binary of the release the fixture is named after.
#[tokio::test]
#[ignore = "makes tests/fixtures/data-0.1.tar.gz; run only with the 0.1 binary"]
async fn make_fixture() {
    let out = PathBuf::from(std::env::var("UPCACHE_FIXTURE_OUT").expect("UPCACHE_FIXTURE_OUT"));
    let out = if out.is_absolute() {
        out
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(out)
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_on(&data, &[]).await;
    let p = plan();

    for job in [&p.thumb, &p.whole] {
        server.create(job, Some(BS)).await;
        let resp = server
            .patch_request(&job.key, 0, job.input.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        server.wait_result(&job.key).await;
    }
    let layout = p.half.layout(BS);
    server.create(&p.half, Some(BS)).await;
    for n in HALF_IN {
        server.put_block(&p.half, &layout, n).await;
    }
    server.create(&p.liar, Some(BS)).await;
    let resp = server
        .patch_request(&p.liar.key, 0, p.liar.input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let half = server
        .tus_create(p.tus_half.len() as u64, &tus_metadata())
        .await;
    server
        .tus_patched(
            server.tus_patch(&half, 0, p.tus_half[..TUS_HALF_SENT].to_vec()),
            TUS_HALF_SENT as u64,
        )
        .await;
    let (done, _) = server.tus_upload(&p.tus_done, &tus_metadata()).await;
    server.tus_result(&done).await;

    let status = server.terminate().await;
    assert!(status.success(), "the server stops cleanly: {status}");
    let manifest = json!({"tus_half": path_of(&half), "tus_done": path_of(&done)});
    std::fs::write(data.join("fixture.json"), manifest.to_string()).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.path())
        .arg("data")
        .status()
        .unwrap();
    assert!(tar.success());
}

/// The path of a tus `Location` (the fixture's server had another port).
fn path_of(location: &str) -> String {
    let rest = location.split_once("://").map_or(location, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].to_owned(),
        None => rest.to_owned(),
    }
}

/// Unpacks the fixture and starts this build's server on it.
async fn upgraded() -> (tempfile::TempDir, Server, Value) {
    let dir = tempfile::tempdir().unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixture())
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(tar.success(), "unpack {}", fixture().display());
    let data = dir.path().join("data");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data.join("fixture.json")).unwrap()).unwrap();
    let server = Server::start_on(&data, &[]).await;
    (dir, server, manifest)
}

#[tokio::test]
async fn results_written_by_0_1_are_served() {
    let (_dir, server, _) = upgraded().await;
    let p = plan();
    let status = server.status(&p.whole.key).await;
    assert_eq!(status.state, State::Complete);
    assert!(server.wait_result(&p.whole.key).await == p.whole.input);

    let status = server.status(&p.thumb.key).await;
    assert_eq!(status.state, State::Complete);
    let result = status.result.expect("a complete entry has a result");
    let bytes = server.wait_result(&p.thumb.key).await;
    assert_eq!(result.length, bytes.len() as u64);
    assert_eq!(result.blake3, InputHash::of(&bytes));
    assert!(bytes.starts_with(b"\x89PNG"), "the thumbnail is a PNG");

    // The stored inputs count: a new operation on one needs no upload.
    let other = p
        .thumb
        .with_op(json!({"op": "image.thumbnail", "width": 32, "height": 32, "format": "png"}));
    let (code, status) = server.create(&other, None).await;
    assert_ne!(status.state, State::Uploading, "{code}: {status:?}");
    server.wait_result(&other.key).await;
}

#[tokio::test]
async fn a_block_upload_begun_under_0_1_resumes() {
    let (_dir, server, _) = upgraded().await;
    let p = plan();
    let layout = p.half.layout(BS);
    let head = server.head_info(&p.half.key).await;
    assert_eq!(head.missing, p.half.missing_after(&layout, &HALF_IN));
    assert_eq!(head.digest, p.half.digest_of(&layout, HALF_IN));
    for n in (0..layout.blocks()).filter(|n| !HALF_IN.contains(n)) {
        server.put_block(&p.half, &layout, n).await;
    }
    assert!(server.wait_result(&p.half.key).await == p.half.input);
}

#[tokio::test]
async fn a_failure_recorded_by_0_1_keeps_its_problem() {
    let (_dir, server, _) = upgraded().await;
    let p = plan();
    let status = server.status(&p.liar.key).await;
    assert_eq!(status.state, State::Failed);
    let error = status.error.expect("a failed entry carries its problem");
    assert_eq!(error.type_uri, ProblemType::InputHashMismatch.uri());
    let resp = server
        .result_request(&p.liar.key, Some(0))
        .send()
        .await
        .unwrap();
    assert_problem(resp, ProblemType::InputHashMismatch).await;
}

#[tokio::test]
async fn tus_uploads_of_0_1_resume_and_keep_their_results() {
    let (_dir, server, manifest) = upgraded().await;
    let p = plan();
    let half = manifest["tus_half"].as_str().unwrap().to_owned();
    let head = server.tus_head(&half).await;
    assert_eq!(head.offset, TUS_HALF_SENT as u64);
    server
        .tus_patched(
            server.tus_patch(
                &half,
                TUS_HALF_SENT as u64,
                p.tus_half[TUS_HALF_SENT..].to_vec(),
            ),
            p.tus_half.len() as u64,
        )
        .await;
    let (_, body) = server.tus_result(&half).await;
    assert!(body == p.tus_half);

    let done = manifest["tus_done"].as_str().unwrap().to_owned();
    let (_, body) = server.tus_result(&done).await;
    assert!(body == p.tus_done);
}
