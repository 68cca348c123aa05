//! Who may make a request: API keys, scoped upload tokens and presigned
//! result URLs (`spec/tokens.md`), and minting the latter two at
//! `POST /v1/tokens`.
//!
//! A request is authorized before its handler runs and before its body is
//! read, so a refused one changes nothing. A token is checked whenever one
//! is sent, on a server without API keys too: a page handed a token gets the
//! same answers from every server. The one check that needs the body — that
//! a create names an input and operation the token covers — is
//! [`Grant::admit_create`], which the create handler calls before it acts.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Response, StatusCode};
use upcache_protocol::headers::{self as h, bearer_token, Prefer};
use upcache_protocol::token::{
    self, Action, Claims, MintRequest, MintResponse, PresignError, Presigned, Scope, TokenError,
};
use upcache_protocol::{CreateRequest, Key, Operation, Problem, ProblemType};

use super::body::{self, Body};
use super::handlers::read_json;
use super::router::Endpoint;
use super::{problem_response, Req};
use crate::cache::Core;
use crate::error::{Error, Result};
use crate::metrics;

/// Lifetime of a token or URL minted without a `ttl`.
pub const DEFAULT_TTL: u64 = 3600;

/// What an authorized request may do.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Anything: an API key, or a server without API keys and no token sent.
    Full,
    /// What the token's claims allow, on what its scope covers.
    Token(Claims),
    /// Read one result, by a presigned URL.
    Presigned,
}

