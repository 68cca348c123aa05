//! Configuration: one serde struct, layered defaults → TOML file → environment
//! (`UPCACHE_<FIELD>`) → command-line flags, validated before anything binds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use upcache_protocol::token::{self, SigningKey};

use crate::clock::SharedClock;

/// Every setting of the server. Sizes accept human units (`64GiB`, `8MiB`);
/// durations are whole seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory holding the metadata database, staged uploads, inputs and results.
    pub data: PathBuf,
    /// Largest input accepted (413 above it).
    pub max_input_size: ByteSize,
    /// Most blocks one input may be cut into.
    pub max_blocks: u64,
    /// Block size when a client does not choose one (a power of two).
    pub default_block_size: ByteSize,
    /// Largest JSON request body.
    pub max_json_body: ByteSize,
    /// Operations run at once (each image operation in a process of its own).
    pub pool_size: usize,
    /// Longest an operation may run before it is stopped and fails with
    /// `operation-timeout`; time spent waiting for its turn does not count.
    pub op_timeout: u64,
    /// Most memory one image operation may use; one that would need more
    /// (by the estimate from its input's header) fails with `image-too-large`.
    pub op_memory_limit: ByteSize,
    /// Memory all operations running at once may use together; operations
    /// wait their turn until theirs fits.
    pub pool_memory: ByteSize,
    /// Seconds a result request waits when the client sends no `Prefer: wait`.
    pub default_wait: u64,
    /// Cap on `Prefer: wait`.
    pub max_wait: u64,
    /// Seconds a failed operation is remembered: a create retries it after
    /// that, and the expiry sweeper removes the failed entry then.
    pub failure_ttl: u64,
    /// Seconds an upload may sit untouched before it expires (its staged
    /// bytes are removed); advertised to tus clients as `Upload-Expires`.
    pub upload_ttl: u64,
    /// Seconds a stored input is kept after its last use (an upload of it,
    /// an operation reading it, a hit on an identity result); `0`: kept
    /// until evicted or purged.
    pub input_ttl: u64,
    /// Seconds a completed result is kept after its last use (a read or a
    /// hit); `0`: kept until evicted or purged.
    pub result_ttl: u64,
    /// Most bytes the disk tier holds — stored inputs, results and staged
    /// uploads together (`50GiB`). Room is reserved before anything is
    /// written; least recently used inputs and results are evicted to make
    /// room; a request that cannot get room is refused with `507`
    /// `disk-cap-exceeded`. Unset: no cap.
    pub disk_cap: Option<ByteSize>,
    /// Seconds a request body may stall before the upload request is ended.
    pub body_idle_timeout: u64,
    /// Slowest body accepted, in bytes per second averaged over each
    /// `body_rate_window`; a slower upload request is ended (bytes received
    /// so far are kept). `0` turns the check off.
    pub body_min_rate: ByteSize,
    /// Seconds over which `body_min_rate` is measured.
    pub body_rate_window: u64,
    /// Largest image (width × height) an image operation decodes.
    pub image_max_pixels: u64,
    /// Largest input an image operation reads.
    pub image_max_input: ByteSize,
    /// Memory the metadata database may use as cache.
    pub db_cache: ByteSize,
    /// Bytes the memory tier holds: small hot results served from RAM
    /// without touching disk or the metadata database. `0` turns it off.
    pub memory_cap: ByteSize,
    /// Largest result the memory tier keeps (results of pinned operations
    /// excepted); larger ones are always read from disk.
    pub memory_max_item: ByteSize,
    /// Operations (by name, e.g. `watermark`) whose results stay in memory
    /// whatever the eviction order: kept outside `memory_cap`, whatever
    /// their size. Results can also be pinned one by one by key.
    #[serde(deserialize_with = "one_or_many")]
    pub memory_pin_operations: Vec<String>,
    /// Bearer tokens accepted; empty means no authentication. An empty or
    /// whitespace-only key is a configuration error.
    #[serde(deserialize_with = "one_or_many")]
    pub api_keys: Vec<String>,
    /// A file with one bearer token per line, added to `api_keys`; blank
    /// lines and lines starting with `#` are not keys.
    pub api_keys_file: Option<PathBuf>,
    /// Bearer tokens of the admin endpoints (`/v1/admin/…`: purge), kept
    /// apart from `api_keys`: an API key is refused there (`403`). Empty:
    /// the admin endpoints are open only on a loopback listen address
    /// without `api_keys`, and refused otherwise.
    #[serde(deserialize_with = "one_or_many")]
    pub admin_keys: Vec<String>,
    /// A file with one admin key per line, added to `admin_keys`; blank
    /// lines and lines starting with `#` are not keys.
    pub admin_keys_file: Option<PathBuf>,
    /// Keys that sign and verify upload tokens and presigned result URLs,
    /// each `kid:hexsecret` (a key id of letters, digits, `_` and `-`, and a
    /// secret of at least 16 bytes). The first signs; every one verifies, so
    /// a new key goes first and the old one stays until its tokens expired.
    /// Empty: a random key (`kid` `ephemeral`) made at start, whose tokens
    /// stop working when the server restarts.
    #[serde(deserialize_with = "one_or_many")]
    pub token_keys: Vec<String>,
    /// A file with one `kid:hexsecret` per line, added after `token_keys`;
    /// blank lines and lines starting with `#` are not keys.
    pub token_keys_file: Option<PathBuf>,
    /// Longest lifetime, in seconds, of a minted token or presigned URL;
    /// longer requests are shortened to it.
    pub token_max_ttl: u64,
    /// Serve the demo page at `/demo/` and mint short-lived upload tokens
    /// for it at `POST /demo/token`, to anyone who asks. Unset: on when
    /// `listen` is a loopback address, off otherwise.
    pub demo: Option<bool>,
    /// Allow a non-loopback listen address without API keys.
    pub allow_unauthenticated: bool,
    /// Browser origins allowed by CORS (`https://app.example`), or `*` for
    /// any; empty means no CORS headers.
    #[serde(deserialize_with = "one_or_many")]
    pub cors_origins: Vec<String>,
    /// The clock the service goes by (tests give one they move by hand).
    #[serde(skip)]
    pub clock: SharedClock,
    /// The executable operations run in (`<it> op-worker`): this process's
    /// own unless given (tests that run the service in-process name the
    /// `upcache` binary).
    #[serde(skip)]
    pub worker: Option<PathBuf>,
    /// `token_keys` and `token_keys_file` parsed (or the ephemeral key),
    /// filled in by validation; the first signs.
    #[serde(skip)]
    pub signing_keys: Vec<SigningKey>,
    /// Keys of the signatures of image URLs (`/img/…`, imgproxy's scheme), as
    /// hex. Several (a list, or comma-separated) pair up with `url_salt` for
    /// rotation: a URL signed with any pair is accepted.
    #[serde(deserialize_with = "one_or_many")]
    pub url_key: Vec<String>,
    /// Salts of the signatures of image URLs, as hex, one per `url_key`.
    #[serde(deserialize_with = "one_or_many")]
    pub url_salt: Vec<String>,
    /// Serve image URLs whatever their signature segment says. Anyone who
    /// can reach the server may then have any supported operation computed
    /// on any stored input.
    pub url_unsigned: bool,
    /// Named sets of image URL options for `pr:{name}`, e.g.
    /// `thumb = "rs:fill:300:300/q:70"`.
    pub url_presets: BTreeMap<String, String>,
    /// The S3 tier: an `[s3]` table (or any `UPCACHE_S3_*` variable). Unset,
    /// everything stays on this node's memory and disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// The S3 (or S3-compatible) bucket results and inputs are kept in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// URL of the service (`http://127.0.0.1:8333`, `https://s3.example`);
    /// unset: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// The bucket (required); it must exist.
    pub bucket: String,
    /// The region requests are signed for. Unset: `AWS_REGION` or the AWS
    /// profile's, else `us-east-1`.
    pub region: Option<String>,
    /// Name buckets in the path (`endpoint/bucket/name`) rather than the
    /// host name; most S3-compatible servers need it.
    pub path_style: bool,
    /// Put before every object name, so that several services (or tests)
    /// share one bucket; a missing final `/` is added.
    pub prefix: String,
    /// Access key id; unset: `AWS_ACCESS_KEY_ID`, or the usual AWS sources
    /// (profile, web identity, container or instance credentials) when no
    /// key is given at all.
    pub access_key_id: Option<String>,
    /// A file holding the secret access key; unset: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_file: Option<PathBuf>,
    /// Answer `GET` of a result at least this large (`8MiB`) with a
    /// `307` redirect to a presigned URL of its object in the bucket, once
    /// the bucket's copy is confirmed; unset (the default): results are
    /// always served by this node. Clients must be able to reach the bucket
    /// (browsers also need CORS on it).
    pub redirect_above: Option<ByteSize>,
    /// Seconds a redirect's presigned URL stays valid (1 to 604800, the
    /// most S3 signatures allow).
    pub redirect_ttl: u64,
    /// Copies to the bucket (and deletes) the write-behind queue runs at
    /// once, 1 to 256.
    pub write_behind_concurrency: usize,
    /// Failed or slow calls in a row that open the circuit breaker: S3 is
    /// then left alone (reads served locally, writes queued) until the
    /// cooldown is over. 1 to 1000.
    pub breaker_failures: u32,
    /// Seconds after which an answer from S3 counts as a failure, 1 to 3600.
    pub breaker_slow: u64,
    /// Seconds the open breaker waits before it lets one probe through,
    /// 1 to 3600.
    pub breaker_cooldown: u64,
    /// The keys found by validation; `None`: the usual AWS sources.
    #[serde(skip)]
    pub credentials: Option<S3Credentials>,
}

