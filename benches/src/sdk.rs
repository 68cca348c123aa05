//! The SDK benchmark: how fast the Rust SDK's main call gets a large file
//! into a server over loopback, with 1, 2, 4, 8… parallel streams, and what
//! it costs the client in CPU and memory.
//!
//! The client is the command-line client, `upcache put FILE --op
//! '{"op":"identity"}' --server URL --concurrency N --block-size B`: one call
//! of the SDK's `upcache_client::Client::put_file` in its own process, so
//! that its CPU time and peak RSS are its own (see [`crate::process`]). That
//! call
//!
//! 1. hashes the file block by block (BLAKE3, memory-mapped, all cores):
//!    each block's chaining value, merged into the input's hash — the
//!    stderr line `key …` marks its end;
//! 2. probes the server (`POST /v1/ops`; `uploading N of N blocks`);
//! 3. uploads every block over N connections, each with its chaining value
//!    in `Upload-Block-Hash: cv=…` (checked by the server against the value
//!    it computes anyway: no byte is hashed twice on either side);
//! 4. waits until the entry is complete (identity: as soon as the last block
//!    is in) and exits.
//!
//! Rows, each scenario on a **fresh server** with **its own input**
//! (nothing is ever already there):
//!
//! * **hash only** — `upcache key FILE --op …`, the SDK's hashing alone (no
//!   server), on the input of the headline scenario (4 streams, or the first
//!   in the list);
//! * **(a) PATCH, curl** — the reference: the whole input in one `PATCH` by
//!   curl (the ingest benchmark's scenario (a)), measured as a process the
//!   same way;
//! * **SDK put, N streams** — per stream count. *seconds* is the whole
//!   process; *upload* is the same minus hashing: from the `key` line to the
//!   exit (probe, upload, wait, exit).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use upcache_protocol::status::entry_path;
use upcache_protocol::{Key, Layout, Operation};

use crate::client::{check_stored, create, http_client};
use crate::ingest::curl_patch_args;
use crate::input::Input;
use crate::machine::{self, settle, Machine, SETTLE};
use crate::process::{self, Measured};
use crate::report::{announce, mib_per_s, render, size};
use crate::server::BenchServer;
use crate::Result;

const MIB: f64 = (1u64 << 20) as f64;

/// The client memory budget: this much plus the blocks in flight.
const RSS_BASE: u64 = 64 << 20;

/// The stream count whose figure is compared with curl's.
const HEADLINE_STREAMS: usize = 4;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input size of each scenario.
    pub size: u64,
    /// Block size of the uploads.
    pub block_size: u64,
    /// The stream counts (`--concurrency`) to measure, one scenario each.
    pub streams: Vec<usize>,
    /// How many times each scenario runs, each time on a fresh server.
    pub runs: usize,
    /// The `upcache` binary: the server and the client.
    pub upcache_bin: PathBuf,
    /// Where the inputs and the servers' data go (a temporary directory is
    /// made inside it); it must be on the filesystem being measured.
    pub work_dir: PathBuf,
    /// The curl binary.
    pub curl: PathBuf,
    /// This benchmark's own executable, run as the measuring trampoline
    /// ([`process::TRAMPOLINE_ARG`]).
    pub trampoline: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// `upcache key`: the SDK's hashing of the input, alone.
    HashOnly,
    /// One `PATCH` with curl.
    Curl,
    /// `upcache put --concurrency N`.
    Sdk(usize),
}

impl Scenario {
    fn name(self) -> String {
        match self {
            Self::HashOnly => "hash only: upcache key".into(),
            Self::Curl => "(a) PATCH, curl".into(),
            Self::Sdk(1) => "SDK put, 1 stream".into(),
            Self::Sdk(n) => format!("SDK put, {n} streams"),
        }
    }

    /// The input file's name and its pseudo-random seed (None: another's input).
    fn input(self) -> Option<(String, u64)> {
        match self {
            Self::HashOnly => None,
            Self::Curl => Some(("input-curl.bin".into(), 0xa)),
            Self::Sdk(n) => Some((format!("input-sdk-{n}.bin"), 0x5d_0000 + n as u64)),
        }
    }
}

/// One measured run of one scenario.
#[derive(Debug, Clone)]
struct Row {
    scenario: Scenario,
    label: String,
    bytes: u64,
    /// The client process, start to exit.
    took: Duration,
    /// The upload alone: without the client's hashing (curl: all of it).
    upload: Option<Duration>,
    client_cpu: f64,
    client_rss: u64,
    /// The trampoline's peak RSS when it started the client.
    floor_rss: u64,
    server_rss: Option<u64>,
    server_cpu: Option<f64>,
    busy_before: f64,
    note: String,
}

