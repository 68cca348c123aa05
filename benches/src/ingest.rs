//! The ingest benchmark: how fast one large input gets into the server,
//! durably and verified, over loopback.
//!
//! * **(a) PATCH, curl** — one `PATCH` of the whole input from offset 0,
//!   sent by `curl -T FILE -X PATCH` (curl streams the file; it was just
//!   written, so it comes from the page cache).
//! * **(b) blocks** — `PUT /v1/ops/{key}/blocks/{n}` over several HTTP/1.1
//!   connections at once; each stream takes the next block index from a
//!   shared counter, reads the block with `pread` and sends it with its BLAKE3
//!   in `Upload-Block-Hash`. That client-side reading and hashing runs on the
//!   same cores as the server and is part of the time.
//!
//! * **the disk's reference**, `dd oflag=direct conv=fdatasync` of the same
//!   input to the same filesystem, just before and just after every (a): the
//!   disk's rate swings between consecutive runs, so the summary compares
//!   medians over all runs (`(a) / dd`), and each (a) with its own two `dd`s.
//!
//! Each scenario has its own input (different pseudo-random bytes) and its own
//! fresh server, so nothing is deduplicated and the peak RSS is per scenario.
//! The clock runs from just before the first request (in (b), before the
//! first block is read) to the last `204`, which
//! the server sends only once every block is durable (fdatasync + metadata
//! flush) and the whole input has been verified against its BLAKE3.

use bytes::BytesMut;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{header, Client, StatusCode};
use upcache_protocol::headers as h;
use upcache_protocol::status::{block_path, entry_path};
use upcache_protocol::{Key, Layout};

use crate::client::{check_stored, create, http_client};
use crate::input::Input;
use crate::machine::{self, settle, Machine, SETTLE};
use crate::report::{self, announce, mib_per_s, size, Row};
use crate::server::BenchServer;
use crate::Result;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input size of each scenario.
    pub size: u64,
    /// Block size of the uploads (and of the per-block fdatasync baseline).
    pub block_size: u64,
    /// Concurrent streams of scenario (b).
    pub streams: usize,
    /// Only scenario (a) and its `dd` rows.
    pub patch_only: bool,
    /// How many times each scenario runs, each time on a fresh server.
    pub runs: usize,
    /// The `upcache` binary.
    pub server_bin: PathBuf,
    /// Where the inputs and the servers' data go (a temporary directory is
    /// made inside it); it must be on the filesystem being measured.
    pub work_dir: PathBuf,
    /// The curl binary.
    pub curl: PathBuf,
}

/// The upload scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Patch,
    /// Parallel blocks; with `true`, each carries `Upload-Block-Hash`, which
    /// the client computes and the server checks (a second hash per byte).
    Blocks(bool),
}

impl Scenario {
    const ALL: [Scenario; 3] = [
        Scenario::Patch,
        Scenario::Blocks(false),
        Scenario::Blocks(true),
    ];

    fn name(self, opts: &Options) -> String {
        match self {
            Self::Patch => "(a) PATCH, curl".into(),
            Self::Blocks(hashed) => format!(
                "(b{}) {} blocks, {} streams{}",
                if hashed { "+" } else { "" },
                size(opts.block_size),
                opts.streams,
                if hashed { ", block hashes" } else { "" }
            ),
        }
    }

    /// The input file's name and its pseudo-random seed: one per scenario.
    fn input(self) -> (&'static str, u64) {
        match self {
            Self::Patch => ("input-a.bin", 0xa),
            Self::Blocks(false) => ("input-b.bin", 0xb),
            Self::Blocks(true) => ("input-c.bin", 0xc),
        }
    }
}

