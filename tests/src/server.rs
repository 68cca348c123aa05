//! Running the real `upcache` binary.
//!
//! Each [`Server`] owns a temporary directory holding the server's data
//! directory (`data/`), its stderr (`stderr.log`, appended to across
//! restarts) and, if the test gives one, its `config.toml`. The server is
//! started as `upcache serve --listen 127.0.0.1:0 --data <dir>/data [extra
//! args]` (or another data directory: [`Server::start_on`]), and its address
//! is read from the one stdout line it prints, `listening on http://ADDR`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// The stdout line announcing the bound address.
const LISTENING: &str = "listening on http://";
/// How long the server may take to print [`LISTENING`].
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `upcache serve` process; killed when dropped.
pub struct Server {
    dir: TempDir,
    data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Server {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `serve` arguments (e.g. `["--max-input-size", "1MiB"]`).
    pub async fn start_with(args: &[&str]) -> Self {
        Self::start_configured(None, args).await
    }

    /// Starts a server with a TOML configuration file holding `config` (for
    /// settings that have no flag, e.g. `body_idle_timeout = 1`) and extra
    /// `serve` arguments. The file lives in the server's directory, so that
    /// restarts read it too.
    pub async fn start_with_config(config: &str, args: &[&str]) -> Self {
        Self::start_configured(Some(config), args).await
    }

    /// Starts a server whose data directory is `data` (created if missing;
    /// e.g. on a filesystem the test mounted) instead of one of its own.
    pub async fn start_on(data: &std::path::Path, args: &[&str]) -> Self {
        Self::start_in(Some(data.to_path_buf()), None, args).await
    }

    async fn start_configured(config: Option<&str>, args: &[&str]) -> Self {
        Self::start_in(None, config, args).await
    }

    async fn start_in(data: Option<PathBuf>, config: Option<&str>, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("upcache-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let data = data.unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data).expect("create the data dir");
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(config) = config {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, config).expect("write config.toml");
            args.extend(["--config".to_owned(), path.display().to_string()]);
        }
        // No connection reuse: a test about one request must not fail because the
        // server closed the connection of an earlier one (hit.rs tests that
        // behaviour on its own, over raw sockets).
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(180))
            .build()
            .expect("build the HTTP client");
        let mut server = Self {
            dir,
            data,
            args,
            child: None,
            addr: ([127, 0, 0, 1], 0).into(),
            client,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let bin = tokio::task::spawn_blocking(|| crate::binary::path().to_path_buf())
            .await
            .expect("locate upcache");
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open stderr.log");
        let mut cmd = Command::new(bin);
        // The server reads UPCACHE_* from the environment: only the flags here count.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("UPCACHE_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(self.data_dir())
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn upcache");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        // A thread reads stdout for the whole life of the process, so the
        // server never blocks on a full pipe; the first matching line is the address.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim_end_matches('/').to_owned());
                }
            }
        });
        let announced = tokio::task::spawn_blocking(move || rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("join the stdout reader");
        match announced {
            Ok(addr) => {
                self.addr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"))
            }
            Err(e) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "upcache did not print `{LISTENING}ADDR` ({e}); exit status {status:?}; stderr:\n{}",
                    self.stderr_log()
                );
            }
        }
    }

    /// The address the server listens on (changes on restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An HTTP client (no proxy, no connection reuse, generous timeout) for this server.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// A line of the server process's `/proc/PID/status`, in kB (`VmHWM`: peak RSS).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// The processes the server started that are still alive.
    pub fn children(&self) -> Vec<u32> {
        let pid = self.pid().to_string();
        std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                    // pid (comm) state ppid …: comm may hold spaces, so split after it.
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                        == Some(pid.as_str())
                        && !rest_is_zombie(&stat)
                })
            })
            .collect()
    }

    /// The server's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Everything the server wrote to stderr so far, across restarts.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Kills the server with SIGKILL — no chance to flush or clean up — and
    /// waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // Child::kill is SIGKILL on Unix.
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for a graceful exit (panics after 30 s).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().expect("wait for upcache") {
                    return status;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("upcache did not exit within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("join")
    }

    /// Starts the server again on the same data directory (killing it first
    /// if it still runs). The port may change.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.stderr_log();
            // The tail is what explains a failure; keep the report readable.
            let start = log.len().saturating_sub(64 * 1024);
            let tail = String::from_utf8_lossy(&log.as_bytes()[start..]);
            eprintln!(
                "---- upcache stderr ({}) ----\n{tail}---- end of upcache stderr ----",
                self.addr
            );
        }
    }
}

fn rest_is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("Z")
}
