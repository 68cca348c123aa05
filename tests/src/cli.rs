//! Running the `upcache` client subcommands (`put`, `key`, `status`, `get`,
//! `rm`) the way a user or a script does, with stdout and stderr captured —
//! so neither is a terminal.
//!
//! The child's environment is the test's, minus `UPCACHE_*` (only the flags
//! a test passes count) and `CLICOLOR_FORCE`, with `TERM=xterm-256color`: a
//! colour terminal type, so that plain output on a pipe is the program's
//! choice, not the environment's.

use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::STEP_TIMEOUT;

/// What a finished command left.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both streams if it differs.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// `upcache ARGS`, not yet started.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::binary::path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("UPCACHE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm-256color")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `upcache ARGS` in the background.
pub fn spawn(args: &[&str]) -> Child {
    command(args).spawn().expect("spawn upcache")
}

/// Waits for a child started with [`spawn`] (panics after [`STEP_TIMEOUT`]).
pub async fn finish(child: Child) -> Run {
    let out = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .expect("upcache did not exit in time")
        .expect("wait for upcache");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `upcache ARGS` to the end.
pub async fn run(args: &[&str]) -> Run {
    // Finding the binary may mean building it: not on the async runtime.
    tokio::task::spawn_blocking(crate::binary::path)
        .await
        .expect("locate upcache");
    finish(spawn(args)).await
}