/// Longest life of a presigned S3 URL (SigV4 allows seven days).
pub const MAX_REDIRECT_TTL: u64 = 7 * 24 * 3600;

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: String::new(),
            region: None,
            path_style: false,
            prefix: String::new(),
            access_key_id: None,
            secret_access_key_file: None,
            redirect_above: None,
            redirect_ttl: 300,
            write_behind_concurrency: 4,
            breaker_failures: 5,
            breaker_slow: 10,
            breaker_cooldown: 5,
            credentials: None,
        }
    }
}

/// A static S3 access key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The `AWS_*` variables the S3 settings fall back on.
#[derive(Debug, Default)]
struct AwsEnv {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

impl S3Config {
    /// Checks the table and settles its credentials from its own settings
    /// and `aws`.
    fn validated(mut self, aws: &AwsEnv) -> Result<Self, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("s3: {m}")));
        let b = &self.bucket;
        if b.is_empty() {
            return bad("bucket is required (set it in [s3] or as UPCACHE_S3_BUCKET)".into());
        }
        let name_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c);
        if !(3..=63).contains(&b.len()) || !b.chars().all(name_chars) {
            return bad(format!(
                "bucket {b:?} is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-')"
            ));
        }
        if let Some(e) = &self.endpoint {
            let host = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                return bad(format!("endpoint {e:?} is not an http:// or https:// URL"));
            }
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return bad("region is empty; leave it out to use AWS_REGION".into());
        }
        if self.redirect_above.is_some_and(|b| b.as_u64() == 0) {
            return bad(
                "redirect_above is 0; leave it out to serve every result from this node".into(),
            );
        }
        if !(1..=MAX_REDIRECT_TTL).contains(&self.redirect_ttl) {
            return bad(format!(
                "redirect_ttl {} is not between 1 and {MAX_REDIRECT_TTL} seconds",
                self.redirect_ttl
            ));
        }
        let within = |name: &str, value: u64, max: u64| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "s3: {name} {value} is not between 1 and {max}"
                )))
            }
        };
        within(
            "write_behind_concurrency",
            self.write_behind_concurrency as u64,
            256,
        )?;
        within("breaker_failures", self.breaker_failures.into(), 1000)?;
        within("breaker_slow (seconds)", self.breaker_slow, 3600)?;
        within("breaker_cooldown (seconds)", self.breaker_cooldown, 3600)?;
        let prefix = self.prefix.trim_start_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..")
            || prefix.contains("//")
            || prefix.contains('\\')
        {
            return bad(format!(
                "prefix {:?} has an empty, '.' or '..' segment",
                self.prefix
            ));
        }
        self.prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        let secret = match &self.secret_access_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let secret = text.trim().to_owned();
                if secret.is_empty() {
                    return bad(format!(
                        "secret_access_key_file {} is empty",
                        path.display()
                    ));
                }
                Some(secret)
            }
            None => aws.secret_access_key.clone(),
        };
        let id = self
            .access_key_id
            .clone()
            .or_else(|| aws.access_key_id.clone());
        self.credentials = match (id, secret) {
            (Some(id), Some(secret)) if !id.trim().is_empty() => Some(S3Credentials {
                access_key_id: id.trim().to_owned(),
                secret_access_key: secret,
                // A session token belongs to the environment's own pair only.
                session_token: (self.access_key_id.is_none()
                    && self.secret_access_key_file.is_none())
                .then(|| aws.session_token.clone())
                .flatten(),
            }),
            (Some(_), Some(_)) => return bad("access_key_id is empty".into()),
            (Some(_), None) => {
                return bad("an access key id is given but no secret: set \
                     secret_access_key_file or AWS_SECRET_ACCESS_KEY"
                    .into())
            }
            (None, Some(_)) => {
                return bad("a secret access key is given but no key id: set \
                     access_key_id or AWS_ACCESS_KEY_ID"
                    .into())
            }
            (None, None) => None,
        };
        Ok(self)
    }
}

