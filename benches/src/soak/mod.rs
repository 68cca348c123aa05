//! The soak: many clients mixing every kind of request against one server
//! for a long time, to show that nothing leaks — no errors, and memory,
//! file descriptors and the sled database flat once warm.
//!
//! # Layout
//!
//! * [`mix`] — the clients, the scenarios and their weights; the ones on
//!   live inputs (hits, gets, waits, deletes). [`upload`] — the `/v1`
//!   uploads of new inputs; [`tus`] — the tus uploads.
//! * [`state`] — what the clients share: inputs made from seeds, the
//!   budget of new input bytes, the window of live inputs and its leases.
//! * [`http`] — sending, timing and checking a request, and a result's bytes.
//! * [`raw`] — the one-shot `PUT` with `Expect: 100-continue`, which
//!   reqwest cannot send.
//! * [`stats`] — latencies per request kind, scenarios, errors.
//! * [`sample`] — the server's RSS, fds and disk use, and the flatness verdict.
//!
//! # Bounds
//!
//! The server listens on 127.0.0.1 (port 0) and gets a fresh data dir in the
//! work dir. Clients stop starting scenarios at the deadline; every request
//! has a timeout, so the run ends at most [`GRACE`] later, when the
//! stragglers are aborted (and counted as errors). The server is then
//! stopped and its directory removed.

mod http;
mod mix;
mod raw;
mod sample;
mod state;
mod stats;
mod tus;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub use self::mix::Mix;

use self::http::Ctx;
use self::sample::Sample;
use self::state::Pool;
use self::stats::{Kind, Recorder};
use crate::client::http_client_with_timeout;
use crate::machine::Machine;
use crate::report::size;
use crate::server::BenchServer;
use crate::Result;

/// How long the clients may take to finish their scenarios after the deadline.
pub const GRACE: Duration = Duration::from_secs(150);
/// Longest default warm-up.
const WARMUP_CAP: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    /// Before the warm sample; `None`: 10% of the run, at most a minute.
    pub warmup: Option<Duration>,
    pub clients: usize,
    /// Between progress lines.
    pub every: Duration,
    /// New input bytes per second the clients may upload.
    pub new_rate: u64,
    /// Live inputs kept; older ones are retired (their entries deleted).
    pub keep: usize,
    /// Largest new input.
    pub max_input: u64,
    /// The scenarios and their weights.
    pub mix: Mix,
    pub server_bin: PathBuf,
    pub work_dir: PathBuf,
}

impl Options {
    fn warmup(&self) -> Duration {
        self.warmup
            .unwrap_or_else(|| (self.duration / 10).min(WARMUP_CAP))
    }
}

