//! `ingest`: uploads a large input to fresh upcache servers over loopback,
//! as one `PATCH` with curl and as parallel blocks, and prints MiB/s and the
//! server's peak RSS. Usually run through `benches/ingest.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::Parser;
use upcache_benches::ingest::{self, Options};

/// Ingest benchmark of upcache: one PATCH with curl vs parallel blocks.
#[derive(Debug, Parser)]
#[command(name = "ingest")]
struct Args {
    /// Input size of each scenario (human units: 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Block size of the uploads (a power of two).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    block_size: u64,
    /// Concurrent HTTP/1.1 streams of the block scenario.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Runs of each scenario, each on a fresh server.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The upcache binary [default: <target dir>/release/upcache].
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let target = upcache_benches::target_dir();
    let opts = Options {
        size: args.size,
        block_size: args.block_size,
        streams: args.streams,
        runs: args.runs,
        server_bin: args
            .server_bin
            .unwrap_or_else(|| target.join("release").join("upcache")),
        work_dir: args.work_dir.unwrap_or(target),
        curl: args.curl,
    };
    // Interrupting drops the run: its servers are killed and its work dir removed.
    let outcome = tokio::select! {
        r = ingest::run(opts) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest: {e}");
            ExitCode::FAILURE
        }
    }
}
