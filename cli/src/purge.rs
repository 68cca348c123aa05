//! `upcache purge`: removes entries from a running server through its admin
//! endpoint (`POST /v1/admin/purge`, `spec/protocol.md`) — one entry by key,
//! every entry of an operation, every entry created before a date, or
//! everything (stored inputs too, and only with `--yes`).
//!
//! Exit codes: those of the other client subcommands (2 bad arguments,
//! 3 refused, 4 server unreachable), and 6 when the server refused the
//! admin key (missing, wrong, or an API key instead).

use std::process::ExitCode;

use clap::Args;
use upcache_client::admin::{parse_date, PurgeRequest};
use upcache_client::{Client, Options, ProblemType};

use crate::commands::{finish, key, runtime, Failure, EXIT_AUTH};

#[derive(Args)]
pub struct PurgeArgs {
    /// Purge the entry with this key (64 hex digits)
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Purge every entry of this operation (e.g. image.thumbnail), any version
    #[arg(long, value_name = "NAME")]
    operation: Option<String>,
    /// Purge every entry created before this date: YYYY-MM-DD (midnight
    /// UTC) or RFC 3339 (2026-01-31T12:00:00Z)
    #[arg(long, value_name = "DATE")]
    before: Option<String>,
    /// Purge everything: every entry and every stored input (needs --yes)
    #[arg(long)]
    all: bool,
    /// Confirm --all
    #[arg(long)]
    yes: bool,
    /// Server URL
    #[arg(long, env = "UPCACHE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin key, sent as a bearer token (the server's admin_keys; not an API key)
    #[arg(long, env = "UPCACHE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

fn request(args: &PurgeArgs) -> Result<PurgeRequest, Failure> {
    let req = PurgeRequest {
        key: args.key.as_deref().map(key).transpose()?,
        operation: args.operation.clone(),
        before: args
            .before
            .as_deref()
            .map(|d| {
                parse_date(d).ok_or_else(|| {
                    Failure::usage(format!(
                        "--before {d:?}: expected YYYY-MM-DD or an RFC 3339 date-time \
                         such as 2026-01-31T12:00:00Z"
                    ))
                })
            })
            .transpose()?,
        all: args.all,
    };
    if !req.is_valid() {
        return Err(Failure::usage(
            "give exactly one of --key, --operation, --before or --all",
        ));
    }
    if args.all && !args.yes {
        return Err(Failure::usage(
            "--all removes every entry and every stored input: add --yes to confirm",
        ));
    }
    Ok(req)
}

pub fn run(args: PurgeArgs) -> ExitCode {
    finish(purge(args))
}

fn purge(args: PurgeArgs) -> Result<(), Failure> {
    let req = request(&args)?;
    let options = Options {
        bearer_token: args.admin_key.clone(),
        ..Options::default()
    };
    let client = Client::with_options(&args.server, options).map_err(Failure::from)?;
    let report = runtime().block_on(client.purge(&req)).map_err(|e| {
        let auth = matches!(
            e.problem().and_then(|p| p.kind()),
            Some(ProblemType::Unauthorized | ProblemType::AdminKeyRequired)
        );
        let failure = Failure::from(e);
        if auth {
            failure.with_code(
                EXIT_AUTH,
                "pass the server's admin key with --admin-key or UPCACHE_ADMIN_KEY \
                 (an API key is not an admin key)",
            )
        } else {
            failure
        }
    })?;
    println!(
        "purged {} entries and {} inputs ({} bytes)",
        report.entries, report.inputs, report.bytes
    );
    if report.in_flight > 0 {
        eprintln!(
            "upcache: {} entries in flight (uploading or processing) were left alone; \
             purge again once they are done",
            report.in_flight
        );
    }
    Ok(())
}