/// A list, or a single string standing for a list of one.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        // `UPCACHE_URL_KEY=1234`: hex of digits only reads as a number.
        Number(i64),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Number(n) => vec![n.to_string()],
        OneOrMany::One(s) => s.split(',').map(|o| o.trim().to_owned()).collect(),
        OneOrMany::Many(v) => v,
    })
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data: PathBuf::from("upcache-data"),
            max_input_size: ByteSize::gib(64),
            max_blocks: 1 << 20,
            default_block_size: ByteSize::mib(8),
            max_json_body: ByteSize::kib(64),
            pool_size: std::thread::available_parallelism().map_or(2, |n| n.get()),
            op_timeout: 120,
            op_memory_limit: ByteSize::gib(2),
            pool_memory: ByteSize::gib(4),
            default_wait: 30,
            max_wait: 300,
            failure_ttl: 60,
            upload_ttl: 7 * 24 * 3600,
            input_ttl: 0,
            result_ttl: 0,
            disk_cap: None,
            body_idle_timeout: 60,
            body_min_rate: ByteSize::kib(1),
            body_rate_window: 20,
            image_max_pixels: 64_000_000,
            image_max_input: ByteSize::mib(256),
            db_cache: ByteSize::mib(16),
            memory_cap: ByteSize::mib(256),
            memory_max_item: ByteSize::mib(1),
            memory_pin_operations: Vec::new(),
            api_keys: Vec::new(),
            api_keys_file: None,
            admin_keys: Vec::new(),
            admin_keys_file: None,
            token_keys: Vec::new(),
            token_keys_file: None,
            token_max_ttl: 24 * 3600,
            demo: None,
            allow_unauthenticated: false,
            cors_origins: Vec::new(),
            clock: SharedClock::default(),
            worker: None,
            signing_keys: Vec::new(),
            url_key: Vec::new(),
            url_salt: Vec::new(),
            url_unsigned: false,
            url_presets: BTreeMap::new(),
            s3: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Builds the configuration: defaults, then `file` (if any), then the
    /// `UPCACHE_*` variables of `env`, then `flags` (a TOML table of overrides).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: toml::Table,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(Config::default()).expect("defaults serialize");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            let parsed: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.into(),
                        message: e.to_string(),
                    })?;
            table.extend(parsed);
        }
        let mut aws = AwsEnv::default();
        for (name, value) in env {
            match name.as_str() {
                "AWS_ACCESS_KEY_ID" => aws.access_key_id = Some(value.clone()),
                "AWS_SECRET_ACCESS_KEY" => aws.secret_access_key = Some(value.clone()),
                "AWS_SESSION_TOKEN" => aws.session_token = Some(value.clone()),
                _ => {}
            }
            if let Some(field) = name.strip_prefix("UPCACHE_S3_") {
                Self::set_s3(&mut table, &name, field, value)?;
                continue;
            }
            let Some(field) = name.strip_prefix("UPCACHE_") else {
                continue;
            };
            let field = field.to_ascii_lowercase();
            if field == "config" || field == "log" {
                continue;
            }
            if !table.contains_key(&field) && !Self::optional_fields().contains(&field.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "unknown environment variable {name}"
                )));
            }
            table.insert(field, env_value(&value));
        }
        table.extend(flags);
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        let mut config = config.validated()?;
        config.s3 = config.s3.take().map(|s3| s3.validated(&aws)).transpose()?;
        Ok(config)
    }

    /// Puts `UPCACHE_S3_<FIELD>` into the `[s3]` table, making it if needed.
    fn set_s3(
        table: &mut toml::Table,
        name: &str,
        field: &str,
        value: String,
    ) -> Result<(), ConfigError> {
        const FIELDS: &[&str] = &[
            "endpoint",
            "bucket",
            "region",
            "path_style",
            "prefix",
            "access_key_id",
            "secret_access_key_file",
            "redirect_above",
            "redirect_ttl",
            "write_behind_concurrency",
            "breaker_failures",
            "breaker_slow",
            "breaker_cooldown",
        ];
        /// Fields that take a whole number.
        const NUMBERS: &[&str] = &[
            "redirect_ttl",
            "write_behind_concurrency",
            "breaker_failures",
            "breaker_slow",
            "breaker_cooldown",
        ];
        let field = field.to_ascii_lowercase();
        if !FIELDS.contains(&field.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "unknown environment variable {name}"
            )));
        }
        let value = match (field.as_str(), value.as_str()) {
            ("path_style", "true" | "1") => toml::Value::Boolean(true),
            ("path_style", "false" | "0") => toml::Value::Boolean(false),
            ("path_style", other) => {
                return Err(ConfigError::Invalid(format!(
                    "{name}: {other:?} is neither true nor false"
                )))
            }
            (f, v) if NUMBERS.contains(&f) => match v.trim().parse::<u32>() {
                Ok(n) => toml::Value::Integer(n.into()),
                Err(_) => {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: {v:?} is not a whole number"
                    )))
                }
            },
            _ => toml::Value::String(value),
        };
        let s3 = table
            .entry("s3")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(s3) = s3 else {
            return Err(ConfigError::Invalid("s3 must be a table".into()));
        };
        s3.insert(field, value);
        Ok(())
    }

    fn optional_fields() -> &'static [&'static str] {
        &[
            "api_keys_file",
            "admin_keys_file",
            "token_keys_file",
            "demo",
            "disk_cap",
        ]
    }

    fn validated(mut self) -> Result<Self, ConfigError> {
        for origin in &self.cors_origins {
            let scheme_host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if origin != "*" && scheme_host.is_none_or(|h| h.is_empty() || h.contains('/')) {
                return Err(ConfigError::Invalid(format!(
                    "cors_origins: {origin:?} is not an origin (scheme://host[:port], or *)"
                )));
            }
        }
        let bs = self.default_block_size.as_u64();
        upcache_protocol::Layout::new(0, bs, self.max_blocks)
            .map_err(|e| ConfigError::Invalid(format!("default_block_size: {e}")))?;
        if self.pool_size == 0 {
            return Err(ConfigError::Invalid("pool_size must be at least 1".into()));
        }
        if self.op_memory_limit > self.pool_memory {
            return Err(ConfigError::Invalid(
                "op_memory_limit must not exceed pool_memory".into(),
            ));
        }
        if self.max_wait == 0 || self.default_wait > self.max_wait {
            return Err(ConfigError::Invalid(
                "default_wait must not exceed max_wait, which must be positive".into(),
            ));
        }
        if let Some(path) = &self.api_keys_file {
            self.api_keys.extend(key_lines(path)?);
        }
        if let Some(path) = &self.admin_keys_file {
            self.admin_keys.extend(key_lines(path)?);
        }
        if self.admin_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "admin_keys: a key is empty or whitespace; remove it or give it a value".into(),
            ));
        }
        if let Some(k) = self.admin_keys.iter().find(|k| token::is_token(k)) {
            return Err(ConfigError::Invalid(format!(
                "admin_keys: a key starting {:?} would be read as an upload token",
                &k[..token::TOKEN_PREFIX.len() + 1]
            )));
        }
        if self.admin_keys.iter().any(|k| self.api_keys.contains(k)) {
            return Err(ConfigError::Invalid(
                "admin_keys: a key is also an API key; admin keys must be kept apart".into(),
            ));
        }
        if self.disk_cap.is_some_and(|c| c.as_u64() == 0) {
            return Err(ConfigError::Invalid(
                "disk_cap must be positive (leave it unset for no cap)".into(),
            ));
        }
        if self.api_keys.iter().any(|k| k.trim().is_empty()) {
            // An empty key would let through any request that says
            // `Authorization: Bearer` with no token at all.
            return Err(ConfigError::Invalid(
                "api_keys: a key is empty or whitespace; remove it or give it a value".into(),
            ));
        }
        if let Some(k) = self.api_keys.iter().find(|k| token::is_token(k)) {
            return Err(ConfigError::Invalid(format!(
                "api_keys: a key starting {:?} would be read as an upload token",
                &k[..token::TOKEN_PREFIX.len() + 1]
            )));
        }
        self.signing_keys = self.signing_keys()?;
        if self.token_max_ttl == 0 {
            return Err(ConfigError::Invalid(
                "token_max_ttl must be positive".into(),
            ));
        }
        self.url_signing_pairs()?;
        if !self.listen.ip().is_loopback()
            && self.api_keys.is_empty()
            && !self.allow_unauthenticated
        {
            return Err(ConfigError::Invalid(format!(
                "listening on {} (not loopback) needs api_keys or api_keys_file; \
                 set allow_unauthenticated = true to serve without authentication",
                self.listen
            )));
        }
        Ok(self)
    }
}

