//! `upcache token`: mint an upload token (or a presigned result URL) for a
//! browser or a phone that must not hold the API key — from the server with
//! the API key (`POST /v1/tokens`), or signed here with one of the server's
//! signing keys (`--signing-key`). Format: `spec/tokens.md`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use upcache_client::token::{
    self, Action, Claims, InputScope, MintRequest, MintResponse, Scope, SigningKey,
};
use upcache_client::{Client, InputHash};

use crate::commands::{finish, key, runtime, Failure, Remote};

#[derive(Args)]
pub struct TokenArgs {
    /// Scope: exactly this entry (its key, 64 hex digits)
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Scope: entries on the input with this BLAKE3 (64 hex digits)
    #[arg(long, value_name = "HEX")]
    input: Option<String>,
    /// With --input: the largest input allowed, e.g. 20MiB
    #[arg(long, value_name = "SIZE")]
    max_size: Option<String>,
    /// With --input: an operation allowed, e.g. image.thumbnail (repeat for
    /// more; none means any)
    #[arg(long = "op", value_name = "NAME")]
    ops: Vec<String>,
    /// What the token allows, comma-separated: upload,status,wait,result
    /// [default: all four]
    #[arg(long, value_delimiter = ',', value_name = "ACTIONS")]
    allow: Vec<String>,
    /// Instead of a token: a presigned URL of this entry's result
    #[arg(long, value_name = "KEY")]
    result_url: Option<String>,
    /// Lifetime: seconds, or with a unit (90s, 15m, 1h, 2d); the server
    /// shortens it to its token_max_ttl
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Sign here with this key (kid:hexsecret, the first of the server's
    /// token_keys) instead of asking the server
    #[arg(
        long,
        env = "UPCACHE_SIGNING_KEY",
        hide_env_values = true,
        value_name = "KID:HEX"
    )]
    signing_key: Option<String>,
    /// Print the answer as JSON ({"token" or "url", "expires"})
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Seconds in `90`, `90s`, `15m`, `1h` or `2d`.
fn seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(scale).filter(|s| *s > 0)
}

/// What was asked for, as the body of `POST /v1/tokens`.
fn request(args: &TokenArgs) -> Result<MintRequest, Failure> {
    let ttl = seconds(&args.ttl).ok_or_else(|| {
        Failure::usage(format!("--ttl {:?}: expected e.g. 600, 15m, 1h", args.ttl))
    })?;
    let allow = args
        .allow
        .iter()
        .map(|a| {
            a.trim()
                .parse::<Action>()
                .map_err(|e| Failure::usage(format!("--allow: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allow = (!allow.is_empty()).then_some(allow);
    let input_only = args.max_size.is_some() || !args.ops.is_empty();
    let scope = match (&args.key, &args.input, &args.result_url) {
        (Some(k), None, None) if !input_only => Some(Scope::key(key(k)?)),
        (None, Some(input), None) => {
            let input: InputHash = input.trim().parse().map_err(|_| {
                Failure::usage(format!("--input {input:?}: expected 64 hex digits"))
            })?;
            let max_size = match &args.max_size {
                Some(s) => Some(
                    s.parse::<bytesize::ByteSize>()
                        .map_err(|e| Failure::usage(format!("--max-size: {e}")))?
                        .as_u64(),
                ),
                None => None,
            };
            Some(Scope::Input(InputScope {
                input,
                max_size,
                ops: args.ops.clone(),
            }))
        }
        (None, None, Some(_)) if !input_only && allow.is_none() => None,
        _ => {
            return Err(Failure::usage(
                "give one of --key, --input (with --max-size and --op), or --result-url \
                 (which takes no --allow)",
            ))
        }
    };
    let result_url_for = args.result_url.as_deref().map(key).transpose()?;
    Ok(MintRequest {
        scope,
        allow,
        result_url_for,
        ttl: Some(ttl),
    })
}

/// Signs the request here, as the server would (without its ttl cap).
fn sign_here(signing: &str, request: MintRequest) -> Result<MintResponse, Failure> {
    let signing: SigningKey = signing
        .parse()
        .map_err(|e| Failure::usage(format!("--signing-key: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = now + request.ttl.unwrap_or(DEFAULT_TTL);
    Ok(match (request.scope, request.result_url_for) {
        (Some(scope), _) => {
            let claims = Claims {
                exp: expires,
                nbf: None,
                scope,
                allow: request.allow.unwrap_or_else(|| Action::ALL.to_vec()),
            };
            MintResponse {
                token: Some(token::sign(&signing, &claims)),
                url: None,
                expires,
            }
        }
        (None, Some(key)) => MintResponse {
            token: None,
            url: Some(token::presign_result(&signing, &key, expires)),
            expires,
        },
        (None, None) => unreachable!("request() asks for one of the two"),
    })
}

/// Lifetime when none is given (the server's default too).
const DEFAULT_TTL: u64 = 3600;

/// `upcache token …`
pub fn run(args: TokenArgs) -> ExitCode {
    finish(runtime().block_on(async {
        let request = request(&args)?;
        let mut answer = match &args.signing_key {
            Some(signing) => sign_here(signing, request)?,
            None => {
                let client = Client::with_options(args.remote.server(), args.remote.options())?;
                client.mint(&request).await?
            }
        };
        let base = args.remote.server().trim_end_matches('/');
        if args.json {
            answer.url = answer.url.map(|u| format!("{base}{u}"));
            println!(
                "{}",
                serde_json::to_string(&answer).expect("answers serialize")
            );
        } else if let Some(token) = &answer.token {
            println!("{token}");
        } else if let Some(url) = &answer.url {
            println!("{base}{url}");
        }
        eprintln!("expires at {} (unix seconds)", answer.expires);
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds("600"), Some(600));
        assert_eq!(seconds("90s"), Some(90));
        assert_eq!(seconds("15m"), Some(900));
        assert_eq!(seconds("1h"), Some(3600));
        assert_eq!(seconds("2d"), Some(172_800));
        for bad in ["", "0", "h", "1w", "-1", "1.5h"] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
    }
}
