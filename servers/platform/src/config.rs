//! The server configuration: embedded defaults, then an optional `corral.toml`,
//! then `CORRAL_*` environment overrides, then command-line flags.
//!
//! Keys the server owns (`listen`, `base_domain`, `data_dir`, `[http]`,
//! `[admin]`, `[routing]`) are typed here; every other key (`default_tier`, `[tiers.*]`,
//! thresholds, …) belongs to the platform and is kept in
//! [`ServerConfig::platform`] untouched, so the server never duplicates the
//! platform's settings.
//!
//! Environment overrides: `CORRAL_<KEY>` sets a top-level key and `__`
//! separates nesting levels, so `CORRAL_LISTEN=0.0.0.0:80` sets `listen` and
//! `CORRAL_HTTP__DRAIN_TIMEOUT=5s` sets `http.drain_timeout`. Only the
//! settings that `deploy/corral.toml` documents (any tier name under
//! `tiers`) are read this way; any other `CORRAL_*` variable is ignored with a
//! warning naming the closest setting ([`ServerConfig::env_warnings`]), never
//! a refusal to start. `CORRAL_CONFIG` (the config file), `CORRAL_LOG` (the log
//! filter), and `CORRAL_TOKEN` and `CORRAL_URL` (reserved for clients) are not
//! settings and are ignored silently.
//!
//! ```
//! use std::collections::BTreeMap;
//! use corral_server::config::ServerConfig;
//!
//! let env = BTreeMap::from([("CORRAL_HTTP__MAX_URI_BYTES".to_string(), "4096".to_string())]);
//! let cfg = ServerConfig::load(Some("listen = \"127.0.0.1:9000\""), &env).unwrap();
//! assert_eq!(cfg.listen.port(), 9000);
//! assert_eq!(cfg.http.max_uri_bytes, 4096);
//! assert_eq!(cfg.data_dir.to_str(), Some("./corral-data"));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The embedded defaults: what the server runs on with no config file.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Environment variables starting with this prefix override settings.
pub const ENV_PREFIX: &str = "CORRAL_";

/// `CORRAL_*` variables that are not settings: the config file, the log
/// filter, the variables reserved for clients of the admin API, and the
/// storage tests' PostgreSQL server (set around a whole test run).
pub const NOT_SETTINGS: &[&str] = &[
    "CORRAL_CONFIG",
    "CORRAL_LOG",
    "CORRAL_TOKEN",
    "CORRAL_URL",
    "CORRAL_TEST_PG_URL",
];

/// The documented settings: the commented sample config, whose every key
/// (commented out or not) is a setting an environment variable may name.
const REFERENCE: &str = include_str!("../../../deploy/corral.toml");

