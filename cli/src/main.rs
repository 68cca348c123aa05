//! The `upcache` binary: parses flags, loads the configuration, sets up
//! logging and calls the library.

mod commands;
mod purge;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use upcache_server::Config;

#[derive(Parser)]
#[command(
    name = "upcache",
    version,
    about = "A resumable, content-addressed operation cache for uploads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Get the result of an operation on a file, uploading only what the server lacks.
    Put(commands::PutArgs),
    /// Print the key of an operation on a file.
    Key(commands::KeyArgs),
    /// Print an entry's status.
    Status(commands::KeyOnly),
    /// Download an entry's result.
    Get(commands::GetArgs),
    /// Cancel an upload or invalidate a result.
    Rm(commands::KeyOnly),
    /// Remove entries from a running server (admin key): by key, operation, age, or all.
    Purge(purge::PurgeArgs),
    /// Mint an upload token for a browser or phone (or a presigned result URL).
    Token(token::TokenArgs),
    /// Run one image operation for the server (internal: the server starts
    /// it, with the job on stdin).
    #[command(name = upcache_server::ops::worker::SUBCOMMAND, hide = true)]
    OpWorker,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [default: ./upcache-data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, env = "UPCACHE_CONFIG")]
    config: Option<PathBuf>,
    /// Largest input accepted, e.g. 64GiB
    #[arg(long)]
    max_input_size: Option<String>,
    /// Block size when a client chooses none, e.g. 8MiB
    #[arg(long)]
    default_block_size: Option<String>,
    /// Worker threads running operations
    #[arg(long)]
    pool_size: Option<i64>,
    /// Seconds an operation may run
    #[arg(long)]
    op_timeout: Option<i64>,
    /// Cap, in seconds, on how long a request waits for a result
    #[arg(long)]
    max_wait: Option<i64>,
    /// Browser origin allowed by CORS (repeat for more; `*` for any)
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
}

impl ServeArgs {
    fn overrides(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                t.insert(k.into(), v);
            }
        };
        put("listen", self.listen.clone().map(Into::into));
        put(
            "data",
            self.data.as_ref().map(|p| p.display().to_string().into()),
        );
        put(
            "max_input_size",
            self.max_input_size.clone().map(Into::into),
        );
        put(
            "default_block_size",
            self.default_block_size.clone().map(Into::into),
        );
        put("pool_size", self.pool_size.map(Into::into));
        put("op_timeout", self.op_timeout.map(Into::into));
        put("max_wait", self.max_wait.map(Into::into));
        if !self.cors_origins.is_empty() {
            put(
                "cors_origins",
                Some(toml::Value::Array(
                    self.cors_origins.iter().cloned().map(Into::into).collect(),
                )),
            );
        }
        t
    }
}

/// Exit codes of `serve`: 0 success, 1 runtime failure, 2 usage or configuration
/// error (the client subcommands add theirs, see `commands`).
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Put(args) => commands::put(args),
        Command::Key(args) => commands::key_cmd(args),
        Command::Status(args) => commands::status(args),
        Command::Get(args) => commands::get(args),
        Command::Rm(args) => commands::rm(args),
        Command::Token(args) => token::run(args),
        Command::Purge(args) => purge::run(args),
        Command::OpWorker => upcache_server::ops::worker::main(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    upcache_server::tune_allocator();
    upcache_server::raise_open_files_limit();
    let config = match Config::load(args.config.as_deref(), std::env::vars(), args.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upcache: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UPCACHE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("upcache-io")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("upcache: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("upcache: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let addr = listener.local_addr().expect("bound socket has an address");
        // The one machine-readable line on stdout.
        println!("listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, data = %config.data.display(), "serving");
        match upcache_server::run(config, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("upcache: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