/// Runs the benchmark and prints its report on stdout.
pub async fn run(opts: Options) -> Result<()> {
    if opts.streams == 0 || opts.runs == 0 {
        return Err("--streams and --runs must be above zero".into());
    }
    let work = crate::prepare(
        "ingest",
        opts.size,
        opts.block_size,
        &opts.server_bin,
        &opts.curl,
        &opts.work_dir,
    )
    .await?;
    let machine = Machine::describe(work.path());
    print_header(&opts, &machine, work.path());
    reference_rates(&opts, work.path()).await?;

    let mut inputs = Vec::new();
    for scenario in scenarios(&opts) {
        let (file, seed) = scenario.input();
        let (path, length) = (work.path().join(file), opts.size);
        let input =
            tokio::task::spawn_blocking(move || Input::generate(&path, length, seed)).await??;
        println!(
            "  input of {:<width$}  {} (made in {:.1} s)",
            scenario.name(&opts),
            input.hash,
            input.made_in.as_secs_f64(),
            width = name_width(&opts)
        );
        inputs.push((scenario, input));
    }
    println!();

    // Every PATCH runs between two `dd`s: the disk's own durable rate for
    // the same bytes, just before and just after, so that a slow or fast
    // spell of this (shared, often virtual) disk weighs on both sides.
    let mut rows = Vec::new();
    for run in 1..=opts.runs {
        for (scenario, input) in &inputs {
            if *scenario == Scenario::Patch {
                rows.push(dd_row(&opts, &inputs[0].1, work.path(), run, "before (a)").await?);
            }
            let busy = settle().await?;
            let dir = work.path().join(format!("server-{run}-{scenario:?}"));
            let mut row = measure(&opts, *scenario, input, &dir).await?;
            row.busy_before = busy;
            if opts.runs > 1 {
                row.scenario = format!("{} #{run}", row.scenario);
            }
            announce(&row.scenario, row.bytes, row.took, name_width(&opts) + 3);
            rows.push(row);
            if *scenario == Scenario::Patch {
                rows.push(dd_row(&opts, &inputs[0].1, work.path(), run, "after (a)").await?);
            }
        }
    }

    println!();
    println!("results: time from the first request to the last 204 (every block durable, the input verified)");
    println!();
    print!("{}", report::table(&rows));
    println!();
    summarize(&opts, &machine, &rows);
    Ok(())
}

/// The scenarios to run.
fn scenarios(opts: &Options) -> Vec<Scenario> {
    if opts.patch_only {
        vec![Scenario::Patch]
    } else {
        Scenario::ALL.to_vec()
    }
}

/// One `dd` reference row of run `run`, after the usual pause.
async fn dd_row(opts: &Options, input: &Input, work: &Path, run: usize, when: &str) -> Result<Row> {
    let busy = settle().await?;
    let mut row = dd_direct(input, work).await?;
    row.busy_before = busy;
    if opts.runs > 1 {
        row.scenario = format!("{} #{run}", row.scenario);
    }
    row.note = format!("{when}; {}", row.note);
    announce(&row.scenario, row.bytes, row.took, name_width(opts) + 3);
    Ok(row)
}

fn name_width(opts: &Options) -> usize {
    Scenario::ALL
        .iter()
        .map(|s| s.name(opts).len())
        .max()
        .unwrap_or(0)
}

fn print_header(opts: &Options, machine: &Machine, work: &Path) {
    println!("upcache ingest benchmark");
    machine.print(work);
    println!(
        "  server    {} (defaults; a fresh process and data dir per scenario)",
        opts.server_bin.display()
    );
    println!(
        "  input     {} of pseudo-random bytes per scenario, identity operation, {} blocks",
        size(opts.size),
        size(opts.block_size)
    );
    println!();
}

/// The machine's own rates, on one thread, for the work every ingested byte
/// needs. Reference points rather than hard ceilings: the server overlaps
/// writing, syncing and hashing across threads.
async fn reference_rates(opts: &Options, work: &Path) -> Result<()> {
    let (sz, bs) = (opts.size, opts.block_size);
    let line = |what: String, took: Duration, busy: f64| {
        println!(
            "  {what:<44} {:>6.0} MiB/s  {:>8.0}%",
            mib_per_s(sz, took),
            busy * 100.0
        )
    };
    println!("reference rates, one thread, on this machine and filesystem busy before");
    let busy = settle().await?;
    let dir = work.to_path_buf();
    let took =
        tokio::task::spawn_blocking(move || machine::disk_write(&dir, sz, bs as usize, u64::MAX))
            .await??;
    line(
        format!("disk: write {}, one fdatasync at the end", size(sz)),
        took,
        busy,
    );
    let busy = settle().await?;
    let dir = work.to_path_buf();
    let took = tokio::task::spawn_blocking(move || machine::disk_write(&dir, sz, bs as usize, bs))
        .await??;
    line(
        format!("disk: write {}, fdatasync every {}", size(sz), size(bs)),
        took,
        busy,
    );
    let busy = settle().await?;
    let took = tokio::task::spawn_blocking(move || machine::first_touch(sz)).await?;
    line(
        format!("memory: first touch of {} of fresh pages", size(sz)),
        took,
        busy,
    );
    let took = tokio::task::spawn_blocking(move || machine::blake3_one_core(sz, 64 << 10)).await?;
    line("BLAKE3 on one core, 64 KiB updates".into(), took, busy);
    println!();
    Ok(())
}

