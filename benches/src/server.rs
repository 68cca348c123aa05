//! A fresh server per scenario: `upcache serve`, or another server to
//! compare it with.
//!
//! Each scenario gets its own process and data directory, so the peak RSS
//! (`VmHWM`) and CPU time read from `/proc/<pid>` belong to that scenario
//! alone. The server runs with its defaults: every `UPCACHE_*` variable of
//! the caller's environment is removed from the child's (the server would
//! otherwise read them as settings, or refuse unknown ones).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Result;

/// The stdout line announcing the bound address.
const LISTENING: &str = "listening on http://";
/// How long the server may take to print [`LISTENING`].
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server; killed if dropped without [`BenchServer::stop`].
pub struct BenchServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

/// What `/proc` says about a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Peak resident set size (`VmHWM`), in bytes.
    pub peak_rss: u64,
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
}

impl BenchServer {
    /// Starts `bin serve` on 127.0.0.1:0 with its data in `dir/data` and its
    /// stderr in `dir/stderr.log`. `dir` must not exist yet.
    pub fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .env("NO_COLOR", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("UPCACHE_") {
                cmd.env_remove(name);
            }
        }
        Self::spawn(cmd, &bin.display().to_string(), dir)
    }

    /// Starts `cmd`, a server that prints [`LISTENING`]`ADDR` on stdout once
    /// it listens (upcache, or another server to compare with), with its
    /// stderr in `dir/stderr.log`; `dir` must not exist yet and is removed by
    /// [`BenchServer::stop`]. The process itself must be the server, so that
    /// its `/proc` figures are the server's.
    pub fn spawn(mut cmd: Command, what: &str, dir: &Path) -> Result<Self> {
        std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let stderr = File::create(dir.join("stderr.log"))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {what}: {e}"))?;

        // A thread drains stdout for the life of the process (the server must
        // never block on a full pipe); the first matching line is the address.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("server-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                        let _ = tx.send(addr.trim_end_matches('/').to_owned());
                    }
                }
            })?;
        let mut server = Self {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            dir: dir.to_path_buf(),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .map_err(|e| format!("bad address {addr:?}: {e}"))?
            }
            Err(_) => {
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                return Err(
                    format!("{what} did not print `{LISTENING}ADDR`; stderr:\n{log}").into(),
                );
            }
        }
        Ok(server)
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id, for reading `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory of a server started with [`BenchServer::start`].
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Peak RSS and CPU time so far.
    pub fn usage(&self) -> Result<Usage> {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let peak_rss = vm_hwm(&status).ok_or("no VmHWM in /proc/<pid>/status")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let ticks = cpu_ticks(&stat).ok_or("cannot parse /proc/<pid>/stat")?;
        Ok(Usage {
            peak_rss,
            cpu_seconds: ticks as f64 / clock_ticks(),
        })
    }

    /// Asks the server to shut down (SIGTERM), kills it if it takes too
    /// long, and removes its directory.
    pub fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// `VmHWM:  12345 kB` → bytes.
pub(crate) fn vm_hwm(status: &str) -> Option<u64> {
    status_kb(status, "VmHWM:")
}

/// `VmRSS:  12345 kB` → bytes: the resident set size now.
pub(crate) fn vm_rss(status: &str) -> Option<u64> {
    status_kb(status, "VmRSS:")
}

/// Anonymous resident memory (`RssAnon` of `/proc/<pid>/status`), in bytes:
/// `VmRSS` without the file pages the process has mapped.
pub(crate) fn rss_anon(status: &str) -> Option<u64> {
    status_kb(status, "RssAnon:")
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_kb(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(field))?;
    let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`. The command name
/// (field 2) may hold spaces, so fields are counted after its closing `)`.
pub(crate) fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, i.e. index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        assert_eq!(
            vm_hwm("Name:\tupcache\nVmPeak:\t  9 kB\nVmHWM:\t   40960 kB\n"),
            Some(40 << 20)
        );
        assert_eq!(vm_hwm("VmRSS:\t1 kB\n"), None);
        assert_eq!(vm_rss("VmHWM:\t9 kB\nVmRSS:\t1 kB\n"), Some(1024));
        let stat = "4242 (up cache) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(175));
    }
}