/// The operation every scenario applies.
fn identity() -> serde_json::Value {
    json!({"op": "identity"})
}

/// Runs the benchmark and prints its report on stdout.
pub async fn run(opts: Options) -> Result<()> {
    if opts.runs == 0 || opts.streams.is_empty() || opts.streams.contains(&0) {
        return Err("--runs and every --streams must be above zero".into());
    }
    let work = crate::prepare(
        "sdk",
        opts.size,
        opts.block_size,
        &opts.upcache_bin,
        &opts.curl,
        &opts.work_dir,
    )
    .await?;
    let machine = Machine::describe(work.path());
    print_header(&opts, &machine, work.path());
    reference_rates(&opts).await?;

    let mut streams = opts.streams.clone();
    streams.dedup();
    let headline = if streams.contains(&HEADLINE_STREAMS) {
        HEADLINE_STREAMS
    } else {
        streams[0]
    };
    let mut scenarios = vec![Scenario::HashOnly, Scenario::Curl];
    scenarios.extend(streams.iter().map(|&n| Scenario::Sdk(n)));
    let width = scenarios.iter().map(|s| s.name().len()).max().unwrap_or(0);

    let mut inputs = Vec::new();
    for &scenario in &scenarios {
        let Some((file, seed)) = scenario.input() else {
            continue;
        };
        let (path, length) = (work.path().join(file), opts.size);
        let input =
            tokio::task::spawn_blocking(move || Input::generate(&path, length, seed)).await??;
        println!(
            "  input of {:<width$}  {} (made in {:.1} s)",
            scenario.name(),
            input.hash,
            input.made_in.as_secs_f64(),
        );
        inputs.push((scenario, input));
    }
    println!();
    let input_of = |s: Scenario| {
        let s = if s == Scenario::HashOnly {
            Scenario::Sdk(headline)
        } else {
            s
        };
        &inputs
            .iter()
            .find(|(i, _)| *i == s)
            .expect("every input made")
            .1
    };

    let mut rows = Vec::new();
    for run in 1..=opts.runs {
        for &scenario in &scenarios {
            let busy = settle().await?;
            let dir = work.path().join(format!("server-{run}-{scenario:?}"));
            let mut row = measure(&opts, scenario, input_of(scenario), &dir).await?;
            row.busy_before = busy;
            if opts.runs > 1 {
                row.label = format!("{} #{run}", row.label);
            }
            announce(&row.label, row.bytes, row.took, width + 3);
            rows.push(row);
        }
    }

    println!();
    println!("results: each client is its own process, timed from its start to its exit");
    println!();
    print!("{}", table(&rows));
    println!();
    summarize(&opts, &machine, &scenarios, headline, &rows);
    Ok(())
}

fn print_header(opts: &Options, machine: &Machine, work: &Path) {
    println!("upcache SDK benchmark");
    machine.print(work);
    println!(
        "  server    {} serve (defaults; a fresh process and data dir per scenario)",
        opts.upcache_bin.display()
    );
    println!(
        "  client    {} put FILE --op '{}' --server URL --concurrency N --block-size {}",
        opts.upcache_bin.display(),
        identity(),
        size(opts.block_size).replace(' ', "")
    );
    println!(
        "  input     {} of pseudo-random bytes per scenario, {} blocks",
        size(opts.size),
        size(opts.block_size)
    );
    println!();
}

/// BLAKE3 on one core: every byte the SDK uploads is hashed once on the
/// client (block by block, on all cores) and once on the server.
async fn reference_rates(opts: &Options) -> Result<()> {
    let (sz, bs) = (opts.size, opts.block_size as usize);
    println!("reference rate, one thread, on this machine              busy before");
    let busy = settle().await?;
    let took = tokio::task::spawn_blocking(move || machine::blake3_one_core(sz, bs)).await?;
    println!(
        "  {:<44} {:>6.0} MiB/s  {:>8.0}%",
        format!("BLAKE3 on one core, {} updates", size(bs as u64)),
        mib_per_s(sz, took),
        busy * 100.0
    );
    println!();
    Ok(())
}