/// Where configuration values from the environment come from.
///
/// [`ProcessEnv`] reads the real environment; a `BTreeMap<String, String>`
/// lets tests feed values without touching it.
///
/// ```
/// use std::collections::BTreeMap;
/// use corral_server::config::EnvSource;
/// let env = BTreeMap::from([("CORRAL_LISTEN".to_string(), "0.0.0.0:80".to_string())]);
/// assert_eq!(env.vars_with_prefix("CORRAL_").len(), 1);
/// ```
pub trait EnvSource {
    /// Every `(name, value)` pair whose name starts with `prefix`, sorted by name.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        v.sort();
        v
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A layer (defaults, file) is not valid TOML.
    #[error("{origin} is not valid TOML: {source}")]
    Parse {
        /// `"embedded defaults"` or the file name.
        origin: String,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// An environment override names no setting or holds a bad value.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The merged settings do not fit the schema (unknown key, wrong type, bad value).
    #[error("invalid configuration: {source}")]
    Invalid {
        /// The deserializer's error.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {key}: {reason}")]
    Range {
        /// The dotted key.
        key: &'static str,
        /// The allowed range.
        reason: &'static str,
    },
}

/// HTTP-level limits of the frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Largest request head (request line plus headers) in bytes; larger → 431,
    /// to the byte. Heads up to 4096 bytes under it are always served; one
    /// between that and the limit is served when it arrives in few enough
    /// reads (see [`crate::http::READ_CHUNK`]). At least 12288. Default: 16384.
    pub max_header_bytes: usize,
    /// Longest request target (path and query) in bytes; longer → 414. Default: 8192.
    pub max_uri_bytes: usize,
    /// Most header fields in one request; more → 431. Default: 100.
    pub max_headers: usize,
    /// Time a client has to send a complete request head (slowloris guard).
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may run before their
    /// connections are closed. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Whether HTTP/1.1 connections are kept alive between requests. Default: true.
    pub keep_alive: bool,
    /// Largest request body for admin uploads when no tier cap applies, in bytes.
    /// Default: 64 MiB.
    pub max_admin_body_bytes: u64,
    /// Time a client has to send a whole request body, counted from the
    /// first read of it (one deadline for the body, not per chunk, so a byte
    /// a minute is cut too); later → 408 `body_timeout`. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1.1 keep-alive and HTTP/2 alike; HTTP/2 gets a GOAWAY first).
    /// Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen
    /// backlog until one closes. Default: 4096.
    pub max_connections: u32,
    /// Host-wide cap on request-body bytes held in memory at once, across
    /// every request (tenant and admin); a body that would pass it →
    /// 503 `body_buffer_full`. Default: 256 MiB.
    pub max_buffered_body_bytes: u64,
    /// Most concurrent streams (requests) on one HTTP/2 connection. Default: 100.
    pub h2_max_concurrent_streams: u32,
}

/// Admin API settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// An argon2 PHC hash of the admin token. When unset, the hash is kept in
    /// `<data_dir>/admin-token.argon2`, created with a fresh token (printed
    /// once) on first start. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    /// Admin requests served at once, apart from tenant traffic (the admin
    /// reserve). Default: 8.
    pub max_concurrent: usize,
}

/// How tenants are reached, and where the admin API answers.
///
/// Subdomain routing (`<app>.<base_domain>`) gives every app its own browser
/// origin; path routing (`/apps/<app>/`) puts every app, and the admin API,
/// on one origin. With `base_domain` set, `path = false` switches path
/// routing off and `admin_host` binds the admin API to its own host name.
///
/// ```
/// use corral_server::config::ServerConfig;
/// let cfg = ServerConfig::load(
///     Some("base_domain = \"example.com\"\n[routing]\npath = false\nadmin_host = \"admin.example.com\""),
///     &corral_server::cli::no_env(),
/// )
/// .unwrap();
/// assert!(!cfg.routing.path);
/// assert_eq!(cfg.routing.admin_host.as_deref(), Some("admin.example.com"));
///
/// // Without subdomains there would be no way left to reach an app.
/// assert!(ServerConfig::load(Some("[routing]\npath = false"), &corral_server::cli::no_env()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// Whether `/apps/<app>/…` reaches app `<app>`. `false` answers those
    /// paths 404; only allowed when `base_domain` is set. Default: true.
    pub path: bool,
    /// When set, `/api/*` answers only for requests whose host is this name
    /// (404 elsewhere), and that host serves no app by host or path.
    /// `/healthz`, `/readyz`, `/metrics` and `/api/tls-ask` (which a TLS
    /// proxy asks over loopback) answer on every host. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_host: Option<String>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            path: true,
            admin_host: None,
        }
    }
}

/// This node among others (`[nodes]`), for moving apps between them
/// (`POST /api/apps/{name}/move`, see `crate::moves`).
///
/// ```
/// use corral_server::config::ServerConfig;
/// let cfg = ServerConfig::load(
///     Some("[nodes]\nname = \"node1\"\nproxy_socket = \"/run/haproxy/corral.sock\"\n[nodes.peers]\nnode2 = \"http://10.0.0.12:8080\""),
///     &corral_server::cli::no_env(),
/// )
/// .unwrap();
/// assert_eq!(cfg.nodes.peers["node2"], "http://10.0.0.12:8080");
/// assert_eq!(cfg.nodes.proxy_map(), "/etc/haproxy/corral-moves.map");
///
/// // A peer is reached over plain HTTP on a private network: a URL with a path is a mistake.
/// let bad = "[nodes.peers]\nnode2 = \"http://10.0.0.12:8080/api\"";
/// assert!(ServerConfig::load(Some(bad), &corral_server::cli::no_env()).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NodesConfig {
    /// This node's name, as the proxy's config names it (HAProxy's `server`
    /// name). Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The other nodes an app may move to: name → `http://host:port`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peers: std::collections::BTreeMap<String, String>,
    /// HAProxy's runtime API, a unix socket path or `host:port`: a move
    /// points the app at its new node in the moves map through it. Unset:
    /// this node forwards the moved app's requests itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_socket: Option<String>,
    /// The map file HAProxy's config reads moves from. Default:
    /// `/etc/haproxy/corral-moves.map`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_map: Option<String>,
}