impl Grant {
    /// Whether a create of `request` is within the grant (checked before
    /// the entry is looked up or made).
    pub fn admit_create(&self, request: &CreateRequest, op: &Operation) -> Result<()> {
        let Self::Token(claims) = self else {
            return Ok(());
        };
        let input = &request.input;
        let key = Key::derive(&input.blake3, op);
        if claims
            .scope
            .covers(&key, &input.blake3, input.length, op.name())
        {
            return Ok(());
        }
        metrics::TOKEN_REFUSALS.inc();
        Err(out_of_scope(&format!(
            "the token does not cover {} of input {} ({} bytes)",
            op.name(),
            input.blake3,
            input.length
        )))
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn out_of_scope(detail: &str) -> Error {
    Error::problem(ProblemType::OutOfScope, detail)
}

fn not_allowed(detail: impl Into<String>) -> Error {
    Error::problem(ProblemType::TokenNotAllowed, detail)
}

/// A refusal, with the `WWW-Authenticate` challenge RFC 6750 asks for.
fn refusal(problem: &Problem, error: Option<&'static str>) -> Box<Response<Body>> {
    let mut r = problem_response(problem);
    let challenge = match error {
        Some(e) => HeaderValue::from_str(&format!("Bearer error=\"{e}\"")).expect("ascii"),
        None => HeaderValue::from_static("Bearer"),
    };
    r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    Box::new(r)
}

fn token_problem(e: &TokenError) -> Problem {
    let kind = match e {
        TokenError::Malformed | TokenError::BadSignature | TokenError::BadClaims(_) => {
            ProblemType::InvalidToken
        }
        TokenError::UnknownKey(_) => ProblemType::UnknownTokenKey,
        TokenError::Expired(_) | TokenError::NotYetValid(_) => ProblemType::TokenExpired,
    };
    Problem::new(kind, e.to_string())
}

fn presign_problem(e: &PresignError) -> Problem {
    let kind = match e {
        PresignError::Expired(_) => ProblemType::UrlExpired,
        _ => ProblemType::InvalidUrlSignature,
    };
    Problem::new(kind, e.to_string())
}

/// Decides whether `req` (routed to `endpoint`) may go on, and with what
/// grant; the error is the answer to send instead.
pub fn authorize(
    core: &Core,
    req: &mut Req,
    endpoint: &Endpoint,
) -> std::result::Result<Grant, Box<Response<Body>>> {
    if endpoint.is_admin() {
        return admin(core, req);
    }
    let decided = decide(core, req, endpoint);
    match &decided {
        Ok(Grant::Token(_) | Grant::Presigned) => metrics::TOKEN_REQUESTS.inc(),
        Err(refused) if is_token_refusal(refused) => metrics::TOKEN_REFUSALS.inc(),
        _ => {}
    }
    decided
}

/// Whether a refusal is for a token or a presigned URL: every `403`, and a
/// `401` other than the plain one of a missing or wrong API key.
fn is_token_refusal(r: &Response<Body>) -> bool {
    match r.status() {
        StatusCode::FORBIDDEN => true,
        StatusCode::UNAUTHORIZED => {
            r.headers().get(header::WWW_AUTHENTICATE) != Some(&HeaderValue::from_static("Bearer"))
        }
        _ => false,
    }
}

fn decide(
    core: &Core,
    req: &mut Req,
    endpoint: &Endpoint,
) -> std::result::Result<Grant, Box<Response<Body>>> {
    if matches!(
        endpoint,
        Endpoint::Health
            | Endpoint::TusOptions
            | Endpoint::Demo
            | Endpoint::DemoToken
            // Image URLs carry their own authorization: the signature.
            | Endpoint::Img(_)
    ) {
        return Ok(Grant::Full);
    }
    if let Endpoint::Result(key) = endpoint {
        if let Some(presigned) = req.parts.uri.query().and_then(Presigned::parse) {
            let checked =
                presigned.and_then(|p| p.verify(key, |kid| core.config().signing_key(kid), now()));
            return match checked {
                Ok(()) => Ok(Grant::Presigned),
                Err(e) => Err(Box::new(problem_response(&presign_problem(&e)))),
            };
        }
    }
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    match credential {
        Some(t) if token::is_token(&t) => {
            let claims = token::verify(&t, |kid| core.config().signing_key(kid), now())
                .map_err(|e| refusal(&token_problem(&e), Some("invalid_token")))?;
            permit(core, req, endpoint, &claims).map_err(|e| {
                if let Error::Internal(why) = &e {
                    tracing::error!(error = %why, "checking a token's scope failed");
                }
                let problem = e.to_problem();
                if problem.status == StatusCode::FORBIDDEN.as_u16() {
                    refusal(&problem, Some("insufficient_scope"))
                } else {
                    Box::new(problem_response(&problem)) // 404: no such entry
                }
            })?;
            Ok(Grant::Token(claims))
        }
        _ if core.config().api_keys.is_empty() => Ok(Grant::Full),
        Some(t) if is_api_key(core, &t) => Ok(Grant::Full),
        _ => Err(refusal(
            &Problem::new(
                ProblemType::Unauthorized,
                "send Authorization: Bearer <api key or upload token>",
            ),
            None,
        )),
    }
}

/// The admin endpoints take an admin key only: no credential is `401`, an
/// API key or a token `403`. Without `admin_keys` they are open where the
/// whole server is (loopback, no `api_keys`) and closed otherwise.
fn admin(core: &Core, req: &Req) -> std::result::Result<Grant, Box<Response<Body>>> {
    let config = core.config();
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if config.admin_keys.is_empty() {
        if config.api_keys.is_empty() && config.listen.ip().is_loopback() {
            return Ok(Grant::Full);
        }
        return Err(Box::new(problem_response(&Problem::new(
            ProblemType::AdminKeyRequired,
            "the admin endpoints are off: this server has no admin_keys",
        ))));
    }
    match credential {
        Some(t)
            if config
                .admin_keys
                .iter()
                .any(|k| super::constant_time_eq(k.as_bytes(), t.as_bytes())) =>
        {
            Ok(Grant::Full)
        }
        Some(_) => Err(refusal(
            &Problem::new(
                ProblemType::AdminKeyRequired,
                "this endpoint needs an admin key; API keys and tokens are not admin keys",
            ),
            Some("insufficient_scope"),
        )),
        None => Err(refusal(
            &Problem::new(
                ProblemType::Unauthorized,
                "send Authorization: Bearer <admin key>",
            ),
            None,
        )),
    }
}

fn is_api_key(core: &Core, credential: &str) -> bool {
    core.config()
        .api_keys
        .iter()
        .any(|k| super::constant_time_eq(k.as_bytes(), credential.as_bytes()))
}

/// Whether a token's claims cover a request, from its route and headers.
fn permit(core: &Core, req: &mut Req, endpoint: &Endpoint, claims: &Claims) -> Result<()> {
    let need = |action: Action| {
        if claims.allows(action) {
            Ok(())
        } else {
            Err(not_allowed(format!(
                "the token does not allow {}",
                action.as_str()
            )))
        }
    };
    match endpoint {
        // The input and operation are in the body: `Grant::admit_create`.
        Endpoint::Create => need(Action::Upload),
        Endpoint::Status(k) => {
            need(Action::Status)?;
            covers_entry(core, claims, k)
        }
        Endpoint::Head(k) => {
            if !claims.allows(Action::Status) {
                need(Action::Upload)?;
            }
            covers_entry(core, claims, k)
        }
        Endpoint::Append(k) | Endpoint::Block(k, _) => {
            need(Action::Upload)?;
            covers_entry(core, claims, k)
        }
        Endpoint::OneShot(k) => {
            // The answer to a one-shot upload is the result.
            need(Action::Upload)?;
            need(Action::Result)?;
            covers_one_shot(req, claims, k)?;
            no_wait_unless_allowed(req, claims);
            Ok(())
        }
        Endpoint::Result(k) => {
            need(Action::Result)?;
            covers_entry(core, claims, k)?;
            no_wait_unless_allowed(req, claims);
            Ok(())
        }
        // Minting checks the body: a token may ask for its result's URL.
        Endpoint::Mint => Ok(()),
        Endpoint::Delete(_) => Err(not_allowed("a token never deletes")),
        Endpoint::Purge => Err(not_allowed("a token never purges")),
        Endpoint::TusCreate
        | Endpoint::TusHead(_)
        | Endpoint::TusAppend(_)
        | Endpoint::TusDelete(_)
        | Endpoint::TusResult(_) => Err(not_allowed(
            "tokens work on /v1/ops only; tus uploads at /files/ need an API key",
        )),
        Endpoint::Metrics => Err(not_allowed("metrics need an API key")),
        Endpoint::Health
        | Endpoint::TusOptions
        | Endpoint::Demo
        | Endpoint::DemoToken
        | Endpoint::Img(_) => Ok(()),
    }
}

/// Without `wait`, a request that would wait for the result is answered at
/// once (the result if ready, else `202` with the status): its `Prefer`
/// says `wait=0`, its other preferences kept.
fn no_wait_unless_allowed(req: &mut Req, claims: &Claims) {
    if claims.allows(Action::Wait) {
        return;
    }
    let headers = &mut req.parts.headers;
    let prefer = Prefer {
        wait: Some(0),
        ..Prefer::parse(
            headers
                .get_all(h::PREFER)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    };
    let value = HeaderValue::from_str(&prefer.encode()).expect("preferences are ascii");
    headers.insert(h::PREFER, value);
}

/// Whether the entry `key` is within the token's scope. With an input
/// scope the entry must exist (its input and operation are what is
/// checked); one that does not is `404 not-found`, answered here so that
/// nothing can slip in between the check and the handler.
fn covers_entry(core: &Core, claims: &Claims, key: &Key) -> Result<()> {
    if let Scope::Key(s) = &claims.scope {
        return if s.key == *key {
            Ok(())
        } else {
            Err(out_of_scope(&format!(
                "the token is for {}, not {key}",
                s.key
            )))
        };
    }
    let status = core.status(key)?;
    let op = status.operation["op"].as_str().unwrap_or_default();
    if claims
        .scope
        .covers(key, &status.input.blake3, status.input.length, op)
    {
        Ok(())
    } else {
        Err(out_of_scope(&format!(
            "the token does not cover the entry {key}"
        )))
    }
}

/// Whether a one-shot `PUT` is within the scope, from the headers that
/// name its input and operation; a request whose headers cannot be read is
/// refused here, never passed on unchecked.
fn covers_one_shot(req: &Req, claims: &Claims, key: &Key) -> Result<()> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let input = header(h::UPLOAD_INPUT_HASH).and_then(|v| v.trim().parse().ok());
    let op = header(h::UPLOAD_OPERATION).and_then(|v| h::decode_operation(v).ok());
    let length = header(header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
    match (input, op, length) {
        (Some(input), Some(op), Some(length))
            if claims.scope.covers(key, &input, length, op.name()) =>
        {
            Ok(())
        }
        (Some(_), Some(_), Some(_)) => Err(out_of_scope(&format!(
            "the token does not cover this upload to {key}"
        ))),
        _ => Err(out_of_scope(
            "a one-shot upload with a token needs Upload-Input-Hash, Upload-Operation \
             and Content-Length that the token covers",
        )),
    }
}

fn created(answer: &MintResponse) -> Response<Body> {
    metrics::TOKENS_MINTED.inc();
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, h::JSON)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(
            serde_json::to_vec(answer).expect("bodies serialize"),
        ))
        .expect("valid response")
}

/// Signs a token of `scope` and `allow`, living `ttl` seconds.
fn mint_token(core: &Core, scope: Scope, allow: Vec<Action>, ttl: u64) -> MintResponse {
    let exp = now() + ttl;
    let claims = Claims {
        exp,
        nbf: None,
        scope,
        allow,
    };
    MintResponse {
        token: Some(token::sign(core.config().minting_key(), &claims)),
        url: None,
        expires: exp,
    }
}

/// `POST /v1/tokens`
pub async fn mint(core: &Core, req: &mut Req, grant: &Grant) -> Result<Response<Body>> {
    let request: MintRequest = read_json(core, req, "a mint request").await?;
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL);
    if ttl == 0 {
        return Err(Error::problem(
            ProblemType::MalformedRequest,
            "ttl must be a positive number of seconds",
        ));
    }
    let ttl = ttl.min(core.config().token_max_ttl);
    match (request.scope, request.result_url_for) {
        (Some(scope), None) => {
            if !matches!(grant, Grant::Full) {
                return Err(not_allowed("tokens are minted with an API key"));
            }
            let allow = request.allow.unwrap_or_else(|| Action::ALL.to_vec());
            Ok(created(&mint_token(core, scope, allow, ttl)))
        }
        (None, Some(key)) => {
            if request.allow.is_some() {
                return Err(Error::problem(
                    ProblemType::MalformedRequest,
                    "allow belongs to a token request, not to result_url_for",
                ));
            }
            let mut exp = now() + ttl;
            if let Grant::Token(claims) = grant {
                if !claims.allows(Action::Result) {
                    return Err(not_allowed("the token does not allow result"));
                }
                covers_entry(core, claims, &key)?;
                // A URL obtained with a token does not outlive it.
                exp = exp.min(claims.exp);
            }
            Ok(created(&MintResponse {
                token: None,
                url: Some(token::presign_result(
                    core.config().minting_key(),
                    &key,
                    exp,
                )),
                expires: exp,
            }))
        }
        _ => Err(Error::problem(
            ProblemType::MalformedRequest,
            "send exactly one of scope (a token) and result_url_for (a presigned URL)",
        )),
    }
}

/// Lifetime of a token minted for the demo page.
pub const DEMO_TTL: u64 = 900;

/// `POST /demo/token`: a short-lived token for one input, to whoever asks,
/// when the demo is on (by default only on a loopback bind).
pub async fn mint_demo(core: &Core, req: &mut Req) -> Result<Response<Body>> {
    if !core.config().demo_enabled() {
        return Err(Error::problem(
            ProblemType::NotFound,
            "the demo is off (demo = false)",
        ));
    }
    let scope: token::InputScope = read_json(core, req, "an input scope").await?;
    let max = core.config().max_input_size.as_u64();
    let scope = token::InputScope {
        max_size: Some(scope.max_size.unwrap_or(max).min(max)),
        ..scope
    };
    let answer = mint_token(core, Scope::Input(scope), Action::ALL.to_vec(), DEMO_TTL);
    Ok(created(&answer))
}
