//! The client subcommands of the `upcache` binary: `put`, `key`, `status`,
//! `get`, `rm` (and, in [`crate::token`], `token`). They drive the server
//! through the Rust SDK.
//!
//! Exit codes: 0 success, 2 usage error (bad flags, invalid operation JSON),
//! 3 the server refused (a problem document), 4 network failure, 5 not ready
//! (`get --wait` ran out), 6 admin key refused (`purge`), 1 anything else
//! (local files).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use upcache_client::{Client, Error, Event, Key, Options, ProblemType, State};

pub const EXIT_OTHER: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_NETWORK: u8 = 4;
pub const EXIT_NOT_READY: u8 = 5;
pub const EXIT_AUTH: u8 = 6;

/// Where the server is, for every client subcommand.
#[derive(Args, Clone)]
pub(crate) struct Remote {
    /// Server URL
    #[arg(long, env = "UPCACHE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key, sent as a bearer token
    #[arg(long, env = "UPCACHE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep retrying failed requests for up to SECS seconds without progress
    /// [default: 12 failures in a row, at most 300 s]
    #[arg(long, value_name = "SECS")]
    retry_for: Option<u64>,
    /// Image formats this client takes, as an Accept header: an operation with
    /// "format":"auto" becomes the best of them (AVIF, WebP, else JPEG or PNG)
    #[arg(long, env = "UPCACHE_ACCEPT", default_value = upcache_client::accept::ALL_IMAGES)]
    accept: String,
}

impl Remote {
    /// The server's URL.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// SDK options for this server: the token and the retry budget.
    pub(crate) fn options(&self) -> Options {
        let mut options = Options {
            bearer_token: self.token.clone(),
            accept: self.accept.clone(),
            ..Options::default()
        };
        if let Some(secs) = self.retry_for {
            // Time alone bounds the retries.
            options.retry.max_elapsed = Duration::from_secs(secs);
            options.retry.max_attempts = u32::MAX;
        }
        options
    }
}

#[derive(Args)]
pub struct PutArgs {
    /// The input file
    file: PathBuf,
    /// The operation, as JSON (e.g. '{"op":"image.thumbnail","width":400,"height":400}')
    #[arg(long)]
    op: String,
    /// Write the result here (otherwise its URL is printed)
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Parallel block uploads
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Block size for a new upload, e.g. 8MiB
    #[arg(long)]
    block_size: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct KeyArgs {
    /// The input file
    file: PathBuf,
    /// The operation, as JSON
    #[arg(long)]
    op: String,
    /// Image formats the client takes, as an Accept header (see `put --accept`)
    #[arg(long, env = "UPCACHE_ACCEPT", default_value = upcache_client::accept::ALL_IMAGES)]
    accept: String,
}

#[derive(Args)]
pub struct KeyOnly {
    /// The entry's key (64 hex digits)
    key: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args)]
pub struct GetArgs {
    /// The entry's key (64 hex digits)
    key: String,
    /// Write the result here ('-' for standard output)
    #[arg(short, long)]
    output: PathBuf,
    /// Seconds to wait for the result to be ready
    #[arg(long, default_value_t = 0)]
    wait: u64,
    #[command(flatten)]
    remote: Remote,
}

/// A failure to report: the message, a hint, and the exit code.
pub(crate) struct Failure {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
            hint: None,
        }
    }
}