impl NodesConfig {
    /// The moves map HAProxy reads (see [`NodesConfig::proxy_map`](Self#structfield.proxy_map)).
    pub fn proxy_map(&self) -> &str {
        self.proxy_map
            .as_deref()
            .unwrap_or("/etc/haproxy/corral-moves.map")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // Names and paths go into HAProxy's command line: no spaces, no separators.
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./@:".contains(&b))
        };
        let names_ok = self.name.iter().chain(self.peers.keys()).all(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !names_ok {
            return Err(ConfigError::Range {
                key: "nodes.name / nodes.peers",
                reason: "node names are letters, digits, '-' and '_'",
            });
        }
        let urls_ok = self.peers.values().all(|u| {
            u.parse::<http::Uri>().is_ok_and(|u| {
                u.scheme_str() == Some("http")
                    && u.authority().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str() == "/")
            })
        });
        if !urls_ok {
            return Err(ConfigError::Range {
                key: "nodes.peers",
                reason: "each peer is http://host:port (plain HTTP on the private network, no path)",
            });
        }
        if !self
            .proxy_socket
            .iter()
            .chain(self.proxy_map.iter())
            .all(|s| plain(s))
        {
            return Err(ConfigError::Range {
                key: "nodes.proxy_socket / nodes.proxy_map",
                reason: "must be a path or host:port without spaces",
            });
        }
        Ok(())
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on. Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Directory holding the database, artifacts and the admin token hash.
    /// Default: `./corral-data`.
    pub data_dir: PathBuf,
    /// Tenants are served at `<app>.<base_domain>` when set. Default: unset
    /// (path `/apps/<app>/` and header `X-Corral-App` still work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_domain: Option<String>,
    /// HTTP limits.
    pub http: HttpLimits,
    /// Admin API settings.
    pub admin: AdminConfig,
    /// Tenant routing and the admin host.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// This node among others: its name, its peers and the proxy's runtime
    /// API, for moving apps between nodes.
    #[serde(default)]
    pub nodes: NodesConfig,
    /// Every other key: the platform's settings (`default_tier`, `[tiers.*]`,
    /// …), passed to `corral::PlatformConfig` as is.
    #[serde(flatten)]
    pub platform: toml::Table,
    /// `CORRAL_*` variables that were ignored because they name no setting,
    /// one message each (the server logs them as warnings at start).
    #[serde(skip)]
    pub env_warnings: Vec<String>,
}

impl ServerConfig {
    /// Merges the embedded defaults, `file` (the text of a `corral.toml`, if
    /// any) and the `CORRAL_*` variables of `env`, and validates the result.
    pub fn load(file: Option<&str>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Self::load_named(file.map(|f| ("config file", f)), env)
    }

