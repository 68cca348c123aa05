//! What the benchmark binaries share on the command line: the flags every
//! benchmark takes, and running a benchmark to an exit code.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytesize::ByteSize;

use crate::process::{self, TRAMPOLINE_ARG};

/// Parses a human size (`1GiB`, `256MiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.as_u64())
}

/// Parses a duration: a number of seconds, or a number with a unit `s`,
/// `m` or `h` (`90s`, `10m`, `1.5h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n * scale)),
        _ => Err(format!("{s:?} is not a duration (90s, 10m, 1h)")),
    }
}

/// Flags every benchmark takes.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Input size of each scenario (human units: 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Runs of each scenario, each on a fresh server [default: 1; ingest: 3].
    #[arg(long)]
    pub runs: Option<usize>,
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
        self.resolve_runs(1)
    }

    /// As [`resolve`](Self::resolve), with `runs` runs unless `--runs` says otherwise.
    pub fn resolve_runs(self, runs: usize) -> Common {
        let target = crate::target_dir();
        Common {
            size: self.size,
            runs: self.runs.unwrap_or(runs),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("m").is_err());
    }
}