/// The label of the reference row.
const DD: &str = "dd oflag=direct conv=fdatasync";

/// Copies the input with `dd` to a file on the same filesystem, with
/// O_DIRECT writes of 1 MiB and one fdatasync: what the disk gives a program
/// that neither hashes nor keeps the bytes in the page cache.
async fn dd_direct(input: &Input, work: &Path) -> Result<Row> {
    let out = work.join("dd.out");
    let started = std::time::Instant::now();
    let status = tokio::process::Command::new("dd")
        .arg(format!("if={}", input.path.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "oflag=direct", "conv=fdatasync", "status=none"])
        .status()
        .await?;
    let took = started.elapsed();
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return Err(format!("dd failed: {status}").into());
    }
    Ok(Row {
        scenario: DD.into(),
        bytes: input.length,
        took,
        peak_rss: 0,
        server_cpu: 0.0,
        busy_before: 0.0,
        note: "reference: the disk, no server; reads the input from the page cache".into(),
    })
}

/// One scenario on a fresh server.
async fn measure(opts: &Options, scenario: Scenario, input: &Input, dir: &Path) -> Result<Row> {
    let server = BenchServer::start(&opts.server_bin, dir)?;
    let base = server.base_url();
    let client = http_client(opts.streams)?;
    let status = create(&client, &base, input, opts.block_size).await?;
    let (took, note) = match scenario {
        Scenario::Patch => (
            upload_patch(opts, &format!("{base}{}", entry_path(&status.key)), input).await?,
            "curl -T FILE -X PATCH".into(),
        ),
        Scenario::Blocks(hashed) => {
            let layout = Layout::new(input.length, opts.block_size, u64::MAX)?;
            let (took, client_cpu) = upload_blocks(
                &client,
                &base,
                status.key,
                input,
                layout,
                opts.streams,
                hashed,
            )
            .await?;
            let what = if hashed { "pread + BLAKE3" } else { "pread" };
            (
                took,
                format!("client {what}: {:.2} s, included", client_cpu.as_secs_f64()),
            )
        }
    };
    let after = check_stored(&client, &base, &status.key, input).await?;
    let usage = server.usage()?;
    server.stop()?;
    Ok(Row {
        scenario: scenario.name(opts),
        bytes: input.length,
        took,
        peak_rss: usage.peak_rss,
        server_cpu: usage.cpu_seconds,
        note: format!("{note}; then {}", after.as_str()),
        busy_before: 0.0,
    })
}

/// Fails unless `curl --version` runs.
pub async fn check_curl(curl: &Path) -> Result<()> {
    let out = tokio::process::Command::new(curl)
        .arg("--version")
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(format!("{} does not run; install curl", curl.display()).into()),
    }
}

/// The arguments of scenario (a)'s curl: the whole input in one `PATCH`
/// from offset 0 to `url` (the entry), streamed from the file; curl prints
/// only the HTTP status code.
pub fn curl_patch_args(url: &str, input: &Input) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-sS", "--noproxy", "*", "-X", "PATCH", "-H"]
        .map(OsString::from)
        .into();
    args.push(format!("{}: {}", header::CONTENT_TYPE, h::OFFSET_OCTET_STREAM).into());
    args.push("-H".into());
    args.push(format!("{}: 0", h::UPLOAD_OFFSET).into());
    args.push("-T".into());
    args.push(input.path.clone().into());
    args.extend(["-o", "/dev/null", "-w", "%{http_code}", url].map(OsString::from));
    args
}

