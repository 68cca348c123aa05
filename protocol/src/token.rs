//! Scoped upload tokens and presigned result URLs (`spec/tokens.md`).
//!
//! ```text
//! token   = "upc1." kid "." payload "." sig
//! payload = base64url-no-pad(JSON claims)
//! sig     = base64url-no-pad(HMAC-SHA256(secret(kid), "upc1." kid "." payload))
//!
//! presigned result URL = /v1/ops/{key}/result?exp=E&kid=K&sig=S
//! S       = base64url-no-pad(HMAC-SHA256(secret(K), "GET\n/v1/ops/{key}/result\n" E))
//! ```
//!
//! Tokens are stateless: everything a server needs to decide is in the
//! token, and the signature makes it tamper-evident. The payload is decoded
//! only after its signature verifies, and unknown claims are refused (a
//! newer claim that narrows a token must never be ignored). Time is passed
//! in as unix seconds; nothing here reads a clock.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::key::{InputHash, Key};
use crate::status::result_path;

type HmacSha256 = Hmac<Sha256>;

/// The format tag every token starts with (followed by a dot).
pub const TOKEN_PREFIX: &str = "upc1";
/// Where tokens and presigned URLs are minted with an API key.
pub const TOKENS_PATH: &str = "/v1/tokens";
/// Where the demo page gets its tokens, when the demo is on.
pub const DEMO_TOKEN_PATH: &str = "/demo/token";
/// Query parameters of a presigned result URL.
pub const QUERY_EXP: &str = "exp";
pub const QUERY_KID: &str = "kid";
pub const QUERY_SIG: &str = "sig";
/// Shortest signing secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;
/// Longest key id.
pub const MAX_KID: usize = 32;

/// Whether a bearer credential is a token (rather than an API key).
pub fn is_token(credential: &str) -> bool {
    credential
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// A signing key: an id carried in tokens, and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    kid: String,
    secret: Vec<u8>,
}

/// A `kid:hexsecret` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    #[error("expected kid:hexsecret")]
    Shape,
    #[error("the key id must be 1 to {MAX_KID} characters of A-Z a-z 0-9 _ -")]
    Kid,
    #[error("the secret must be hex digits, at least {MIN_SECRET} bytes")]
    Secret,
}

impl SigningKey {
    /// A key from its id and secret bytes.
    pub fn new(kid: &str, secret: Vec<u8>) -> Result<Self, SigningKeyError> {
        let kid_ok = !kid.is_empty()
            && kid.len() <= MAX_KID
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !kid_ok {
            return Err(SigningKeyError::Kid);
        }
        if secret.len() < MIN_SECRET {
            return Err(SigningKeyError::Secret);
        }
        Ok(Self {
            kid: kid.to_owned(),
            secret,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message);
        mac
    }

    fn sign(&self, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(message).finalize().into_bytes())
    }

    /// Constant-time check of a base64url signature over `message`.
    fn verifies(&self, message: &[u8], sig: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        self.mac(message).verify_slice(&sig).is_ok()
    }
}

impl FromStr for SigningKey {
    type Err = SigningKeyError;
    /// Parses `kid:hexsecret`.
    fn from_str(s: &str) -> Result<Self, SigningKeyError> {
        let (kid, secret) = s.trim().split_once(':').ok_or(SigningKeyError::Shape)?;
        let secret = hex::decode(secret).map_err(|_| SigningKeyError::Secret)?;
        Self::new(kid, secret)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}:<redacted>)", self.kid)
    }
}

/// What a token lets its holder do (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create the entry and send its input (POST /v1/ops, PUT, PATCH, blocks, HEAD).
    Upload,
    /// Read its status (GET and HEAD /v1/ops/{key}).
    Status,
    /// Let a result request wait for processing (`Prefer: wait`).
    Wait,
    /// Download the result, and obtain a presigned URL of it.
    Result,
}

impl Action {
    /// Every action; the default of a token that names none.
    pub const ALL: [Action; 4] = [Self::Upload, Self::Status, Self::Wait, Self::Result];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Status => "status",
            Self::Wait => "wait",
            Self::Result => "result",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of upload, status, wait, result"))
    }
}

fn all_actions() -> Vec<Action> {
    Action::ALL.to_vec()
}

/// Which entries a token reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scope {
    /// Exactly one entry.
    Key(KeyScope),
    /// Entries on one input, of at most `max_size` bytes, by the operations named.
    Input(InputScope),
}

/// `{"key": …}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyScope {
    pub key: Key,
}

/// `{"input": …, "max_size": …, "ops": […]}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputScope {
    pub input: InputHash,
    /// Largest input length accepted; none means the server's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Operation names allowed (`image.thumbnail`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
}

impl Scope {
    /// A scope of one key.
    pub fn key(key: Key) -> Self {
        Self::Key(KeyScope { key })
    }

    /// Whether creating `key` — the operation `op` (its name) on an input
    /// `input` of `length` bytes — is within the scope.
    pub fn covers(&self, key: &Key, input: &InputHash, length: u64, op: &str) -> bool {
        match self {
            Self::Key(s) => s.key == *key,
            Self::Input(s) => {
                s.input == *input
                    && s.max_size.is_none_or(|max| length <= max)
                    && (s.ops.is_empty() || s.ops.iter().any(|o| o == op))
            }
        }
    }
}

/// What a token says (its payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Expiry, unix seconds: valid while `now < exp`.
    pub exp: u64,
    /// Not before, unix seconds: valid once `now >= nbf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub scope: Scope,
    #[serde(default = "all_actions")]
    pub allow: Vec<Action>,
}

