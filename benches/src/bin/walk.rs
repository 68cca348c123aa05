//! `walk`: reads every path of a list once from one server, with a fixed
//! number of requests in flight, and prints what `benches/tiers.sh` needs:
//! requests per second over the walk, and latency percentiles.
//!
//! ```text
//! walk --base http://127.0.0.1:8080 --list paths.txt --concurrency 32
//! requests=3000 seconds=2.314 rps=1296 p50_ms=21.40 p99_ms=48.02 bytes=30720000
//! ```
//!
//! Each path is asked for exactly once (wrk can only run for a duration,
//! and would ask again once the list ran out: cold reads would turn warm).
//! Any answer but `200` with a body ends the walk with exit status 1.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// Reads every path in a list once and prints rps and latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "walk")]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    base: String,
    /// A file with one path (starting with /) per line.
    #[arg(long)]
    list: std::path::PathBuf,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let list = match std::fs::read_to_string(&args.list) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("walk: cannot read {}: {e}", args.list.display());
            return ExitCode::from(2);
        }
    };
    let urls: Arc<Vec<String>> = Arc::new(
        list.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|p| format!("{}{}", args.base.trim_end_matches('/'), p.trim()))
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("an HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        workers.spawn(async move {
            let mut took = Vec::new();
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(url) = urls.get(i) else {
                    return Ok((took, bytes));
                };
                let t = Instant::now();
                let r = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let status = r.status();
                let body = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                if status != reqwest::StatusCode::OK || body.is_empty() {
                    return Err(format!("{url}: {status} with {} bytes", body.len()));
                }
                took.push(t.elapsed());
                bytes += body.len() as u64;
            }
        });
    }
    let mut took: Vec<Duration> = Vec::with_capacity(urls.len());
    let mut bytes = 0u64;
    while let Some(done) = workers.join_next().await {
        match done.expect("a walker") {
            Ok((t, b)) => {
                took.extend(t);
                bytes += b;
            }
            Err(e) => {
                eprintln!("walk: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    took.sort();
    let pct = |p: f64| {
        took.get(((took.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "requests={} seconds={seconds:.3} rps={:.0} p50_ms={:.2} p99_ms={:.2} bytes={bytes}",
        took.len(),
        took.len() as f64 / seconds,
        pct(0.50),
        pct(0.99),
    );
    ExitCode::SUCCESS
}
