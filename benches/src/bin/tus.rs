//! `tus`: uploads a large input over loopback to upcache's tus endpoint and
//! to `@tus/server` with `@tus/file-store` (Node), with tus-js-client and
//! with curl, and prints MiB/s and each server's peak RSS side by side.
//! Usually run through `benches/tus.sh`, which installs the Node packages.

use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::Parser;
use upcache_benches::process::{self, TRAMPOLINE_ARG};
use upcache_benches::tus::{self, Options, ServerKind};

/// tus benchmark: upcache's /files/ vs @tus/server + @tus/file-store, with tus-js-client and curl.
#[derive(Debug, Parser)]
#[command(name = "tus")]
struct Args {
    /// Input size of each scenario (human units: 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Runs of each scenario, each on a fresh server.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The servers to measure: upcache, tus-node (@tus/server), or both.
    #[arg(long, value_delimiter = ',', default_value = "upcache,tus-node")]
    servers: Vec<ServerKind>,
    /// Also a tus-js-client row per server with this chunkSize (e.g. 64MiB);
    /// without it, only the library's default (Infinity: one PATCH).
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// The upcache binary [default: <target dir>/release/upcache].
    #[arg(long, overrides_with = "server_bin")]
    server_bin: Option<PathBuf>,
    /// The Node package with tus-server.mjs, tus-upload.mjs and their
    /// node_modules (npm ci --prefix DIR) [default: <workspace>/benches/tus].
    #[arg(long)]
    tus_dir: Option<PathBuf>,
    /// The node binary (Node.js 20.19 or later).
    #[arg(long, default_value = "node")]
    node: PathBuf,
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
            eprintln!("tus: cannot find this program's executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        size: args.size,
        runs: args.runs,
        servers: args.servers,
        chunk_size: args.chunk_size,
        upcache_bin: args
            .server_bin
            .unwrap_or_else(|| target.join("release").join("upcache")),
        tus_dir: args
            .tus_dir
            .unwrap_or_else(|| upcache_benches::workspace().join("benches").join("tus")),
        node: args.node,
        curl: args.curl,
        work_dir: args.work_dir.unwrap_or(target),
        trampoline,
    };
    let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
    // Interrupting drops the run: its servers and clients are killed and its
    // work dir removed.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = tus::run(opts) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tus: {e}");
            ExitCode::FAILURE
        }
    }
}