/// One scenario; `put` and curl on a fresh server.
async fn measure(opts: &Options, scenario: Scenario, input: &Input, dir: &Path) -> Result<Row> {
    let key = Key::derive(&input.hash, &Operation::parse(&identity())?);
    let path: OsString = input.path.clone().into();
    let mut row = Row {
        scenario,
        label: scenario.name(),
        bytes: input.length,
        took: Duration::ZERO,
        upload: None,
        client_cpu: 0.0,
        client_rss: 0,
        floor_rss: 0,
        server_rss: None,
        server_cpu: None,
        busy_before: 0.0,
        note: String::new(),
    };
    if scenario == Scenario::HashOnly {
        let args = [
            "key".into(),
            path,
            "--op".into(),
            identity().to_string().into(),
        ];
        let m = run_client(opts, &opts.upcache_bin, &args).await?;
        if m.stdout.trim() != key.to_hex() {
            return Err(format!("upcache key printed {:?}, not {key}", m.stdout.trim()).into());
        }
        fill(&mut row, &m);
        row.note = "BLAKE3 of the file, memory-mapped, all cores".into();
        return Ok(row);
    }

    let server = BenchServer::start(&opts.upcache_bin, dir)?;
    let base = server.base_url();
    let client = http_client(1)?;
    if scenario == Scenario::Curl {
        let status = create(&client, &base, input, opts.block_size).await?;
        let url = format!("{base}{}", entry_path(&status.key));
        let m = run_client(opts, &opts.curl, &curl_patch_args(&url, input)).await?;
        if m.stdout != "204" {
            return Err(format!("curl PATCH: HTTP {:?}: {}", m.stdout, m.stderr_text()).into());
        }
        fill(&mut row, &m);
        row.upload = Some(m.wall);
        let after = check_stored(&client, &base, &status.key, input).await?;
        row.note = format!("curl -T FILE -X PATCH; then {}", after.as_str());
    } else {
        let Scenario::Sdk(streams) = scenario else {
            unreachable!("hash only returned above")
        };
        let args: Vec<OsString> = vec![
            "put".into(),
            path,
            "--op".into(),
            identity().to_string().into(),
            "--server".into(),
            base.clone().into(),
            "--concurrency".into(),
            streams.to_string().into(),
            "--block-size".into(),
            opts.block_size.to_string().into(),
        ];
        let m = run_client(opts, &opts.upcache_bin, &args).await?;
        row.note = check_put(&m, &key, input, opts.block_size)?;
        fill(&mut row, &m);
        row.upload = m.line("key ").map(|l| m.wall.saturating_sub(l.at));
        let after = check_stored(&client, &base, &key, input).await?;
        row.note = format!("{}; then {}", row.note, after.as_str());
    }
    let usage = server.usage()?;
    row.server_rss = Some(usage.peak_rss);
    row.server_cpu = Some(usage.cpu_seconds);
    server.stop()?;
    Ok(row)
}

/// Runs a client through the trampoline; it must exit with 0.
async fn run_client(opts: &Options, program: &Path, args: &[OsString]) -> Result<Measured> {
    let m = process::measure(&opts.trampoline, program, args).await?;
    if m.exit != 0 {
        return Err(format!(
            "{} exited with {}: {}",
            program.display(),
            m.exit,
            m.stderr_text()
        )
        .into());
    }
    Ok(m)
}

fn fill(row: &mut Row, m: &Measured) {
    row.took = m.wall;
    row.client_cpu = m.cpu_seconds;
    row.client_rss = m.peak_rss;
    row.floor_rss = m.floor_rss;
}

/// Checks what `upcache put` said on stderr — the right key, every block
/// missing at the probe (a fresh server), the whole input sent once.
/// Returns the note:
/// the hashing phase's time, CPU and peak RSS.
fn check_put(m: &Measured, key: &Key, input: &Input, block_size: u64) -> Result<String> {
    let hashed = m
        .line("key ")
        .ok_or_else(|| format!("upcache put printed no key line: {}", m.stderr_text()))?;
    if hashed.text.trim_start_matches("key ").trim() != key.to_hex() {
        return Err(format!("upcache put: {:?}, expected key {key}", hashed.text).into());
    }
    let blocks = Layout::new(input.length, block_size, u64::MAX)?.blocks();
    let probed = format!("uploading {blocks} of {blocks} blocks");
    if m.line(&probed).is_none() {
        return Err(format!(
            "upcache put did not start with every block missing ({probed:?} expected): {}",
            m.stderr_text()
        )
        .into());
    }
    let sent: u64 = m
        .line("uploaded ")
        .and_then(|l| l.text.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| {
            format!(
                "upcache put printed no `uploaded N bytes`: {}",
                m.stderr_text()
            )
        })?;
    let mut note = format!(
        "hash {:.2} s, {:.2} CPU s, {:.1} MiB",
        hashed.at.as_secs_f64(),
        hashed.cpu_seconds,
        hashed.peak_rss as f64 / MIB
    );
    if sent != input.length {
        note.push_str(&format!("; sent {sent} bytes (retries)"));
    }
    Ok(note)
}

fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "MiB/s",
        "seconds",
        "upload MiB/s",
        "upload s",
        "client CPU s",
        "client peak RSS MiB",
        "server peak RSS MiB",
        "server CPU s",
        "busy before",
        "note",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                format!("{:.0}", mib_per_s(r.bytes, r.took)),
                format!("{:.3}", r.took.as_secs_f64()),
                r.upload
                    .map_or("-".into(), |u| format!("{:.0}", mib_per_s(r.bytes, u))),
                r.upload
                    .map_or("-".into(), |u| format!("{:.3}", u.as_secs_f64())),
                format!("{:.2}", r.client_cpu),
                format!("{:.1}", r.client_rss as f64 / MIB),
                r.server_rss
                    .map_or("-".into(), |b| format!("{:.1}", b as f64 / MIB)),
                r.server_cpu.map_or("-".into(), |c| format!("{c:.2}")),
                format!("{:.0}%", r.busy_before * 100.0),
                r.note.clone(),
            ]
        })
        .collect();
    render(&header, &cells)
}

/// The median of `f` over the rows of `scenario`.
fn median(rows: &[Row], scenario: Scenario, f: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = rows
        .iter()
        .filter(|r| r.scenario == scenario)
        .filter_map(f)
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The lines under the table: SDK vs curl, the memory budget, how to read it.
fn summarize(
    opts: &Options,
    machine: &Machine,
    scenarios: &[Scenario],
    headline: usize,
    rows: &[Row],
) {
    let whole = |r: &Row| Some(mib_per_s(r.bytes, r.took));
    let upload = |r: &Row| r.upload.map(|u| mib_per_s(r.bytes, u));
    let medians = if opts.runs > 1 {
        "medians of MiB/s, "
    } else {
        ""
    };
    let curl = median(rows, Scenario::Curl, whole).unwrap_or(f64::NAN);
    println!(
        "SDK put / (a) PATCH, curl ({medians}the issue's target: {HEADLINE_STREAMS} streams ≥ 1.00)"
    );
    let mut lines = vec![];
    for &s in scenarios {
        let Scenario::Sdk(n) = s else { continue };
        let peak = rows
            .iter()
            .filter(|r| r.scenario == s)
            .map(|r| r.client_rss)
            .max()
            .unwrap_or(0);
        let budget = RSS_BASE + n as u64 * opts.block_size;
        lines.push(vec![
            format!("{n}{}", if n == headline { " *" } else { "" }),
            format!("{:.2}", median(rows, s, whole).unwrap_or(f64::NAN) / curl),
            format!("{:.2}", median(rows, s, upload).unwrap_or(f64::NAN) / curl),
            format!("{:.1}", peak as f64 / MIB),
            format!("{:.0}", budget as f64 / MIB),
            if peak <= budget { "within" } else { "over" }.into(),
        ]);
    }
    print!(
        "{}",
        indent(&render(
            &[
                "streams",
                "whole put / curl",
                "upload only / curl",
                "client peak RSS MiB",
                "budget MiB",
                "peak vs budget",
            ],
            &lines,
        ))
    );
    println!(
        "  budget: {} MiB + streams × {} blocks (the issue's target for the client's peak RSS)",
        RSS_BASE >> 20,
        size(opts.block_size)
    );
    println!("  load avg after the run: {}", machine::load_average());
    println!();
    println!("  seconds      the client process from its start to its exit (start-up included);");
    println!("               for put: hash, probe, upload, wait until complete");
    println!("  MiB/s        input size / seconds");
    println!("  upload       put without its hashing: from the stderr line `key …` (hash done) to");
    println!("               the exit; curl: the whole process");
    println!("  client CPU   user + system seconds of the client process (wait4), all threads;");
    println!("               put hashes every byte once: block by block, before the probe");
    println!("  client RSS   ru_maxrss of the client process (wait4); it includes the launching");
    println!(
        "               trampoline's own peak, {:.1} MiB at most here",
        rows.iter().map(|r| r.floor_rss).max().unwrap_or(0) as f64 / MIB
    );
    println!(
        "  server RSS   VmHWM of the scenario's server over its life (start, upload, result check)"
    );
    println!(
        "  busy before  share of all CPUs busy in the {} s pause before the phase, while nothing",
        SETTLE.as_secs()
    );
    println!("               of the benchmark runs: other work on the machine (should be ~0%)");
    println!("  note (put)   when hashing ended, the client's CPU seconds and peak RSS by then");
    println!("  then ...     the entry's state after the client is done");
    println!(
        "  all clients and servers share the machine's {} CPUs",
        machine.cpus
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
