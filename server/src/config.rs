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
    /// Seconds a failed operation is remembered before a create retries it.
    pub failure_ttl: u64,
    /// Seconds an upload may sit untouched before it expires.
    pub upload_ttl: u64,
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
        for (name, value) in env {
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
        config.validated()
    }

    fn optional_fields() -> &'static [&'static str] {
        &["api_keys_file", "token_keys_file", "demo"]
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
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            self.api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
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
}
