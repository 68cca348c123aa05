//! A full disk is a clear answer, not corruption: on a small filesystem the
//! test mounts and fills up (a tmpfs; for the main scenario also an ext4
//! image on a loop device, where staging writes use `O_DIRECT`), every kind
//! of upload answers `507 insufficient-storage`, what was acknowledged
//! before stays (and is served), and once the filler is deleted the same
//! uploads complete — no restart in between.
//!
//! Mounting needs root (CI runs as root; the ext4 test also `mkfs.ext4` and
//! loop devices); elsewhere each test prints `skipped: …` and passes.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use upcache_e2e::tus::{op_metadata, th, FILES};
use upcache_e2e::*;
use upcache_protocol::{ProblemType, State};

/// Room for sled to start (it writes a snapshot and its reserve) and for
/// the inputs uploaded before the disk is filled.
const TMPFS: &str = "size=24m";
/// The ext4 image: its journal takes a few MiB of it.
const EXT4_IMAGE: u64 = 40 << 20;
const BS: u64 = 64 * 1024;

/// A small filesystem mounted on a fresh directory, unmounted when dropped
/// (also when the test fails).
struct Disk {
    dir: tempfile::TempDir,
    /// Holds the image of a loop-mounted filesystem.
    _image: Option<tempfile::NamedTempFile>,
}

impl Disk {
    /// A tmpfs: no `O_DIRECT`, and `fdatasync` costs nothing.
    fn tmpfs() -> Result<Self, String> {
        let dir = mount_point()?;
        let c = |s: &[u8]| CString::new(s).expect("no NUL");
        let (source, target, fstype, data) = (
            c(b"tmpfs"),
            c(dir.path().as_os_str().as_bytes()),
            c(b"tmpfs"),
            c(TMPFS.as_bytes()),
        );
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mount -t tmpfs -o {TMPFS} failed: {} (mounting needs root)",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self { dir, _image: None })
    }