/// Scenario (a): the whole input in one `PATCH`, sent by curl.
async fn upload_patch(opts: &Options, url: &str, input: &Input) -> Result<Duration> {
    let started = Instant::now();
    let out = tokio::process::Command::new(&opts.curl)
        .args(curl_patch_args(url, input))
        .output()
        .await?;
    let took = started.elapsed();
    let code = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || code != "204" {
        return Err(format!(
            "curl PATCH: {} (HTTP {code}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(took)
}

/// Scenario (b): every block over `streams` connections. Returns the time
/// to the last `204` and the client's time spent reading and hashing blocks.
async fn upload_blocks(
    client: &Client,
    base: &str,
    key: Key,
    input: &Input,
    layout: Layout,
    streams: usize,
    hashed: bool,
) -> Result<(Duration, Duration)> {
    let file = Arc::new(std::fs::File::open(&input.path)?);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (client, file, next) = (client.clone(), file.clone(), next.clone());
        let base = base.to_owned();
        tasks.spawn(async move {
            let mut hashing = Duration::ZERO;
            // One block buffer per stream, reclaimed once the previous request
            // has dropped its body: no fresh 8 MiB allocation per block.
            let mut buf = BytesMut::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= layout.blocks() {
                    return Ok::<_, crate::Error>(hashing);
                }
                let range = layout.range(n);
                let file = file.clone();
                let len = (range.end - range.start) as usize;
                buf.reserve(len);
                buf.resize(len, 0);
                let (filled, hash, took) = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, range.start)?;
                    let hash = hashed.then(|| blake3::hash(&buf));
                    Ok::<_, std::io::Error>((buf, hash, t.elapsed()))
                })
                .await??;
                buf = filled;
                let bytes = buf.split().freeze();
                hashing += took;
                let mut req = client.put(format!("{base}{}", block_path(&key, n)));
                if let Some(hash) = hash {
                    req = req.header(h::UPLOAD_BLOCK_HASH, hash.to_hex().as_str());
                }
                let resp = req.body(bytes).send().await?;
                if resp.status() != StatusCode::NO_CONTENT {
                    let code = resp.status();
                    return Err(format!(
                        "PUT block {n}: {code}: {}",
                        resp.text().await.unwrap_or_default()
                    )
                    .into());
                }
            }
        });
    }
    let mut hashing = Duration::ZERO;
    while let Some(joined) = tasks.join_next().await {
        hashing += joined??;
    }
    Ok((started.elapsed(), hashing))
}

/// The lines under the table: medians over several runs, and how to read it.
fn summarize(opts: &Options, machine: &Machine, rows: &[Row]) {
    let rate = |r: &Row| mib_per_s(r.bytes, r.took);
    let mut medians = Vec::new();
    let names: Vec<String> = std::iter::once(DD.to_owned())
        .chain(scenarios(opts).into_iter().map(|s| s.name(opts)))
        .collect();
    for name in names {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.scenario.starts_with(&name))
            .collect();
        let median = median(mine.iter().map(|r| rate(r)).collect());
        if mine.len() > 1 {
            let peak = mine.iter().map(|r| r.peak_rss).max().unwrap_or(0);
            let peak = if peak > 0 {
                format!(
                    ", highest peak RSS {:.1} MiB",
                    peak as f64 / (1u64 << 20) as f64
                )
            } else {
                String::new()
            };
            println!(
                "  {name}: median {median:.0} MiB/s over {} runs{peak}",
                mine.len(),
            );
        }
        medians.push(median);
    }
    // Each PATCH against the mean of the two dd rows around it.
    let patch = Scenario::Patch.name(opts);
    let paired: Vec<f64> = rows
        .windows(3)
        .filter(|w| w[1].scenario.starts_with(&patch))
        .map(|w| rate(&w[1]) / ((rate(&w[0]) + rate(&w[2])) / 2.0))
        .collect();
    println!(
        "  (a) / dd: {:.2} (ratio of the medians); each (a) against its two dd: {} (median {:.2})",
        medians[1] / medians[0],
        paired
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" "),
        median(paired.clone()),
    );
    if !opts.patch_only {
        println!(
            "  (b) / (a): {:.2}   (b+) / (a): {:.2}",
            medians[2] / medians[1],
            medians[3] / medians[1]
        );
    }
    println!("  load avg after the run: {}", machine::load_average());
    println!();
    println!("  MiB/s       input size / seconds");
    println!("  peak RSS    VmHWM of the server process over its whole life (start, upload, result check)");
    println!(
        "  server CPU  user + system seconds of the server process; the clients (curl, or this"
    );
    println!(
        "              program reading and hashing blocks) run on the same {} CPUs",
        machine.cpus
    );
    println!(
        "  busy before share of all CPUs busy in the {} s pause before the phase, while this",
        SETTLE.as_secs()
    );
    println!(
        "              program and its servers are idle: other work on the machine (should be ~0%)"
    );
    println!("  then ...    the entry's state right after the upload (processing or complete)");
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
