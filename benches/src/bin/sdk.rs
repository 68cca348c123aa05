//! `sdk`: uploads a large input to fresh upcache servers over loopback with
//! the SDK's main call (`upcache put`) at several stream counts, next to one
//! `PATCH` with curl, and prints MiB/s with the client's CPU time and peak
//! RSS. Usually run through `benches/sdk.sh`.

use std::process::ExitCode;

use clap::Parser;
use upcache_benches::cli::{parse_size, run_to_exit, trampoline_or_self, CommonArgs};
use upcache_benches::sdk::{self, Options};

/// SDK benchmark of upcache: `upcache put` with 1, 2, 4, 8 streams vs one PATCH with curl.
#[derive(Debug, Parser)]
#[command(name = "sdk")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Block size of the uploads (a power of two).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    block_size: u64,
    /// Stream counts (`upcache put --concurrency`), one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    streams: Vec<usize>,
}

fn main() -> ExitCode {
    let trampoline = match trampoline_or_self("sdk") {
        Ok(exe) => exe,
        Err(code) => return code,
    };
    let args = Args::parse();
    let common = args.common.resolve();
    let opts = Options {
        size: common.size,
        block_size: args.block_size,
        streams: args.streams,
        runs: common.runs,
        upcache_bin: common.upcache_bin,
        work_dir: common.work_dir,
        curl: common.curl,
        trampoline,
    };
    run_to_exit("sdk", sdk::run(opts))
}