    /// Reads `path` (when given) and calls [`ServerConfig::load`].
    pub fn load_file(path: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
            ),
            None => None,
        };
        let name = path.map(|p| p.display().to_string());
        Self::load_named(name.as_deref().zip(text.as_deref()), env)
    }

    fn load_named(file: Option<(&str, &str)>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let mut merged: toml::Table =
            toml::from_str(DEFAULTS).map_err(|source| ConfigError::Parse {
                origin: "embedded defaults".into(),
                source,
            })?;
        if let Some((origin, text)) = file {
            let layer: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
                origin: origin.into(),
                source,
            })?;
            merge(&mut merged, layer);
        }
        let mut known = documented_settings();
        leaf_paths(&merged, "", &mut known);
        let mut env_warnings = Vec::new();
        for (var, value) in env.vars_with_prefix(ENV_PREFIX) {
            if NOT_SETTINGS.contains(&var.as_str()) {
                continue;
            }
            match setting_path(&var) {
                Some(path) if is_setting(&known, &path) => apply_env(&mut merged, &var, &value)?,
                _ => env_warnings.push(unknown_env_warning(&var, &known)),
            }
        }
        let mut cfg = Self::from_table(merged)?;
        cfg.env_warnings = env_warnings;
        Ok(cfg)
    }

    /// Validates an already merged table.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Invalid { source })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http.max_header_bytes < 8192 + crate::http::READ_CHUNK {
            return Err(ConfigError::Range {
                key: "http.max_header_bytes",
                reason: "must be at least 12288",
            });
        }
        if self.http.max_uri_bytes == 0 || self.http.max_headers == 0 {
            return Err(ConfigError::Range {
                key: "http.max_uri_bytes / http.max_headers",
                reason: "must be positive",
            });
        }
        if self.http.max_connections == 0
            || self.http.max_connections as usize > tokio::sync::Semaphore::MAX_PERMITS
        {
            return Err(ConfigError::Range {
                key: "http.max_connections",
                reason: "must be positive",
            });
        }
        if self.http.h2_max_concurrent_streams == 0 {
            return Err(ConfigError::Range {
                key: "http.h2_max_concurrent_streams",
                reason: "must be positive",
            });
        }
        if self.http.body_read_timeout.is_zero() || self.http.idle_timeout.is_zero() {
            return Err(ConfigError::Range {
                key: "http.body_read_timeout / http.idle_timeout",
                reason: "must be positive",
            });
        }
        if self.admin.max_concurrent == 0 {
            return Err(ConfigError::Range {
                key: "admin.max_concurrent",
                reason: "must be positive",
            });
        }
        if let Some(d) = &self.base_domain
            && (d.is_empty() || d.starts_with('.') || d.ends_with('.') || d.contains(['/', ':']))
        {
            return Err(ConfigError::Range {
                key: "base_domain",
                reason: "must be a domain name such as example.com",
            });
        }
        self.nodes.validate()?;
        if !self.routing.path && self.base_domain.is_none() {
            return Err(ConfigError::Range {
                key: "routing.path",
                reason: "may be false only when base_domain is set (apps would be unreachable)",
            });
        }
        if let Some(h) = &self.routing.admin_host
            && (h.is_empty()
                || h.starts_with('.')
                || h.ends_with('.')
                || h.contains(['/', ':', '@', ' '])
                || h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(ConfigError::Range {
                key: "routing.admin_host",
                reason: "must be a lower-case host name without port, such as admin.example.com",
            });
        }
        Ok(())
    }

    /// The config as TOML text (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// Every setting path the sample config documents (`http.drain_timeout`,
/// `tiers.free.memory_bytes`, `thresholds.ram.fire`, …), commented-out keys
/// included.
fn documented_settings() -> std::collections::BTreeSet<String> {
    let mut known = std::collections::BTreeSet::new();
    let mut table = String::new();
    for line in REFERENCE.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header.split(']').next().unwrap_or("").trim().to_owned();
            continue;
        }
        let line = line.trim_start_matches('#').trim_start();
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let path = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        // An inline table (`ram = { fire = 0.8, rearm = 0.75 }`) documents its keys too.
        if let Some(inner) = rest.trim().strip_prefix('{') {
            for part in inner.trim_end_matches('}').split(',') {
                if let Some((k, _)) = part.split_once('=') {
                    known.insert(format!("{path}.{}", k.trim()));
                }
            }
        }
        known.insert(path);
    }
    known
}

/// Adds the dotted path of every key in `table` (tables and leaves).
fn leaf_paths(table: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(t) = v {
            leaf_paths(t, &path, out);
        }
        out.insert(path);
    }
}

/// `CORRAL_HTTP__DRAIN_TIMEOUT` → `http.drain_timeout`; `None` for an empty segment.
fn setting_path(var: &str) -> Option<String> {
    let segments: Vec<String> = var
        .strip_prefix(ENV_PREFIX)?
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    (!segments.iter().any(String::is_empty)).then(|| segments.join("."))
}

