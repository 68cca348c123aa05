//! `soak`: 100 clients (by default) mixing one-shot hits and misses, block,
//! `PATCH` and tus uploads, waits and deletes against one upcache server on
//! loopback for ten minutes; prints errors, latencies per request kind and
//! whether the server's RSS, fds and disk use stayed flat. Usually run
//! through `benches/soak.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use upcache_benches::cli::{parse_duration, parse_size, run_to_exit};
use upcache_benches::soak::{self, Mix, Options};

/// Soak test of upcache: a long mixed load; errors must be 0 and the server flat.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// How long the clients run (90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent clients, each looping over the scenarios.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Time before the warm sample that the end is compared with
    /// [default: 10% of --duration, at most 60s].
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Time between progress lines.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    every: Duration,
    /// New input bytes per second the clients may upload (the server keeps
    /// every input, so this is how fast its inputs/ grows).
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    new_rate: u64,
    /// Live inputs that hits, waits and deletes draw from; older ones are
    /// retired (their entries deleted).
    #[arg(long, default_value_t = 200)]
    keep: usize,
    /// Largest new input (they range from 1 KiB up, log-uniform).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    max_input: u64,
    /// The scenarios and their weights, `name=weight,…` (scenarios not
    /// named do not run): hit, get, wait, miss, blocks, patch, tus, recreate
    /// [default: hit=26,get=14,wait=10,miss=8,blocks=12,patch=10,tus=12,recreate=8].
    #[arg(long, value_parser = Mix::parse)]
    mix: Option<Mix>,
    /// The upcache binary [default: <target dir>/release/upcache].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Directory for the server's data [default: the cargo target dir].
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = upcache_benches::target_dir();
    let opts = Options {
        duration: args.duration,
        warmup: args.warmup,
        clients: args.clients,
        every: args.every,
        new_rate: args.new_rate,
        keep: args.keep,
        max_input: args.max_input,
        mix: args.mix.unwrap_or_default(),
        server_bin: args
            .server_bin
            .unwrap_or_else(|| target.join("release").join("upcache")),
        work_dir: args.work_dir.unwrap_or(target),
    };
    run_to_exit("soak", soak::run(opts))
}
