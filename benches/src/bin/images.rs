//! `images`: thumbnails of a large JPEG and a large PNG as WebP, AVIF and
//! JPEG, upcache against `vipsthumbnail` in the same run. Usually run
//! through `benches/images.sh`, which installs libvips-tools if missing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use upcache_benches::cli::run_to_exit;
use upcache_benches::images::{self, Options};

/// Image benchmark: upcache thumbnails vs vipsthumbnail, time and bytes.
#[derive(Debug, Parser)]
#[command(name = "images")]
struct Args {
    /// Runs of each thumbnail (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Side of the square inputs, in pixels.
    #[arg(long, default_value_t = 3900)]
    side: u32,
    /// Side of the thumbnail box.
    #[arg(long, default_value_t = 400)]
    bound: u32,
    /// Quality of both encoders.
    #[arg(long, default_value_t = 80)]
    quality: u8,
    /// The upcache binary [default: <target dir>/release/upcache].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The vipsthumbnail binary.
    #[arg(long, default_value = "vipsthumbnail")]
    vips: PathBuf,
    /// Directory for the inputs and the server's data [default: the cargo target dir].
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = upcache_benches::target_dir();
    let opts = Options {
        runs: args.runs,
        side: args.side,
        bound: args.bound,
        quality: args.quality,
        upcache_bin: args
            .server_bin
            .unwrap_or_else(|| target.join("release").join("upcache")),
        vips: args.vips,
        work_dir: args.work_dir.unwrap_or(target),
    };
    run_to_exit("images", images::run(opts))
}