    /// An ext4 image on a loop device: the filesystem the server runs on in
    /// production, with `O_DIRECT` staging writes and real syncs.
    fn ext4() -> Result<Self, String> {
        let image = tempfile::NamedTempFile::new().map_err(|e| format!("an image file: {e}"))?;
        image
            .as_file()
            .set_len(EXT4_IMAGE)
            .map_err(|e| format!("sizing the image: {e}"))?;
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.path().as_os_str()],
        )?;
        let dir = mount_point()?;
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.path().as_os_str(),
                dir.path().as_os_str(),
            ],
        )?;
        Ok(Self {
            dir,
            _image: Some(image),
        })
    }

    /// Mounts one with `mount`, or prints why the test is skipped.
    fn or_skip(test: &str, mount: fn() -> Result<Self, String>) -> Option<Self> {
        match mount() {
            Ok(disk) => Some(disk),
            Err(why) => {
                eprintln!("skipped: {test}: cannot mount a small filesystem: {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: a valid path. Detached lazily, so a busy mount cannot stay;
        // a loop device mounted by `mount -o loop` is freed with it.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_point() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("upcache-disk-full-")
        .tempdir()
        .map_err(|e| format!("creating a mount point: {e}"))
}

/// Runs a command; its failure (or absence) as a reason to skip.
fn run(program: &str, args: &[&OsStr]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Fills the filesystem of `path` with the file `path` until a write finds
/// no room; deleting the file frees the room again.
fn fill(path: &Path) -> PathBuf {
    let mut f = File::create(path).expect("create the filler");
    for chunk in [1 << 20, 4096] {
        let bytes = vec![0xa5u8; chunk];
        loop {
            match f.write(&bytes) {
                Ok(n) if n == chunk => continue,
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    path.to_path_buf()
}

/// Bytes free on the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a valid path and a zeroed struct for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0, "statvfs");
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A starved body: nothing of it is written, the problem says why.
async fn assert_full(resp: reqwest::Response, what: &str) {
    let (_, problem) = assert_problem(resp, ProblemType::InsufficientStorage).await;
    assert!(problem.detail.is_some(), "{what}: {problem:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_507_on_a_full_tmpfs_and_go_on_once_there_is_room() {
    let test = "uploads_answer_507_on_a_full_tmpfs_and_go_on_once_there_is_room";
    if let Some(disk) = Disk::or_skip(test, Disk::tmpfs) {
        uploads_on_a_full_disk(&disk).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_507_on_a_full_ext4_and_go_on_once_there_is_room() {
    let test = "uploads_answer_507_on_a_full_ext4_and_go_on_once_there_is_room";
    if let Some(disk) = Disk::or_skip(test, Disk::ext4) {
        uploads_on_a_full_disk(&disk).await;
    }
}

/// Every way of sending bytes, before, while and after `disk` is full.
async fn uploads_on_a_full_disk(disk: &Disk) {
    let server = Server::start_on(&disk.path().join("data"), &[]).await;

    // Before the disk is full: a finished upload, and three halfway done.
    let done = Job::identity(pseudo_random(300_000, 1));
    assert_eq!(server.oneshot(&done).await, done.input);
    let blocks = Job::identity(pseudo_random(8 * BS as usize, 2));
    let layout = blocks.layout(BS);
    server.create(&blocks, Some(BS)).await;
    for n in 0..5 {
        server.put_block(&blocks, &layout, n).await;
    }
    let patched = Job::identity(pseudo_random(300_000, 3));
    server.create(&patched, Some(BS)).await;
    let half = 100 * 1024;
    let resp = server
        .patch_request(&patched.key, 0, patched.input[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let tus_input = pseudo_random(300_000, 4);
    let location = server
        .tus_create(
            tus_input.len() as u64,
            &op_metadata(&json!({"op": "identity"})),
        )
        .await;
    server
        .tus_patched(
            server.tus_patch(&location, 0, tus_input[..half].to_vec()),
            half as u64,
        )
        .await;
    let oneshot = Job::identity(pseudo_random(200_000, 5));

    let filler = fill(&disk.path().join("filler"));

    // Every way of sending bytes is refused with the problem type…
    let resp = server
        .block_request(&blocks, &layout, 5)
        .send()
        .await
        .unwrap();
    assert_full(resp, "block PUT").await;
    let resp = server
        .patch_request(&patched.key, half as u64, patched.input[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_full(resp, "PATCH").await;
    let resp = server.oneshot_request(&oneshot).send().await.unwrap();
    assert_full(resp, "one-shot PUT").await;
    let resp = server
        .tus_patch(&location, half as u64, tus_input[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_full(resp, "tus PATCH").await;

    // Metadata keeps room of its own (sled would stop taking writes for
    // good after its own ENOSPC): creates are answered, and so is a DELETE,
    // which flushes them.
    for seed in 0..40 {
        server
            .create(&Job::identity(pseudo_random(1000, 100 + seed)), None)
            .await;
    }
    let created = Job::identity(pseudo_random(1000, 100));
    assert_eq!(
        server.delete(&created.key).await.status(),
        StatusCode::NO_CONTENT
    );

    // …what was acknowledged stays, and is served, while the disk is full.
    let head = server.head_info(&blocks.key).await;
    assert_eq!(
        (head.state, head.missing.as_str()),
        (State::Uploading, "5-7"),
        "the refused block stays missing, the acknowledged ones stay"
    );
    assert_eq!(head.digest, blocks.digest_of(&layout, 0..5));
    assert_eq!(server.head_info(&patched.key).await.offset, half as u64);
    assert_eq!(server.tus_head(&location).await.offset, half as u64);
    assert_eq!(server.status(&done.key).await.state, State::Complete);
    assert_eq!(server.wait_result(&done.key).await, done.input);

    // Room again: the same uploads go on, no restart, byte-exact results.
    std::fs::remove_file(filler).expect("delete the filler");
    for n in 5..8 {
        server.put_block(&blocks, &layout, n).await;
    }
    assert_eq!(server.wait_result(&blocks.key).await, blocks.input);
    let resp = server
        .patch_request(&patched.key, half as u64, patched.input[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.wait_result(&patched.key).await, patched.input);
    assert_eq!(server.oneshot(&oneshot).await, oneshot.input);
    server
        .tus_patched(
            server.tus_patch(&location, half as u64, tus_input[half..].to_vec()),
            tus_input.len() as u64,
        )
        .await;
    assert_eq!(server.tus_result(&location).await.1, tus_input);
    assert_eq!(server.wait_result(&done.key).await, done.input);
}

/// A block cut off by the full disk part-way is not half-recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_the_disk_fills_up_under_stays_missing() {
    let Some(disk) = Disk::or_skip("a_block_the_disk_fills_up_under_stays_missing", Disk::tmpfs)
    else {
        return;
    };
    let server = Server::start_on(&disk.path().join("data"), &[]).await;
    let job = Job::identity(pseudo_random(4 * BS as usize, 6));
    let layout = job.layout(BS);
    server.create(&job, Some(BS)).await;
    server.put_block(&job, &layout, 0).await;

    // Room for a quarter of a block: the write starts, then finds none.
    let spacer = disk.path().join("spacer");
    std::fs::write(&spacer, vec![1u8; BS as usize / 4]).unwrap();
    let filler = fill(&disk.path().join("filler"));
    std::fs::remove_file(&spacer).unwrap();
    let resp = server.block_request(&job, &layout, 1).send().await.unwrap();
    assert_full(resp, "block PUT").await;
    assert_eq!(server.head_info(&job.key).await.missing, "1-3");

    std::fs::remove_file(filler).unwrap();
    for n in 1..4 {
        server.put_block(&job, &layout, n).await;
    }
    assert_eq!(server.wait_result(&job.key).await, job.input);
}

/// An operation whose result finds no room is not a cached failure: the
/// entry stays `processing` and its result comes once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_without_room_for_its_result_runs_again_later() {
    let Some(disk) = Disk::or_skip(
        "an_operation_without_room_for_its_result_runs_again_later",
        Disk::tmpfs,
    ) else {
        return;
    };
    let server = Server::start_on(&disk.path().join("data"), &[]).await;
    let input = Job::identity(png(64, 48));
    assert_eq!(server.oneshot(&input).await, input.input);
    let gray = input.with_op(json!({"op": "image.grayscale", "format": "png"}));

    let filler = fill(&disk.path().join("filler"));
    let (_, status) = server.create(&gray, None).await;
    assert_eq!(status.state, State::Processing, "the input is stored");
    let resp = server
        .result_request(&gray.key, Some(3))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "no result yet, and no failure either: {}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(server.status(&gray.key).await.state, State::Processing);
    assert_eq!(server.metric(metrics::OPERATIONS_FAILED).await, 0.0);

    std::fs::remove_file(filler).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(90), server.wait_result(&gray.key))
        .await
        .expect("the operation ran again once there was room");
    let img = image::load_from_memory(&out).expect("the result is an image");
    assert_eq!((img.width(), img.height()), (64, 48));
    assert_eq!(server.metric(metrics::OPERATIONS_FAILED).await, 0.0);
}

/// tus concatenation on a full disk: the final upload is refused, the room
/// its assembly took is given back, and a retry once there is room works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_upload_without_room_is_refused_and_leaves_nothing_behind() {
    let Some(disk) = Disk::or_skip(
        "a_final_upload_without_room_is_refused_and_leaves_nothing_behind",
        Disk::tmpfs,
    ) else {
        return;
    };
    let server = Server::start_on(&disk.path().join("data"), &[]).await;
    let (a, b) = (pseudo_random(300_000, 7), pseudo_random(300_001, 8));
    let mut parts = Vec::new();
    for bytes in [&a, &b] {
        let (location, _) = server
            .tus_created(
                server
                    .tus_create_request(bytes.len() as u64, "")
                    .header(th::UPLOAD_CONCAT, "partial"),
            )
            .await;
        server
            .tus_patched(
                server.tus_patch(&location, 0, bytes.to_vec()),
                bytes.len() as u64,
            )
            .await;
        parts.push(location);
    }
    let final_request = || {
        server
            .tus(Method::POST, FILES)
            .header(th::UPLOAD_CONCAT, format!("final;{}", parts.join(" ")))
    };

    // Room for a part of the assembly only.
    let spacer = disk.path().join("spacer");
    std::fs::write(&spacer, vec![1u8; 128 * 1024]).unwrap();
    let filler = fill(&disk.path().join("filler"));
    std::fs::remove_file(&spacer).unwrap();
    let free = free_bytes(disk.path());
    assert_full(final_request().send().await.unwrap(), "final upload").await;
    assert!(
        free_bytes(disk.path()) + 16 * 1024 >= free,
        "the refused assembly gave its room back ({free} bytes free before, {} after)",
        free_bytes(disk.path())
    );

    std::fs::remove_file(filler).unwrap();
    let (location, _) = server.tus_created(final_request()).await;
    let ab = [a.as_slice(), b.as_slice()].concat();
    assert!(
        server.tus_result(&location).await.1 == ab,
        "the result is a‖b"
    );
}
