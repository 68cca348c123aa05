//! `ingest`: uploads a large input to fresh upcache servers over loopback,
//! as one `PATCH` with curl and as parallel blocks, and prints MiB/s and the
//! server's peak RSS. Usually run through `benches/ingest.sh`.

use std::process::ExitCode;

use clap::Parser;
use upcache_benches::cli::{parse_size, run_to_exit, CommonArgs};
use upcache_benches::ingest::{self, Options};

/// Ingest benchmark of upcache: one PATCH with curl vs parallel blocks.
#[derive(Debug, Parser)]
#[command(name = "ingest")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Block size of the uploads (a power of two).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    block_size: u64,
    /// Concurrent HTTP/1.1 streams of the block scenario.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Only scenario (a), between its two `dd` rows: quicker, when working
    /// on the sequential path.
    #[arg(long)]
    patch_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let common = args.common.resolve_runs(3);
    let opts = Options {
        size: common.size,
        block_size: args.block_size,
        streams: args.streams,
        patch_only: args.patch_only,
        runs: common.runs,
        server_bin: common.upcache_bin,
        work_dir: common.work_dir,
        curl: common.curl,
    };
    run_to_exit("ingest", ingest::run(opts))
}