impl Config {
    /// Whether the demo page and its token minting are served.
    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or_else(|| self.listen.ip().is_loopback())
    }

    /// The signing key that mints: the first one.
    pub fn minting_key(&self) -> &SigningKey {
        self.signing_keys
            .first()
            .expect("validation leaves at least one signing key")
    }

    /// The signing key named `kid`, if this server has it.
    pub fn signing_key(&self, kid: &str) -> Option<&SigningKey> {
        self.signing_keys.iter().find(|k| k.kid() == kid)
    }

    fn signing_keys(&self) -> Result<Vec<SigningKey>, ConfigError> {
        let mut lines = self.token_keys.clone();
        if let Some(path) = &self.token_keys_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let mut keys: Vec<SigningKey> = Vec::with_capacity(lines.len());
        for line in &lines {
            // The message never holds the secret.
            let kid = line.split_once(':').map_or("?", |(kid, _)| kid);
            let key: SigningKey = line
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("token_keys: key {kid:?}: {e}")))?;
            if keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(ConfigError::Invalid(format!(
                    "token_keys: key id {kid:?} appears twice"
                )));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            let secret: [u8; 32] = rand::random();
            keys.push(SigningKey::new("ephemeral", secret.to_vec()).expect("a valid key"));
        }
        Ok(keys)
    }
}

