//! What the benchmark binaries share on the command line: the flags every
//! benchmark takes, and running a benchmark to an exit code.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;

use crate::process::{self, TRAMPOLINE_ARG};

/// Parses a human size (`1GiB`, `256MiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.as_u64())
}

/// Flags every benchmark takes.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Input size of each scenario (human units: 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Runs of each scenario, each on a fresh server.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The upcache binary (server, and client where one is measured)
    /// [default: <target dir>/release/upcache].
    #[arg(long, overrides_with = "server_bin")]
    pub server_bin: Option<PathBuf>,
    /// Directory for the inputs and the servers' data — on the filesystem to
    /// measure, not a tmpfs [default: the cargo target dir].
    #[arg(long, overrides_with = "work_dir")]
    pub work_dir: Option<PathBuf>,
    /// The curl binary.
    #[arg(long, default_value = "curl")]
    pub curl: PathBuf,
}

/// [`CommonArgs`] with their defaults filled in.
#[derive(Debug, Clone)]
pub struct Common {
    pub size: u64,
    pub runs: usize,
    pub upcache_bin: PathBuf,
    pub work_dir: PathBuf,
    pub curl: PathBuf,
}

impl CommonArgs {
    pub fn resolve(self) -> Common {
        let target = crate::target_dir();
        Common {
            size: self.size,
            runs: self.runs,
            upcache_bin: self
                .server_bin
                .unwrap_or_else(|| target.join("release").join("upcache")),
            work_dir: self.work_dir.unwrap_or(target),
            curl: self.curl,
        }
    }
}

/// The start of a benchmark that launches clients through the measuring
/// trampoline (see [`process`]): if this process is a trampoline, it runs
/// as one and `Err` holds its exit code; else `Ok` holds this executable,
/// the trampoline to launch clients with. Call it before anything else, so
/// that the trampoline stays small.
pub fn trampoline_or_self(name: &str) -> Result<PathBuf, ExitCode> {
    let mut raw = std::env::args_os();
    if raw.nth(1).is_some_and(|a| a == TRAMPOLINE_ARG) {
        return Err(process::trampoline(raw.collect()));
    }
    std::env::current_exe().map_err(|e| {
        eprintln!("{name}: cannot find this program's executable: {e}");
        ExitCode::FAILURE
    })
}

/// Runs a benchmark to its end, or until Ctrl-C (which drops the run: its
/// servers and clients are killed and its work dir removed).
pub fn run_to_exit(name: &str, run: impl Future<Output = crate::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