impl Failure {
    /// The same failure with another exit code and hint.
    pub(crate) fn with_code(mut self, code: u8, hint: impl Into<String>) -> Self {
        self.code = code;
        self.hint = Some(hint.into());
        self
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        if let Error::Operation(op) = &e {
            return Self::usage(format!("invalid --op: {op}"));
        }
        let code = if e.is_network() {
            EXIT_NETWORK
        } else if e.problem().is_some() {
            EXIT_REFUSED
        } else {
            EXIT_OTHER
        };
        let hint = match e.problem().and_then(|p| p.kind()) {
            Some(ProblemType::NotFound) => {
                Some("no entry has this key: check it, or upload with `upcache put`".into())
            }
            Some(ProblemType::Unauthorized) => {
                Some("pass an API key with --token or UPCACHE_TOKEN".into())
            }
            Some(ProblemType::TokenNotAllowed) => {
                Some("minting needs an API key (--token or UPCACHE_TOKEN), not a token".into())
            }
            Some(ProblemType::DiskCapExceeded) => {
                Some("the server's disk_cap has no room for this input now".into())
            }
            Some(ProblemType::InputTooLarge) => {
                Some("the server's max_input_size is below this file's size".into())
            }
            Some(ProblemType::InvalidImage | ProblemType::ImageTooLarge) => {
                Some("the input cannot be used with this image operation".into())
            }
            _ if e.is_network() => {
                Some("is the server running and reachable? set --server or UPCACHE_SERVER".into())
            }
            _ => None,
        };
        let message = match e.problem() {
            Some(p) => format!(
                "the server refused: {}{}",
                p.title,
                p.detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            None => e.to_string(),
        };
        Self {
            code,
            message,
            hint,
        }
    }
}

pub(crate) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("upcache: {}", f.message);
            if let Some(hint) = f.hint {
                eprintln!("  hint: {hint}");
            }
            ExitCode::from(f.code)
        }
    }
}

fn client(remote: &Remote, concurrency: usize, block_size: Option<u64>) -> Result<Client, Failure> {
    let options = Options {
        concurrency,
        block_size,
        ..remote.options()
    };
    Client::with_options(&remote.server, options).map_err(Failure::from)
}

fn operation(json: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::usage(format!("--op is not JSON: {e}")))
}

pub(crate) fn key(text: &str) -> Result<Key, Failure> {
    text.trim()
        .parse()
        .map_err(|_| Failure::usage(format!("{text:?} is not a key: keys are 64 hex digits")))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
}