impl Claims {
    /// Whether the token grants `action`.
    pub fn allows(&self, action: Action) -> bool {
        self.allow.contains(&action)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not an upc1 token")]
    Malformed,
    #[error("no signing key {0:?} on this server")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's payload is not valid claims: {0}")]
    BadClaims(String),
    #[error("the token expired at {0}")]
    Expired(u64),
    #[error("the token is not valid before {0}")]
    NotYetValid(u64),
}

/// Signs `claims` with `key`.
pub fn sign(key: &SigningKey, claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("{TOKEN_PREFIX}.{}.{payload}", key.kid);
    let sig = key.sign(signed.as_bytes());
    format!("{signed}.{sig}")
}

/// The key id a token names, if it has the token's shape.
pub fn kid_of(token: &str) -> Option<&str> {
    let mut parts = token.split('.');
    (parts.next() == Some(TOKEN_PREFIX)).then_some(())?;
    parts.next()
}

/// Verifies `token` with the key `keys` finds for its id, then its time
/// window at `now`, and returns its claims.
pub fn verify<'k>(
    token: &str,
    keys: impl FnOnce(&str) -> Option<&'k SigningKey>,
    now: u64,
) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [prefix, kid, payload, sig] = parts.as_slice() else {
        return Err(TokenError::Malformed);
    };
    if *prefix != TOKEN_PREFIX || kid.is_empty() || payload.is_empty() || sig.is_empty() {
        return Err(TokenError::Malformed);
    }
    let key = keys(kid).ok_or_else(|| TokenError::UnknownKey((*kid).to_owned()))?;
    let signed = &token[..token.len() - sig.len() - 1];
    if !key.verifies(signed.as_bytes(), sig) {
        return Err(TokenError::BadSignature);
    }
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| TokenError::BadClaims(e.to_string()))?;
    let claims: Claims =
        serde_json::from_slice(&json).map_err(|e| TokenError::BadClaims(e.to_string()))?;
    if now >= claims.exp {
        return Err(TokenError::Expired(claims.exp));
    }
    if let Some(nbf) = claims.nbf.filter(|nbf| now < *nbf) {
        return Err(TokenError::NotYetValid(nbf));
    }
    Ok(claims)
}

fn presign_message(key: &Key, exp: u64) -> String {
    // The path signed is the result's, its key in lowercase hex.
    format!("GET\n{}\n{exp}", result_path(key))
}

/// The presigned URL (path and query) of `key`'s result, valid until `exp`.
pub fn presign_result(signing: &SigningKey, key: &Key, exp: u64) -> String {
    let sig = signing.sign(presign_message(key, exp).as_bytes());
    format!(
        "{}?{QUERY_EXP}={exp}&{QUERY_KID}={}&{QUERY_SIG}={sig}",
        result_path(key),
        signing.kid
    )
}

/// The signature parameters of a result URL's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned<'q> {
    pub exp: u64,
    pub kid: &'q str,
    pub sig: &'q str,
}

/// Why a presigned URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error("the query needs exp (unix seconds), kid and sig, once each")]
    Malformed,
    #[error("no signing key {0:?} on this server")]
    UnknownKey(String),
    #[error("the URL's signature does not verify")]
    BadSignature,
    #[error("the URL expired at {0}")]
    Expired(u64),
}

impl<'q> Presigned<'q> {
    /// The signature parameters of `query`, or `None` when it carries none
    /// of them (an ordinary request); a query with some but not all is malformed.
    pub fn parse(query: &'q str) -> Option<Result<Self, PresignError>> {
        let (mut exp, mut kid, mut sig) = (None, None, None);
        let mut seen = false;
        let mut twice = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                QUERY_EXP => &mut exp,
                QUERY_KID => &mut kid,
                QUERY_SIG => &mut sig,
                _ => continue,
            };
            seen = true;
            twice |= slot.replace(value).is_some();
        }
        if !seen {
            return None;
        }
        let parsed = (|| {
            let exp = exp?;
            let exp = (!exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()))
                .then(|| exp.parse().ok())
                .flatten()?;
            Some(Self {
                exp,
                kid: kid.filter(|k| !k.is_empty())?,
                sig: sig.filter(|s| !s.is_empty())?,
            })
        })();
        Some(match parsed {
            Some(p) if !twice => Ok(p),
            _ => Err(PresignError::Malformed),
        })
    }

    /// Verifies the signature over `key`'s result path with the key
    /// `keys` finds, then the expiry at `now`.
    pub fn verify<'k>(
        &self,
        key: &Key,
        keys: impl FnOnce(&str) -> Option<&'k SigningKey>,
        now: u64,
    ) -> Result<(), PresignError> {
        let signing = keys(self.kid).ok_or_else(|| PresignError::UnknownKey(self.kid.into()))?;
        if !signing.verifies(presign_message(key, self.exp).as_bytes(), self.sig) {
            return Err(PresignError::BadSignature);
        }
        if now >= self.exp {
            return Err(PresignError::Expired(self.exp));
        }
        Ok(())
    }
}

/// `POST /v1/tokens`: mint a token (`scope`) or a presigned result URL
/// (`result_url_for`), exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Action>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_url_for: Option<Key>,
    /// Seconds the token or URL lives; the server caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// The answer to a [`MintRequest`] (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintResponse {
    /// The token, when a scope was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The presigned URL (path and query, relative to the server), when a
    /// result URL was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When it stops working, unix seconds.
    pub expires: u64,
}

#[cfg(test)]
mod tests;
