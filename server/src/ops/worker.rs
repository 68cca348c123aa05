//! Image operations run in a child process, so that a timed-out or runaway
//! operation is stopped, not just abandoned.
//!
//! A thread cannot be stopped from outside, and the image library's steps
//! (decode, resample, blur, encode) have no cancellation points: an
//! operation that overruns `op_timeout` on a thread keeps its worker and its
//! memory until it finishes on its own. So each image operation runs in a
//! child — this same executable, started as `upcache op-worker` — which the
//! server kills (SIGKILL) when the time is up; its memory is returned to the
//! system at once, whatever the decoder was doing. The child also runs
//! under an address-space limit (`RLIMIT_AS`) of the operation's memory
//! allowance, so an allocation the estimate did not foresee fails inside the
//! child instead of growing the server, and it dies with the server
//! (`PR_SET_PDEATHSIG`). Starting a process costs about a millisecond,
//! small next to decoding an image. Identity operations need no child.
//!
//! The child reads one [`Job`] as JSON on stdin, writes the result bytes to
//! the job's output path (fsynced), and prints one [`Reply`] as JSON on stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upcache_protocol::operation::Kind;
use upcache_protocol::{InputHash, Operation, Problem, ProblemType};

use super::Limits;

/// The subcommand that runs one operation.
pub const SUBCOMMAND: &str = "op-worker";

/// One operation for a child to run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// The operation, canonical JSON.
    pub operation: String,
    pub input: PathBuf,
    pub output: PathBuf,
    pub max_pixels: u64,
    pub max_image_input: u64,
}

/// A result the child wrote, described from the bytes it had in hand (the
/// server does not read the file again to learn this).
#[derive(Debug, Serialize, Deserialize)]
pub struct Written {
    pub content_type: String,
    pub length: u64,
    pub blake3: InputHash,
}

/// What the child says.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The result is at the job's output path.
    Done(Written),
    /// The operation refused the input.
    Failed(Problem),
}

/// How a child ended.
#[derive(Debug)]
pub enum Outcome {
    Done(Written),
    /// The operation refused the input, or crashed on it.
    Failed(Problem),
    /// It ran past its time and was killed.
    TimedOut,
    /// Something else killed it (the kernel's out-of-memory killer, an
    /// operator): the machine, not the input, is the likely cause.
    Killed,
}

/// The server could not start a child (out of processes, memory, files):
/// the operation did not run, and may run later.
#[derive(Debug, thiserror::Error)]
#[error("could not start an operation worker: {0}")]
pub struct Unavailable(#[from] pub std::io::Error);

/// Runs `job` in a child of `exe`, killing it after `timeout`, with an
/// address space of at most `memory` bytes.
pub async fn run(
    exe: &Path,
    job: &Job,
    timeout: Duration,
    memory: u64,
) -> Result<Outcome, Unavailable> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C meant for the server (which stops
        // it gracefully) must not crash the operation as if it had failed.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setrlimit, prctl), touching no memory of the parent's.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let request = serde_json::to_vec(job).expect("jobs serialize");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let talk = async {
        stdin.write_all(&request).await?;
        drop(stdin);
        let mut reply = Vec::new();
        stdout.read_to_end(&mut reply).await?;
        let status = child.wait().await?;
        std::io::Result::Ok((reply, status))
    };
    let (reply, status) = match tokio::time::timeout(timeout, talk).await {
        Err(_) => {
            let _ = child.kill().await;
            return Ok(Outcome::TimedOut);
        }
        Ok(Err(e)) => {
            let _ = child.kill().await;
            return Err(Unavailable(e));
        }
        Ok(Ok(ended)) => ended,
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(match serde_json::from_slice::<Reply>(&reply) {
        Ok(Reply::Done(written)) if status.success() => Outcome::Done(written),
        Ok(Reply::Failed(problem)) => Outcome::Failed(problem),
        _ if status.signal() == Some(libc::SIGKILL) => Outcome::Killed,
        _ => Outcome::Failed(crashed(status, memory)),
    })
}

fn crashed(status: std::process::ExitStatus, memory: u64) -> Problem {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        // Rust aborts when an allocation fails: past the address-space limit.
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) => Problem::new(
            ProblemType::ImageTooLarge,
            format!(
                "the operation ran out of its memory allowance of {} MiB",
                memory >> 20
            ),
        ),
        _ => Problem::new(
            ProblemType::OperationFailed,
            format!("the operation crashed ({status})"),
        ),
    }
}

/// The child's side: runs one job from stdin. Never returns an error to a
/// caller: whatever happens is the reply.
pub fn main() -> ExitCode {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() {
        return ExitCode::from(2);
    }
    let reply = match serde_json::from_str::<Job>(&text) {
        Ok(job) => execute(&job),
        Err(e) => Reply::Failed(Problem::new(ProblemType::Internal, format!("bad job: {e}"))),
    };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &reply);
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn execute(job: &Job) -> Reply {
    let internal = |e: std::io::Error| {
        // A full disk is the server's state, not the input's fault: the
        // server tries the operation again later (see `cache::process`).
        let kind = match crate::error::is_no_space(&e) {
            true => ProblemType::InsufficientStorage,
            false => ProblemType::Internal,
        };
        Problem::new(kind, e.to_string())
    };
    let run = || -> Result<Written, Problem> {
        let op = Operation::from_json(&job.operation)
            .map_err(|e| Problem::new(ProblemType::Internal, format!("stored operation: {e}")))?;
        let Kind::Image { steps, output } = op.kind() else {
            return Err(Problem::new(
                ProblemType::Internal,
                "not an image operation",
            ));
        };
        let limits = Limits {
            max_pixels: job.max_pixels,
            max_image_input: job.max_image_input,
        };
        let encoded = super::image::run(&job.input, steps, output, &limits)?;
        let bytes = encoded.bytes;
        let mut file = std::fs::File::create(&job.output).map_err(internal)?;
        file.write_all(&bytes).map_err(internal)?;
        file.sync_all().map_err(internal)?;
        Ok(Written {
            content_type: encoded.media_type.to_owned(),
            length: bytes.len() as u64,
            blake3: InputHash::of(&bytes),
        })
    };
    match run() {
        Ok(written) => Reply::Done(written),
        Err(problem) => Reply::Failed(problem),
    }
}
