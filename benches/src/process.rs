//! A client run as its own process and measured alone: its wall time, its
//! CPU seconds and peak RSS, and when each line of its stderr came (with the
//! CPU time and peak RSS the process had reached by then).
//!
//! # Why a trampoline
//!
//! `wait4(2)` gives a child's user and system time and its `ru_maxrss`, but
//! on Linux `ru_maxrss` also counts the memory of the process that *spawned*
//! it: at `execve` the kernel folds the peak RSS of the old address space (a
//! copy of the parent's after `fork`, or the parent's own after `vfork`) into
//! the new program's. Spawned from a benchmark that has written gigabytes of
//! input, a client that used 40 MiB would report the benchmark's peak. So
//! the benchmark binary re-runs itself as a small **trampoline**
//! (`<exe> __measure-process PROGRAM ARGS...`) that spawns the client, reaps
//! it with `wait4` and prints what it measured as JSON. Its own peak RSS at
//! that moment — a few MiB, reported as [`Measured::floor_rss`] — is the
//! only memory the client's figure can inherit.
//!
//! The client gets no stdin and `SIGKILL` when the trampoline dies; the
//! trampoline is killed when its [`measure`] future is dropped (an
//! interrupted run), so no client outlives the benchmark.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{clock_ticks, cpu_ticks, vm_hwm};
use crate::Result;

/// The first argument that makes a benchmark binary act as the trampoline:
/// its `main` must hand the remaining arguments to [`trampoline`] before
/// doing anything else (in particular before starting a runtime).
pub const TRAMPOLINE_ARG: &str = "__measure-process";

/// A line the client wrote to stderr.
#[derive(Debug, Clone)]
pub struct Line {
    /// When it was read, from the spawn.
    pub at: Duration,
    /// The client's user + system CPU seconds by then (`/proc/<pid>/stat`,
    /// clock-tick resolution).
    pub cpu_seconds: f64,
    /// The client's peak RSS by then (`VmHWM`), in bytes.
    pub peak_rss: u64,
    pub text: String,
}

/// What one client process did.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From just before the spawn to the reaping of the exited process:
    /// start-up and exit included.
    pub wall: Duration,
    /// User + system CPU seconds of the process, all its threads (`wait4`).
    pub cpu_seconds: f64,
    /// Peak RSS of the process (`ru_maxrss` from `wait4`), in bytes.
    pub peak_rss: u64,
    /// The trampoline's own peak RSS when it spawned the client: the client's
    /// `peak_rss` cannot be reported below it.
    pub floor_rss: u64,
    /// The exit code, or minus the signal that ended it.
    pub exit: i32,
    pub stdout: String,
    pub stderr: Vec<Line>,
}

impl Measured {
    /// The first stderr line starting with `prefix`.
    pub fn line(&self, prefix: &str) -> Option<&Line> {
        self.stderr.iter().find(|l| l.text.starts_with(prefix))
    }

    /// The stderr lines, for error messages.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn from_json(v: &Value) -> Option<Self> {
        let f = |name: &str| v.get(name)?.as_f64();
        let stderr = v
            .get("stderr")?
            .as_array()?
            .iter()
            .map(|l| {
                Some(Line {
                    at: Duration::from_secs_f64(l.get("at")?.as_f64()?),
                    cpu_seconds: l.get("cpu")?.as_f64()?,
                    peak_rss: l.get("hwm")?.as_u64()?,
                    text: l.get("text")?.as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            wall: Duration::from_secs_f64(f("wall")?),
            cpu_seconds: f("cpu")?,
            peak_rss: v.get("maxrss")?.as_u64()?,
            floor_rss: v.get("floor")?.as_u64()?,
            exit: v.get("exit")?.as_i64()? as i32,
            stdout: v.get("stdout")?.as_str()?.to_owned(),
            stderr,
        })
    }
}

/// Runs `program args` as its own process through the trampoline `exe` (the
/// running benchmark binary) and returns what it measured, whatever the
/// client's exit code. The client's environment is the caller's without any
/// `UPCACHE_*` variable (the client would read them as settings).
pub async fn measure(exe: &Path, program: &Path, args: &[OsString]) -> Result<Measured> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(TRAMPOLINE_ARG).arg(program).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("UPCACHE_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("start {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "measuring {}: the trampoline {}: {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Measured::from_json(&v).ok_or_else(|| format!("the trampoline printed {v}").into())
}

/// The trampoline's `main`: `args` are `PROGRAM ARGS...`. Spawns the
/// program, timestamps its stderr lines, reaps it with `wait4` and prints
/// the measurement as one JSON object on stdout. Fails (exit code 1) only
/// when the program cannot be run or measured; the program's own exit code
/// is part of the JSON.
pub fn trampoline(args: Vec<OsString>) -> ExitCode {
    match run_trampoline(args) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trampoline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_trampoline(args: Vec<OsString>) -> Result<Value> {
    let (program, args) = args.split_first().ok_or("no program to run")?;
    let floor = vm_hwm(&std::fs::read_to_string("/proc/self/status")?).unwrap_or(0);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl(2) is async-signal-safe; it runs in the child between
    // fork and exec and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", OsStr::new(program).to_string_lossy()))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for text in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let at = started.elapsed().as_secs_f64();
            // Read right away: the process is still running (it may be
            // exiting, in which case the figures are missing, 0).
            let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| cpu_ticks(&s))
                .map_or(0.0, |t| t as f64 / clock_ticks());
            let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| vm_hwm(&s))
                .unwrap_or(0);
            lines.push(json!({"at": at, "cpu": cpu, "hwm": hwm, "text": text}));
        }
        lines
    });

    // SAFETY: rusage is plain data; an all-zero value is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    loop {
        // SAFETY: wait4 on our own child, with valid pointers to locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}").into());
        }
    }
    let wall = started.elapsed().as_secs_f64();
    // `child` is reaped: it must not be waited for again (dropping it does not).
    drop(child);
    let exit = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(json!({
        "wall": wall,
        "cpu": seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        "maxrss": usage.ru_maxrss as u64 * 1024,
        "floor": floor,
        "exit": exit,
        "stdout": out_reader.join().unwrap_or_default(),
        "stderr": err_reader.join().unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trampoline_measures_a_child() {
        let script = "echo 'key abc' >&2; echo out; exit 3";
        let v = run_trampoline(vec!["/bin/sh".into(), "-c".into(), script.into()]).unwrap();
        let m = Measured::from_json(&v).unwrap();
        assert_eq!(m.exit, 3);
        assert_eq!(m.stdout, "out\n");
        let line = m.line("key ").unwrap();
        assert_eq!(line.text, "key abc");
        assert!(m.peak_rss > 0 && m.floor_rss > 0);
        assert!(m.line("nothing").is_none());
    }
}
