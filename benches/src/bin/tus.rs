//! `tus`: uploads a large input over loopback to upcache's tus endpoint and
//! to `@tus/server` with `@tus/file-store` (Node), with tus-js-client and
//! with curl, and prints MiB/s and each server's peak RSS side by side.
//! Usually run through `benches/tus.sh`, which installs the Node packages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use upcache_benches::cli::{parse_size, run_to_exit, trampoline_or_self, CommonArgs};
use upcache_benches::tus::{self, Options, ServerKind};

/// tus benchmark: upcache's /files/ vs @tus/server + @tus/file-store, with tus-js-client and curl.
#[derive(Debug, Parser)]
#[command(name = "tus")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The servers to measure: upcache, tus-node (@tus/server), or both.
    #[arg(long, value_delimiter = ',', default_value = "upcache,tus-node")]
    servers: Vec<ServerKind>,
    /// Also a tus-js-client row per server with this chunkSize (e.g. 64MiB);
    /// without it, only the library's default (Infinity: one PATCH).
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// The Node package with tus-server.mjs, tus-upload.mjs and their
    /// node_modules (npm ci --prefix DIR) [default: <workspace>/benches/tus].
    #[arg(long)]
    tus_dir: Option<PathBuf>,
    /// The node binary (Node.js 20.19 or later).
    #[arg(long, default_value = "node")]
    node: PathBuf,
}

fn main() -> ExitCode {
    let trampoline = match trampoline_or_self("tus") {
        Ok(exe) => exe,
        Err(code) => return code,
    };
    let args = Args::parse();
    let common = args.common.resolve();
    let opts = Options {
        size: common.size,
        runs: common.runs,
        servers: args.servers,
        chunk_size: args.chunk_size,
        upcache_bin: common.upcache_bin,
        tus_dir: args
            .tus_dir
            .unwrap_or_else(|| upcache_benches::workspace().join("benches").join("tus")),
        node: args.node,
        curl: common.curl,
        work_dir: common.work_dir,
        trampoline,
    };
    run_to_exit("tus", tus::run(opts))
}