/// The keys in a file of one key per line; blank lines and `#` comments
/// are not keys.
fn key_lines(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// A key and its salt for image URL signatures, decoded from hex.
pub type SigningPair = (Vec<u8>, Vec<u8>);

impl Config {
    /// The (key, salt) pairs image URL signatures are checked with.
    pub fn url_signing_pairs(&self) -> Result<Vec<SigningPair>, ConfigError> {
        if self.url_key.len() != self.url_salt.len() {
            return Err(ConfigError::Invalid(format!(
                "url_key has {} values and url_salt {}: they pair up",
                self.url_key.len(),
                self.url_salt.len()
            )));
        }
        let hex = |name: &str, v: &str| {
            hex::decode(v.trim())
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ConfigError::Invalid(format!("{name}: {v:?} is not hex")))
        };
        self.url_key
            .iter()
            .zip(&self.url_salt)
            .map(|(k, s)| Ok((hex("url_key", k)?, hex("url_salt", s)?)))
            .collect()
    }
}

/// Environment values are strings; numbers and booleans are recognised so that
/// `UPCACHE_POOL_SIZE=4` and `UPCACHE_MAX_INPUT_SIZE=1GiB` both work.
fn env_value(value: &str) -> toml::Value {
    if let Ok(n) = value.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ if value.contains(',') && !value.contains('/') => toml::Value::Array(
            value
                .split(',')
                .map(|s| toml::Value::String(s.trim().into()))
                .collect(),
        ),
        _ => toml::Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("upcache.toml");
        std::fs::write(
            &file,
            "max_input_size = \"1MiB\"\npool_size = 3\nop_timeout = 9\n",
        )
        .unwrap();
        let env = [
            ("UPCACHE_POOL_SIZE".to_string(), "5".to_string()),
            ("PATH".into(), "/bin".into()),
        ];
        let mut flags = toml::Table::new();
        flags.insert("op_timeout".into(), toml::Value::Integer(7));
        let c = Config::load(Some(&file), env, flags).unwrap();
        assert_eq!(c.max_input_size, ByteSize::mib(1));
        assert_eq!(c.pool_size, 5, "env beats file");
        assert_eq!(c.op_timeout, 7, "flags beat env");
    }

    #[test]
    fn memory_tier_settings_from_the_environment() {
        let none = toml::Table::new;
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::load(None, env(&[]), none()).unwrap();
        assert_eq!(c.memory_cap, ByteSize::mib(256));
        assert_eq!(c.memory_max_item, ByteSize::mib(1));
        let c = Config::load(
            None,
            env(&[
                ("UPCACHE_MEMORY_CAP", "0"),
                ("UPCACHE_MEMORY_MAX_ITEM", "64KiB"),
                ("UPCACHE_MEMORY_PIN_OPERATIONS", "watermark,image.thumbnail"),
            ]),
            none(),
        )
        .unwrap();
        assert_eq!(c.memory_cap, ByteSize::b(0));
        assert_eq!(c.memory_max_item, ByteSize::kib(64));
        assert_eq!(c.memory_pin_operations, ["watermark", "image.thumbnail"]);
        let c = Config::load(None, env(&[("UPCACHE_MEMORY_CAP", "2GiB")]), none()).unwrap();
        assert_eq!(c.memory_cap, ByteSize::gib(2));
    }

    #[test]
    fn bad_settings_are_refused() {
        let none = toml::Table::new;
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(Config::load(None, env("UPCACHE_NOPE", "1"), none()).is_err());
        assert!(Config::load(None, env("UPCACHE_DEFAULT_BLOCK_SIZE", "3000"), none()).is_err());
        assert!(
            Config::load(None, env("UPCACHE_LISTEN", "0.0.0.0:1"), none()).is_err(),
            "open bind needs keys"
        );
        let ok = Config::load(None, env("UPCACHE_API_KEYS", "k1,k2"), {
            let mut t = none();
            t.insert("listen".into(), "0.0.0.0:1".into());
            t
        })
        .unwrap();
        assert_eq!(ok.api_keys, vec!["k1", "k2"]);
    }

    #[test]
    fn disk_cap_ttls_and_admin_keys() {
        let none = toml::Table::new;
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::load(None, Vec::new(), none()).unwrap();
        assert_eq!(c.disk_cap, None, "no cap unless set");
        assert_eq!((c.input_ttl, c.result_ttl), (0, 0));
        let c = Config::load(
            None,
            env(&[
                ("UPCACHE_DISK_CAP", "50GiB"),
                ("UPCACHE_ADMIN_KEYS", "a1,a2"),
                ("UPCACHE_INPUT_TTL", "3600"),
            ]),
            none(),
        )
        .unwrap();
        assert_eq!(c.disk_cap, Some(ByteSize::gib(50)));
        assert_eq!(c.admin_keys, vec!["a1", "a2"]);
        assert_eq!(c.input_ttl, 3600);
        for bad in [
            &[("UPCACHE_DISK_CAP", "0")][..],
            &[("UPCACHE_ADMIN_KEYS", "a1, ")],
            &[("UPCACHE_API_KEYS", "same"), ("UPCACHE_ADMIN_KEYS", "same")],
        ] {
            assert!(Config::load(None, env(bad), none()).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("admin");
        std::fs::write(&keys, "# ops\nadm\n").unwrap();
        let mut t = none();
        t.insert("admin_keys_file".into(), keys.display().to_string().into());
        assert_eq!(
            Config::load(None, Vec::new(), t).unwrap().admin_keys,
            vec!["adm"]
        );
    }

    #[test]
    fn url_keys_and_salts_pair_up() {
        let none = toml::Table::new;
        let env = |k: &str, s: &str| {
            vec![
                ("UPCACHE_URL_KEY".to_string(), k.to_string()),
                ("UPCACHE_URL_SALT".to_string(), s.to_string()),
            ]
        };
        let c = Config::load(None, env("0a0b,1234", "ff,00ee"), none()).unwrap();
        let pairs = c.url_signing_pairs().unwrap();
        assert_eq!(pairs[1], (vec![0x12, 0x34], vec![0x00, 0xee]));
        let one = Config::load(None, env("1234", "5678"), none()).unwrap();
        assert_eq!(one.url_key, vec!["1234"], "digits only are still hex");
        assert!(Config::load(None, env("0a0b,1234", "ff"), none()).is_err());
        assert!(Config::load(None, env("xyz", "ff"), none()).is_err());
    }

    #[test]
    fn api_keys_are_never_empty() {
        let none = toml::Table::new;
        let env = |v: &str| vec![("UPCACHE_API_KEYS".to_string(), v.to_string())];
        for bad in ["k1,,k2", " ", "k1, "] {
            let refused = Config::load(None, env(bad), none()).unwrap_err();
            assert!(
                refused.to_string().contains("api_keys"),
                "{bad:?}: {refused}"
            );
        }
        let one = Config::load(None, env("solo"), none()).unwrap();
        assert_eq!(one.api_keys, vec!["solo"], "a single key needs no comma");
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, "# staging\nk1\n\n   \n  # old: k0\nk2 \n").unwrap();
        let mut t = none();
        t.insert("api_keys_file".into(), keys.display().to_string().into());
        let from_file = Config::load(None, Vec::new(), t.clone()).unwrap();
        assert_eq!(from_file.api_keys, vec!["k1", "k2"]);
        let file = dir.path().join("upcache.toml");
        std::fs::write(&file, "api_keys = [\"k\", \"\"]\n").unwrap();
        assert!(Config::load(Some(&file), Vec::new(), none()).is_err());
    }

    #[test]
    fn token_keys_rotate_and_default_to_ephemeral() {
        let none = toml::Table::new;
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let c = Config::load(None, Vec::new(), none()).unwrap();
        assert_eq!(c.minting_key().kid(), "ephemeral");
        assert!(c.demo_enabled(), "on by default on loopback");
        let new = "k2:000102030405060708090a0b0c0d0e0f";
        let old = "k1:0f0e0d0c0b0a09080706050403020100";
        let c = Config::load(
            None,
            env("UPCACHE_TOKEN_KEYS", &format!("{new},{old}")),
            none(),
        )
        .unwrap();
        assert_eq!(c.minting_key().kid(), "k2", "the first key signs");
        assert!(c.signing_key("k1").is_some(), "the old one still verifies");
        assert!(c.signing_key("k3").is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token-keys");
        std::fs::write(&file, format!("# rotated in\n{old}\n")).unwrap();
        let mut t = none();
        t.insert("token_keys_file".into(), file.display().to_string().into());
        let c = Config::load(None, env("UPCACHE_TOKEN_KEYS", new), t).unwrap();
        assert_eq!(c.signing_keys.len(), 2);
        for bad in [
            "k1:00",
            "k1",
            "k.1:000102030405060708090a0b0c0d0e0f",
            &format!("{new},{new}"),
        ] {
            let e = Config::load(None, env("UPCACHE_TOKEN_KEYS", bad), none()).unwrap_err();
            assert!(e.to_string().contains("token_keys"), "{bad}: {e}");
            assert!(!e.to_string().contains("0001020304"), "no secret in {e}");
        }
        assert!(Config::load(None, env("UPCACHE_API_KEYS", "upc1.x"), none()).is_err());
        let mut public = none();
        public.insert("listen".into(), "0.0.0.0:1".into());
        public.insert("allow_unauthenticated".into(), true.into());
        assert!(!Config::load(None, Vec::new(), public.clone())
            .unwrap()
            .demo_enabled());
        public.insert("demo".into(), true.into());
        assert!(Config::load(None, Vec::new(), public)
            .unwrap()
            .demo_enabled());
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_is_off_unless_configured() {
        let c = Config::load(
            None,
            vars(&[("AWS_ACCESS_KEY_ID", "AKIA")]),
            toml::Table::new(),
        );
        assert!(
            c.unwrap().s3.is_none(),
            "AWS variables alone turn nothing on"
        );
    }

    #[test]
    fn s3_settings_layer_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let file = dir.path().join("upcache.toml");
        std::fs::write(
            &file,
            format!(
                "[s3]\nbucket = \"results\"\nregion = \"eu-west-1\"\nprefix = \"/team/a\"\n\
                 access_key_id = \"AKIAFILE\"\nsecret_access_key_file = {:?}\n",
                secret.display().to_string()
            ),
        )
        .unwrap();
        let env = vars(&[
            ("UPCACHE_S3_ENDPOINT", "http://127.0.0.1:8333"),
            ("UPCACHE_S3_PATH_STYLE", "true"),
            ("UPCACHE_S3_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "from-env"),
        ]);
        let s3 = Config::load(Some(&file), env, toml::Table::new())
            .unwrap()
            .s3
            .unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s3.bucket, "results");
        assert_eq!(s3.region.as_deref(), Some("us-east-2"), "env beats file");
        assert!(s3.path_style);
        assert_eq!(s3.prefix, "team/a/", "prefix normalised");
        let creds = s3.credentials.unwrap();
        assert_eq!(creds.access_key_id, "AKIAFILE", "the setting beats AWS_*");
        assert_eq!(creds.secret_access_key, "s3cr3t");
        assert!(
            !format!("{creds:?}").contains("s3cr3t"),
            "no secret in Debug"
        );
    }

    #[test]
    fn s3_from_the_environment_alone_with_aws_keys() {
        let env = vars(&[
            ("UPCACHE_S3_BUCKET", "b-1.x"),
            ("UPCACHE_S3_PREFIX", "p"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "from-env"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let s3 = Config::load(None, env, toml::Table::new())
            .unwrap()
            .s3
            .unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b-1.x", "p/"));
        assert!(!s3.path_style);
        assert_eq!(
            s3.credentials,
            Some(S3Credentials {
                access_key_id: "AKIAENV".into(),
                secret_access_key: "from-env".into(),
                session_token: Some("tok".into()),
            })
        );
        let bare = Config::load(
            None,
            vars(&[("UPCACHE_S3_BUCKET", "bkt")]),
            toml::Table::new(),
        );
        assert_eq!(
            bare.unwrap().s3.unwrap().credentials,
            None,
            "no key at all: the usual AWS sources"
        );
    }

    #[test]
    fn redirects_are_off_by_default_and_set_in_human_sizes() {
        let load = |pairs: &[(&str, &str)]| {
            Config::load(None, vars(pairs), toml::Table::new()).map(|c| c.s3.unwrap())
        };
        let s3 = load(&[("UPCACHE_S3_BUCKET", "bkt")]).unwrap();
        assert_eq!(s3.redirect_above, None, "off by default");
        assert_eq!(s3.redirect_ttl, 300);
        let s3 = load(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_ABOVE", "8MiB"),
            ("UPCACHE_S3_REDIRECT_TTL", "60"),
        ])
        .unwrap();
        assert_eq!(s3.redirect_above, Some(ByteSize::mib(8)));
        assert_eq!(s3.redirect_ttl, 60);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("upcache.toml");
        std::fs::write(
            &file,
            "[s3]\nbucket = \"bkt\"\nredirect_above = \"512KiB\"\nredirect_ttl = 900\n",
        )
        .unwrap();
        let s3 = Config::load(Some(&file), Vec::new(), toml::Table::new())
            .unwrap()
            .s3
            .unwrap();
        assert_eq!(s3.redirect_above, Some(ByteSize::kib(512)));
        assert_eq!(s3.redirect_ttl, 900);

        let refused = |pairs: &[(&str, &str)]| load(pairs).unwrap_err().to_string();
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_TTL", "0"),
        ]);
        assert!(
            e.contains("redirect_ttl 0 is not between 1 and 604800"),
            "{e}"
        );
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_TTL", "604801"),
        ]);
        assert!(e.contains("redirect_ttl"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_TTL", "5m"),
        ]);
        assert!(
            e.contains("UPCACHE_S3_REDIRECT_TTL") && e.contains("not a whole number"),
            "{e}"
        );
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_ABOVE", "0"),
        ]);
        assert!(e.contains("redirect_above is 0"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_REDIRECT_ABOVE", "lots"),
        ]);
        assert!(e.contains("lots"), "an unreadable size is quoted: {e}");
    }

    #[test]
    fn write_behind_and_breaker_settings_layer_and_are_bounded() {
        let load = |pairs: &[(&str, &str)]| {
            Config::load(None, vars(pairs), toml::Table::new()).map(|c| c.s3.unwrap())
        };
        let s3 = load(&[("UPCACHE_S3_BUCKET", "bkt")]).unwrap();
        assert_eq!(
            (
                s3.write_behind_concurrency,
                s3.breaker_failures,
                s3.breaker_slow,
                s3.breaker_cooldown
            ),
            (4, 5, 10, 5),
            "the defaults"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("upcache.toml");
        std::fs::write(
            &file,
            "[s3]\nbucket = \"bkt\"\nwrite_behind_concurrency = 16\nbreaker_failures = 3\n\
             breaker_slow = 30\nbreaker_cooldown = 20\n",
        )
        .unwrap();
        let s3 = Config::load(
            Some(&file),
            vars(&[("UPCACHE_S3_BREAKER_COOLDOWN", "2")]),
            toml::Table::new(),
        )
        .unwrap()
        .s3
        .unwrap();
        assert_eq!(s3.write_behind_concurrency, 16);
        assert_eq!(s3.breaker_failures, 3);
        assert_eq!(s3.breaker_slow, 30);
        assert_eq!(s3.breaker_cooldown, 2, "env beats file");
        let s3 = load(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_WRITE_BEHIND_CONCURRENCY", "1"),
            ("UPCACHE_S3_BREAKER_FAILURES", "1000"),
            ("UPCACHE_S3_BREAKER_SLOW", "3600"),
        ])
        .unwrap();
        assert_eq!(
            (
                s3.write_behind_concurrency,
                s3.breaker_failures,
                s3.breaker_slow
            ),
            (1, 1000, 3600),
            "the bounds are allowed"
        );

        for (var, value, says) in [
            (
                "WRITE_BEHIND_CONCURRENCY",
                "0",
                "write_behind_concurrency 0 is not between 1 and 256",
            ),
            (
                "WRITE_BEHIND_CONCURRENCY",
                "257",
                "write_behind_concurrency 257",
            ),
            (
                "BREAKER_FAILURES",
                "0",
                "breaker_failures 0 is not between 1 and 1000",
            ),
            (
                "BREAKER_SLOW",
                "0",
                "breaker_slow (seconds) 0 is not between 1 and 3600",
            ),
            (
                "BREAKER_COOLDOWN",
                "3601",
                "breaker_cooldown (seconds) 3601",
            ),
            ("BREAKER_SLOW", "10s", "not a whole number"),
        ] {
            let name = format!("UPCACHE_S3_{var}");
            let e = load(&[("UPCACHE_S3_BUCKET", "bkt"), (name.as_str(), value)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{name}={value}: {e}");
        }
        let e = load(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_BREAKER_FAILURES", "-1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("UPCACHE_S3_BREAKER_FAILURES") && e.contains("not a whole number"),
            "a negative count: {e}"
        );
    }

    #[test]
    fn bad_s3_settings_are_refused_clearly() {
        let refused = |pairs: &[(&str, &str)]| {
            Config::load(None, vars(pairs), toml::Table::new())
                .unwrap_err()
                .to_string()
        };
        let e = refused(&[("UPCACHE_S3_ENDPOINT", "http://localhost:1")]);
        assert!(e.contains("bucket is required"), "{e}");
        let e = refused(&[("UPCACHE_S3_BUCKET", "Has_Caps")]);
        assert!(e.contains("not a bucket name"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_ENDPOINT", "localhost:9000"),
        ]);
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_PATH_STYLE", "yes"),
        ]);
        assert!(e.contains("UPCACHE_S3_PATH_STYLE"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_PREFIX", "a/../b"),
        ]);
        assert!(e.contains("prefix"), "{e}");
        let e = refused(&[("UPCACHE_S3_BUKET", "bkt")]);
        assert!(
            e.contains("unknown environment variable UPCACHE_S3_BUKET"),
            "{e}"
        );
        let e = refused(&[("UPCACHE_S3_BUCKET", "bkt"), ("AWS_ACCESS_KEY_ID", "AKIA")]);
        assert!(e.contains("no secret"), "{e}");
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_SECRET_ACCESS_KEY_FILE", "/nonexistent/secret"),
        ]);
        assert!(
            e.contains("/nonexistent/secret"),
            "an unreadable secret file is named: {e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = refused(&[
            ("UPCACHE_S3_BUCKET", "bkt"),
            ("UPCACHE_S3_ACCESS_KEY_ID", "AKIA"),
            ("UPCACHE_S3_SECRET_ACCESS_KEY_FILE", empty.to_str().unwrap()),
        ]);
        assert!(e.contains("is empty"), "{e}");
        let file = dir.path().join("upcache.toml");
        std::fs::write(&file, "[s3]\nbucket = \"bkt\"\nendpont = \"x\"\n").unwrap();
        let e = Config::load(Some(&file), Vec::new(), toml::Table::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("endpont"), "a misspelt setting is named: {e}");
    }
}