/// Whether `path` names a documented setting; any tier name stands for `free`.
fn is_setting(known: &std::collections::BTreeSet<String>, path: &str) -> bool {
    if known.contains(path) {
        return true;
    }
    let mut parts: Vec<&str> = path.split('.').collect();
    if parts.len() >= 2 && parts[0] == "tiers" {
        if parts.len() == 2 {
            return true; // a whole tier as a TOML inline table
        }
        parts[1] = "free";
        return known.contains(&parts.join("."));
    }
    false
}

/// "CORRAL_FOO is not a setting and is ignored (did you mean CORRAL_…?)".
fn unknown_env_warning(var: &str, known: &std::collections::BTreeSet<String>) -> String {
    let path = setting_path(var).unwrap_or_default();
    let closest = known
        .iter()
        .map(|k| (strsim::levenshtein(k, &path), k))
        .filter(|(d, k)| *d <= k.len().max(path.len()) / 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| {
            k.split('.')
                .collect::<Vec<_>>()
                .join("__")
                .to_ascii_uppercase()
        });
    match closest {
        Some(c) => format!(
            "environment variable {var} names no setting and is ignored (did you mean {ENV_PREFIX}{c}?)"
        ),
        None => format!("environment variable {var} names no setting and is ignored"),
    }
}

/// Deep-merges `layer` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets the key named by `var` (`CORRAL_A__B_C` → `a.b_c`) to `value`, typed
/// like the value it replaces (or as a TOML literal when it is new).
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::Env {
        var: var.to_owned(),
        reason,
    };
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(err("empty key segment".into()));
    }
    let (last, parents) = path.split_last().expect("split yields one segment");
    let mut at = table;
    for seg in parents {
        let entry = at
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(err(format!("{seg} is not a table"))),
        };
    }
    let typed = match at.get(last) {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            value
                .parse()
                .map_err(|_| err(format!("{value:?} is not an integer")))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            value
                .parse()
                .map_err(|_| err(format!("{value:?} is not a number")))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            value
                .parse()
                .map_err(|_| err(format!("{value:?} is not true or false")))?,
        ),
        _ => parse_literal(value).unwrap_or_else(|| toml::Value::String(value.to_owned())),
    };
    at.insert(last.clone(), typed);
    Ok(())
}