/// Runs the soak and prints its report; fails if any answer was unexpected
/// or the server's footprint grew.
pub async fn run(opts: Options) -> Result<()> {
    if opts.clients == 0 || opts.duration.is_zero() {
        return Err("--clients and --duration must be above zero".into());
    }
    if opts.warmup() >= opts.duration {
        return Err("--warmup must be shorter than --duration".into());
    }
    if opts.max_input < 8 << 10 {
        return Err("--max-input must be at least 8 KiB".into());
    }
    if !opts.server_bin.is_file() {
        return Err(format!(
            "no upcache binary at {} (cargo build --release -p upcache)",
            opts.server_bin.display()
        )
        .into());
    }
    std::fs::create_dir_all(&opts.work_dir)?;
    let work = tempfile::Builder::new()
        .prefix("upcache-soak-")
        .tempdir_in(&opts.work_dir)?;
    print_header(&opts, &Machine::describe(work.path()), work.path());

    let server = BenchServer::start(&opts.server_bin, &work.path().join("server"))?;
    let (pid, data) = (server.pid(), server.data_dir());
    let probe = http_client_with_timeout(1, Duration::from_secs(10))?;
    let metrics = format!("{}/metrics", server.base_url());
    let take = |at: Duration| {
        let (data, probe, metrics) = (data.clone(), probe.clone(), metrics.clone());
        async move {
            let text = probe
                .get(&metrics)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            let tier = sample::memory_tier(&text).ok_or("no memory tier gauges in /metrics")?;
            tokio::task::spawn_blocking(move || Sample::take(pid, &data, at, tier)).await?
        }
    };
    let before = take(Duration::ZERO).await?;
    println!("  server    {} (pid {pid})", server.base_url());
    println!();

    let stats = Arc::new(Recorder::new());
    let pool = Arc::new(Pool::new(opts.new_rate, opts.keep));
    let ctx = Arc::new(Ctx {
        http: http_client_with_timeout(opts.clients * 2, http::REQUEST_TIMEOUT)?,
        base: server.base_url(),
        addr: server.base_url()["http://".len()..].parse()?,
        pool: pool.clone(),
        stats: stats.clone(),
        max_input: opts.max_input,
    });

    let started = Instant::now();
    let stop = started + opts.duration;
    let mut clients = JoinSet::new();
    for n in 0..opts.clients {
        clients.spawn(mix::client(ctx.clone(), opts.mix.clone(), n as u64, stop));
    }

    // Progress lines, the warm sample and the end sample (both under load).
    let warm_at = started + opts.warmup();
    let mut warm = None;
    let mut next_line = started + opts.every;
    let mut last = (started, 0u64);
    println!("progress (RSS, the memory tier's bytes, fds and disk use of the server; data = du of its data dir)");
    let end = loop {
        let now = Instant::now();
        let wake = [next_line, stop]
            .into_iter()
            .chain(warm.is_none().then_some(warm_at))
            .min()
            .expect("not empty");
        tokio::time::sleep_until(wake.max(now).into()).await;
        let now = Instant::now();
        let s = take(now - started).await?;
        let requests = stats.requests();
        let rate = (requests - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
        last = (now, requests);
        let mut line = s.line(requests, stats.errors(), rate);
        if warm.is_none() && now >= warm_at {
            warm = Some(s);
            line.push_str("  <- warm");
        }
        if now >= stop {
            println!("{line}  <- end");
            break s;
        }
        println!("{line}");
        if now >= next_line {
            next_line += opts.every;
        }
    };
    let warm = warm.unwrap_or(end);

    let drained = tokio::time::timeout(GRACE, async {
        while let Some(joined) = clients.join_next().await {
            joined?;
        }
        Ok::<_, tokio::task::JoinError>(())
    })
    .await;
    match drained {
        Ok(joined) => joined?,
        Err(_) => {
            let stuck = clients.len();
            clients.abort_all();
            for _ in 0..stuck {
                stats.error(
                    "end",
                    Kind::Status,
                    &format!("a client was still busy {GRACE:?} after the deadline"),
                );
            }
        }
    }
    drop(ctx);
    // Let the closed connections go before counting the server's fds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = take(started.elapsed()).await?;
    println!(
        "{}  <- drained",
        idle.line(stats.requests(), stats.errors(), 0.0)
    );
    let usage = server.usage()?;
    let log = work.path().join("server").join("stderr.log");
    let log = tokio::task::spawn_blocking(move || sample::LogCounts::read(&log)).await?;
    server.stop()?;

    let checks = sample::checks(&before, &warm, &end, &idle);
    report(
        &opts,
        &stats,
        &pool,
        [&before, &warm, &end, &idle],
        &checks,
        usage.peak_rss,
        &log,
    );
    let grew: Vec<_> = checks.iter().filter(|c| !c.ok()).map(|c| c.what).collect();
    match (stats.errors(), grew.is_empty()) {
        (0, true) => Ok(()),
        (0, false) => Err(format!("the server grew: {}", grew.join(", ")).into()),
        (n, _) => Err(format!("{n} unexpected answers (the first are listed above)").into()),
    }
}

fn print_header(opts: &Options, machine: &Machine, work: &std::path::Path) {
    println!("upcache soak");
    machine.print(work);
    println!(
        "  load      {} clients for {:.0} s (warm-up {:.0} s), no pause between scenarios",
        opts.clients,
        opts.duration.as_secs_f64(),
        opts.warmup().as_secs_f64()
    );
    println!(
        "  inputs    new ones up to {} ({}/s of new bytes at most), {} live inputs kept",
        size(opts.max_input),
        size(opts.new_rate),
        opts.keep
    );
    println!("  mix       {}", opts.mix);
    println!(
        "  binary    {} (defaults, fresh data dir)",
        opts.server_bin.display()
    );
}

fn report(
    opts: &Options,
    stats: &Recorder,
    pool: &Pool,
    [before, warm, end, idle]: [&Sample; 4],
    checks: &[sample::Check],
    peak_rss: u64,
    log: &sample::LogCounts,
) {
    let seconds = opts.duration.as_secs_f64();
    println!();
    println!(
        "requests: {} in {:.0} s ({:.0}/s), {} errors",
        stats.requests(),
        seconds,
        stats.requests() as f64 / seconds,
        stats.errors()
    );
    println!();
    print!("{}", stats.latency_table());
    println!();
    print!("{}", stats.scenario_table());
    println!();
    let rows: Vec<Vec<String>> = [
        ("fresh", before),
        ("warm", warm),
        ("end", end),
        ("drained", idle),
    ]
    .iter()
    .map(|(name, s)| {
        vec![
            name.to_string(),
            format!("{:.0}", s.at.as_secs_f64()),
            size(s.rss),
            size(s.anon),
            size(s.tier),
            s.fds.to_string(),
            s.sockets.to_string(),
            size(s.db),
            size(s.data),
            size(s.inputs),
            size(s.results),
            size(s.staging),
        ]
    })
    .collect();
    print!(
        "{}",
        crate::report::render(
            &[
                "sample", "s", "RSS", "anon", "mem tier", "fds", "sockets", "db", "data", "inputs",
                "results", "staging"
            ],
            &rows
        )
    );
    println!("  server peak RSS (VmHWM) over the run: {}", size(peak_rss));
    println!(
        "  live inputs in the window at the end: {}",
        pool.live_count()
    );
    println!(
        "  inputs/ grew by {} from warm to end; new inputs stored over the whole run: {} — the server keeps every input (DELETE does not remove it), so only this grows",
        size(end.inputs.saturating_sub(warm.inputs)),
        size(pool.stored_new.load(std::sync::atomic::Ordering::Relaxed)),
    );
    println!();
    println!("flat once warm (end vs warm, under load; idle figures after the clients finished)");
    for c in checks {
        println!("{}", c.line());
    }
    println!();
    println!(
        "server log: {} ERROR and {} WARN lines",
        log.errors, log.warnings
    );
    for line in &log.first {
        println!("  {line}");
    }
    let samples = stats.error_samples();
    if !samples.is_empty() {
        println!();
        println!("first errors");
        for s in samples {
            println!("  {s}");
        }
    }
    println!();
    let flat = checks.iter().all(|c| c.ok());
    println!(
        "verdict: {} errors, {}",
        stats.errors(),
        if flat { "flat" } else { "NOT flat" }
    );
}