/// Progress on a terminal: a bar for hashing, then one for uploading with
/// rate and ETA. Elsewhere: a plain line per phase.
fn reporter() -> upcache_client::ProgressFn {
    let tty = std::io::stderr().is_terminal();
    let bar: Arc<Mutex<Option<(ProgressBar, &'static str)>>> = Arc::default();
    Arc::new(move |event: &Event| {
        let mut bar = bar.lock().expect("progress lock");
        let show = |b: &mut Option<(ProgressBar, &'static str)>,
                    phase: &'static str,
                    total: u64|
         -> ProgressBar {
            if b.as_ref().is_none_or(|(_, p)| *p != phase) {
                if let Some((old, _)) = b.take() {
                    old.finish_and_clear();
                }
                let pb = ProgressBar::new(total);
                pb.set_style(
                    ProgressStyle::with_template(&format!(
                        "{phase:>9} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
                    ))
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                *b = Some((pb, phase));
            }
            b.as_ref().expect("just set").0.clone()
        };
        match event {
            Event::Hashing { done, total } if tty => {
                show(&mut bar, "hashing", *total).set_position(*done)
            }
            Event::Uploading { stored, total, .. } if tty => {
                show(&mut bar, "uploading", *total).set_position(*stored)
            }
            Event::Hashed { key, .. } if !tty => eprintln!("key {key}"),
            Event::Probed {
                state,
                blocks_missing,
                blocks_total,
            } => {
                if let Some((b, _)) = bar.take() {
                    b.finish_and_clear();
                }
                match state {
                    State::Uploading => {
                        eprintln!("uploading {blocks_missing} of {blocks_total} blocks")
                    }
                    State::Processing if !tty => eprintln!("processing"),
                    _ => {}
                }
            }
            Event::Retrying {
                attempt,
                delay,
                error,
            } => {
                if let Some((b, _)) = bar.as_ref() {
                    b.println(format!("retry {attempt} in {delay:.1?}: {error}"));
                } else {
                    eprintln!("retry {attempt} in {delay:.1?}: {error}");
                }
            }
            Event::Complete { .. } => {
                if let Some((b, _)) = bar.take() {
                    b.finish_and_clear();
                }
            }
            _ => {}
        }
    })
}

/// `upcache put FILE --op JSON`
pub fn put(args: PutArgs) -> ExitCode {
    finish(runtime().block_on(async {
        let op = operation(&args.op)?;
        let block_size = match &args.block_size {
            Some(s) => Some(
                s.parse::<bytesize::ByteSize>()
                    .map_err(|e| Failure::usage(format!("--block-size: {e}")))?
                    .as_u64(),
            ),
            None => None,
        };
        if args.concurrency == 0 {
            return Err(Failure::usage("--concurrency must be at least 1"));
        }
        let client = client(&args.remote, args.concurrency, block_size)?;
        let done = client
            .put_file_with(&args.file, &op, Some(reporter()))
            .await
            .map_err(|e| match e {
                Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Failure {
                    code: EXIT_OTHER,
                    message: format!("{}: no such file", args.file.display()),
                    hint: None,
                },
                other => other.into(),
            })?;
        let result = done
            .status
            .result
            .as_ref()
            .ok_or_else(|| Failure::from(Error::Protocol("no result".into())))?;
        if done.hit {
            eprintln!("hit: the result was already there; nothing uploaded");
        } else {
            eprintln!("uploaded {} bytes", done.bytes_sent);
        }
        match &args.output {
            Some(path) => {
                done.save(path).await?;
                eprintln!(
                    "wrote {} ({} bytes, {})",
                    path.display(),
                    result.length,
                    result.content_type
                );
            }
            None => println!("{}{}", args.remote.server.trim_end_matches('/'), result.url),
        }
        Ok(())
    }))
}

/// `upcache key FILE --op JSON`
pub fn key_cmd(args: KeyArgs) -> ExitCode {
    finish(runtime().block_on(async {
        let op = operation(&args.op)?;
        let key = upcache_client::key_of_file_accepting(&args.file, &op, &args.accept).await?;
        println!("{key}");
        Ok(())
    }))
}

/// `upcache status KEY`
pub fn status(args: KeyOnly) -> ExitCode {
    finish(runtime().block_on(async {
        let key = key(&args.key)?;
        let status = client(&args.remote, 1, None)?.status(&key).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
        Ok(())
    }))
}

/// `upcache get KEY -o OUT [--wait SECS]`
pub fn get(args: GetArgs) -> ExitCode {
    finish(runtime().block_on(async {
        let key = key(&args.key)?;
        let mut options = args.remote.options();
        options.wait_per_request = Duration::from_secs(args.wait.clamp(1, 300));
        let client = Client::with_options(&args.remote.server, options)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait);
        let status = loop {
            let status = client.status(&key).await?;
            match status.state {
                State::Complete => break status,
                State::Failed => {
                    let p = status.error.clone().unwrap_or_else(|| {
                        upcache_client::Problem::new(ProblemType::OperationFailed, "failed")
                    });
                    return Err(Error::Problem {
                        status: p.status,
                        problem: Box::new(p),
                    }
                    .into());
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Failure {
                        code: EXIT_NOT_READY,
                        message: format!(
                            "the result is not ready (the entry is {})",
                            status.state.as_str()
                        ),
                        hint: Some("wait longer with --wait SECS".into()),
                    })
                }
                _ => {
                    if let Some(done) = client.wait_once(&key).await? {
                        break done;
                    }
                }
            }
        };
        if args.output.as_os_str() == "-" {
            client.download(&status, &mut tokio::io::stdout()).await?;
        } else {
            upcache_client::put::save(&client, &status, &args.output).await?;
            let r = status.result.as_ref().map_or(0, |r| r.length);
            eprintln!("wrote {} ({r} bytes)", args.output.display());
        }
        Ok(())
    }))
}

/// `upcache rm KEY`
pub fn rm(args: KeyOnly) -> ExitCode {
    finish(runtime().block_on(async {
        let key = key(&args.key)?;
        client(&args.remote, 1, None)?.delete(&key).await?;
        eprintln!("deleted {key}");
        Ok(())
    }))
}