fn parse_literal(value: &str) -> Option<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {value}")).ok()?;
    doc.get("v").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults() {
        let cfg = ServerConfig::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.data_dir, PathBuf::from("./corral-data"));
        assert_eq!(cfg.base_domain, None);
        assert_eq!(cfg.http.max_header_bytes, 16384);
        assert_eq!(cfg.http.max_uri_bytes, 8192);
        assert_eq!(cfg.http.max_headers, 100);
        assert_eq!(cfg.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.http.drain_timeout, Duration::from_secs(30));
        assert!(cfg.http.keep_alive);
        assert_eq!(cfg.http.max_admin_body_bytes, 64 << 20);
        assert_eq!(cfg.http.body_read_timeout, Duration::from_secs(30));
        assert_eq!(cfg.http.idle_timeout, Duration::from_secs(60));
        assert_eq!(cfg.http.max_connections, 4096);
        assert_eq!(cfg.http.max_buffered_body_bytes, 256 << 20);
        assert_eq!(cfg.http.h2_max_concurrent_streams, 100);
        assert_eq!(cfg.admin.token_hash, None);
        assert_eq!(cfg.admin.max_concurrent, 8);
        assert!(cfg.routing.path);
        assert_eq!(cfg.routing.admin_host, None);
        assert!(cfg.platform.is_empty(), "{:?}", cfg.platform);
    }

    #[test]
    fn file_then_env_then_precedence() {
        let file = r#"
            listen = "0.0.0.0:80"
            base_domain = "example.com"
            default_tier = "pro"
            [http]
            drain_timeout = "5s"
            [tiers.free]
            requests_per_month = 10
        "#;
        let e = env(&[
            ("CORRAL_LISTEN", "127.0.0.1:9999"),
            ("CORRAL_HTTP__KEEP_ALIVE", "false"),
            ("CORRAL_HTTP__MAX_URI_BYTES", "2048"),
            ("CORRAL_TIERS__FREE__REQUESTS_PER_MONTH", "20"),
            ("CORRAL_DEFAULT_TIER", "scale"),
            ("CORRAL_CONFIG", "ignored.toml"),
            ("CORRAL_LOG", "debug"),
            ("OTHER", "x"),
        ]);
        let cfg = ServerConfig::load(Some(file), &e).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(cfg.base_domain.as_deref(), Some("example.com"));
        assert!(cfg.routing.path, "routing defaults apply under a file");
        assert_eq!(cfg.http.drain_timeout, Duration::from_secs(5));
        assert_eq!(cfg.http.header_read_timeout, Duration::from_secs(10));
        assert!(!cfg.http.keep_alive);
        assert_eq!(cfg.http.max_uri_bytes, 2048);
        assert_eq!(
            cfg.platform["default_tier"],
            toml::Value::String("scale".into())
        );
        assert_eq!(
            cfg.platform["tiers"]["free"]["requests_per_month"],
            toml::Value::Integer(20)
        );
    }

    #[test]
    fn errors_are_typed() {
        let bad_type = ServerConfig::load(None, &env(&[("CORRAL_HTTP__MAX_URI_BYTES", "lots")]));
        assert!(
            matches!(&bad_type, Err(ConfigError::Env { var, .. }) if var == "CORRAL_HTTP__MAX_URI_BYTES"),
            "{bad_type:?}"
        );
        let unknown = ServerConfig::load(Some("[http]\nmax_body = 1"), &env(&[]));
        assert!(
            matches!(unknown, Err(ConfigError::Invalid { .. })),
            "{unknown:?}"
        );
        let syntax = ServerConfig::load(Some("listen = "), &env(&[]));
        assert!(
            matches!(syntax, Err(ConfigError::Parse { .. })),
            "{syntax:?}"
        );
        let small = ServerConfig::load(Some("[http]\nmax_header_bytes = 100"), &env(&[]));
        assert!(
            matches!(
                small,
                Err(ConfigError::Range {
                    key: "http.max_header_bytes",
                    ..
                })
            ),
            "{small:?}"
        );
        for (var, key) in [
            ("CORRAL_HTTP__MAX_CONNECTIONS", "http.max_connections"),
            (
                "CORRAL_HTTP__H2_MAX_CONCURRENT_STREAMS",
                "http.h2_max_concurrent_streams",
            ),
        ] {
            let zero = ServerConfig::load(None, &env(&[(var, "0")]));
            assert!(
                matches!(&zero, Err(ConfigError::Range { key: k, .. }) if *k == key),
                "{zero:?}"
            );
        }
        let instant = ServerConfig::load(None, &env(&[("CORRAL_HTTP__BODY_READ_TIMEOUT", "0s")]));
        assert!(
            matches!(instant, Err(ConfigError::Range { .. })),
            "{instant:?}"
        );
        let addr = ServerConfig::load(None, &env(&[("CORRAL_LISTEN", "nowhere")]));
        assert!(matches!(addr, Err(ConfigError::Invalid { .. })), "{addr:?}");
        let domain = ServerConfig::load(Some("base_domain = \".example.com\""), &env(&[]));
        assert!(matches!(
            domain,
            Err(ConfigError::Range {
                key: "base_domain",
                ..
            })
        ));
        let path_off = ServerConfig::load(Some("[routing]\npath = false"), &env(&[]));
        assert!(
            matches!(
                path_off,
                Err(ConfigError::Range {
                    key: "routing.path",
                    ..
                })
            ),
            "{path_off:?}"
        );
        let path_off_env = ServerConfig::load(None, &env(&[("CORRAL_ROUTING__PATH", "false")]));
        assert!(matches!(path_off_env, Err(ConfigError::Range { .. })));
        for bad in [
            "",
            "Admin.example.com",
            "admin.example.com:8080",
            "a/b",
            ".x.com",
        ] {
            let r =
                ServerConfig::load(Some(&format!("[routing]\nadmin_host = {bad:?}")), &env(&[]));
            assert!(
                matches!(
                    r,
                    Err(ConfigError::Range {
                        key: "routing.admin_host",
                        ..
                    })
                ),
                "{bad:?}: {r:?}"
            );
        }
        let unknown_routing = ServerConfig::load(Some("[routing]\nhosts = 1"), &env(&[]));
        assert!(matches!(unknown_routing, Err(ConfigError::Invalid { .. })));
        let missing =
            ServerConfig::load_file(Some(Path::new("/nonexistent/corral.toml")), &env(&[]));
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }

    #[test]
    fn unknown_env_variables_warn_and_never_refuse() {
        let cfg = ServerConfig::load(
            None,
            &env(&[
                ("CORRAL_TOKEN", "corral_secret"),
                ("CORRAL_URL", "http://127.0.0.1:8080"),
                ("CORRAL_FOO", "1"),
                ("CORRAL_HTTP__DRAIN_TIMOUT", "5s"),
                ("CORRAL_SERVER", "x"),
                ("CORRAL_TIERS__GOLD__MEMORY_BYTES", "1048576"),
                ("CORRAL_THRESHOLDS__RAM__FIRE", "0.9"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.env_warnings.len(), 3, "{:?}", cfg.env_warnings);
        assert!(
            cfg.env_warnings[0].contains("CORRAL_FOO"),
            "{:?}",
            cfg.env_warnings
        );
        assert!(
            cfg.env_warnings[1].contains("did you mean CORRAL_HTTP__DRAIN_TIMEOUT?"),
            "{:?}",
            cfg.env_warnings
        );
        assert!(
            cfg.env_warnings[2].contains("CORRAL_SERVER"),
            "{:?}",
            cfg.env_warnings
        );
        assert!(
            !cfg.env_warnings
                .iter()
                .any(|w| w.contains("TOKEN") || w.contains("URL"))
        );
        assert_eq!(cfg.http.drain_timeout, Duration::from_secs(30));
        assert_eq!(
            cfg.platform["tiers"]["gold"]["memory_bytes"],
            toml::Value::Integer(1 << 20)
        );
        assert_eq!(
            cfg.platform["thresholds"]["ram"]["fire"],
            toml::Value::Float(0.9)
        );
        assert!(!cfg.platform.contains_key("token") && !cfg.platform.contains_key("foo"));
    }

    #[test]
    fn new_env_keys_are_typed_as_literals() {
        let cfg = ServerConfig::load(
            None,
            &env(&[
                ("CORRAL_BASE_DOMAIN", "apps.example.com"),
                ("CORRAL_CACHE_BYTES", "1048576"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.base_domain.as_deref(), Some("apps.example.com"));
        assert_eq!(cfg.platform["cache_bytes"], toml::Value::Integer(1 << 20));
    }

    /// The commented sample in deploy/ loads with the real loader, and its
    /// tiers are exactly the presets.
    #[test]
    fn sample_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/corral.toml");
        let cfg = ServerConfig::load_file(Some(&path), &env(&[])).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/corral"));
        assert_eq!(cfg.base_domain.as_deref(), Some("example.com"));
        let defaults = ServerConfig::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.http, defaults.http);
        assert_eq!(cfg.admin, defaults.admin);
        // Routing is the one section the sample sets off its default: with
        // base_domain, apps on subdomains only and the admin API on the apex.
        assert_eq!(defaults.routing, RoutingConfig::default());
        assert!(!cfg.routing.path);
        assert_eq!(cfg.routing.admin_host.as_deref(), Some("example.com"));
        let tiers = cfg.platform["tiers"].as_table().unwrap();
        let names: Vec<&str> = tiers.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["free", "omni-core", "pilot", "pro", "scale", "sovereign"]
        );
        for (name, table) in tiers {
            let tier: corral_limits::Tier = table.clone().try_into().unwrap();
            assert_eq!(tier, corral_limits::Tier::preset(name).unwrap(), "{name}");
        }
        // Every platform setting in the sample is a real one, at its default.
        let pc = crate::app::platform_config(&cfg).unwrap();
        pc.validate().unwrap();
        let default = corral::platform::PlatformConfig::with_data_dir(&pc.data_dir);
        assert_eq!(pc, default);
    }

    #[test]
    fn round_trips_through_toml() {
        let cfg = ServerConfig::load(
            Some("base_domain = \"x.test\"\n[tiers.free]\napps = 1"),
            &env(&[]),
        )
        .unwrap();
        let again = ServerConfig::load(Some(&cfg.to_toml()), &env(&[])).unwrap();
        assert_eq!(cfg, again);
    }
}
