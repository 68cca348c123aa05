//! Finding the `upcache` binary.
//!
//! `CARGO_BIN_EXE_upcache` only exists for tests of the server's own package, so
//! the harness looks where cargo puts it: `$UPCACHE_BIN` if set (used as is),
//! else `$CARGO_TARGET_DIR` (or the workspace's `target/`) `/{debug|release}/upcache`,
//! the profile following this test binary's (`UPCACHE_PROFILE=release` forces it).
//! When the binary is missing or older than the sources it is built from, it is
//! built with `cargo build -p upcache --bin upcache` — once per test
//! process (`OnceLock`) and once across the processes cargo-nextest runs in
//! parallel (an exclusive `flock` on a file in the target directory).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The path of an up-to-date `upcache` binary.
pub fn path() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate_or_build)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn release() -> bool {
    match std::env::var("UPCACHE_PROFILE").as_deref() {
        Ok("release") => true,
        Ok("debug") => false,
        _ => !cfg!(debug_assertions),
    }
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir), // join keeps an absolute path as is
        None => workspace().join("target"),
    }
}

fn locate_or_build() -> PathBuf {
    if let Some(bin) = std::env::var_os("UPCACHE_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "UPCACHE_BIN={} is not a file", bin.display());
        return bin;
    }
    let target = target_dir();
    let bin = target
        .join(if release() { "release" } else { "debug" })
        .join("upcache");
    if is_fresh(&bin) {
        return bin;
    }
    std::fs::create_dir_all(&target).expect("create the target directory");
    let lock =
        File::create(target.join(".upcache-e2e-build.lock")).expect("create the build lock file");
    // SAFETY: flock on a file descriptor we own; the lock is released when `lock` is dropped.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock the build lock: {}",
        std::io::Error::last_os_error()
    );
    // Another test process may have built it while we waited for the lock.
    if !is_fresh(&bin) {
        build();
    }
    assert!(
        bin.is_file(),
        "cargo build succeeded but {} does not exist",
        bin.display()
    );
    bin
}

fn build() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "--quiet", "-p", "upcache", "--bin", "upcache"]);
    if release() {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building the upcache binary failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `bin` exists and is newer than every Rust source and manifest of the
/// crates it is built from — the server, the protocol, and the client SDK its
/// client subcommands use (cargo would have nothing to do).
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    let root = workspace();
    let mut newest = SystemTime::UNIX_EPOCH;
    for krate in ["server", "protocol", "client-sdk"] {
        newest_source(&root.join(krate).join("src"), &mut newest);
        newest_file(&root.join(krate).join("Cargo.toml"), &mut newest);
    }
    newest_file(&root.join("Cargo.toml"), &mut newest);
    newest_file(&root.join("Cargo.lock"), &mut newest);
    built >= newest
}

fn newest_source(dir: &Path, newest: &mut SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest_source(&path, newest);
        } else if path.extension().is_some_and(|e| e == "rs") {
            newest_file(&path, newest);
        }
    }
}

fn newest_file(path: &Path, newest: &mut SystemTime) {
    if let Ok(modified) = path.metadata().and_then(|m| m.modified()) {
        *newest = (*newest).max(modified);
    }
}
