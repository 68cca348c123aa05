//! `sdk`: uploads a large input to fresh upcache servers over loopback with
//! the SDK's main call (`upcache put`) at several stream counts, next to one
//! `PATCH` with curl, and prints MiB/s with the client's CPU time and peak
//! RSS. Usually run through `benches/sdk.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::Parser;
use upcache_benches::process::{self, TRAMPOLINE_ARG};
use upcache_benches::sdk::{self, Options};

/// SDK benchmark of upcache: `upcache put` with 1, 2, 4, 8 streams vs one PATCH with curl.
#[derive(Debug, Parser)]
#[command(name = "sdk")]
struct Args {
    /// Input size of each scenario (human units: 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Block size of the uploads (a power of two).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    block_size: u64,
    /// Stream counts (`upcache put --concurrency`), one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    streams: Vec<usize>,
    /// Runs of each scenario, each on a fresh server.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The upcache binary, server and client [default: <target dir>/release/upcache].
    #[arg(long, overrides_with = "server_bin")]
    server_bin: Option<PathBuf>,
    /// Directory for the inputs and the servers' data — on the filesystem to
    /// measure, not a tmpfs [default: the cargo target dir].
    #[arg(long, overrides_with = "work_dir")]
    work_dir: Option<PathBuf>,
    /// The curl binary.
    #[arg(long, default_value = "curl")]
    curl: PathBuf,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.as_u64())
}

fn main() -> ExitCode {
    // The measuring trampoline (see `process`): before anything else, so that
    // it stays small.
    let mut raw = std::env::args_os();
    if raw.nth(1).is_some_and(|a| a == TRAMPOLINE_ARG) {
        return process::trampoline(raw.collect());
    }
    let args = Args::parse();
    let target = upcache_benches::target_dir();
    let trampoline = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("sdk: cannot find this program's executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        size: args.size,
        block_size: args.block_size,
        streams: args.streams,
        runs: args.runs,
        upcache_bin: args
            .server_bin
            .unwrap_or_else(|| target.join("release").join("upcache")),
        work_dir: args.work_dir.unwrap_or(target),
        curl: args.curl,
        trampoline,
    };
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    // Interrupting drops the run: its servers and clients are killed and its
    // work dir removed.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = sdk::run(opts) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdk: {e}");
            ExitCode::FAILURE
        }
    }
}
