//! The platform's settings, readable from the `[platform]` part of `corral.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use corral_limits::Tier;
use corral_metering::Thresholds;
use serde::{Deserialize, Serialize};

/// Settings of a [`Platform`](super::Platform). `Default` is the embedded
/// default a server runs with when given no configuration.
///
/// Every field has a default, so a TOML file names only what it changes:
///
/// ```
/// use corral::platform::PlatformConfig;
/// let cfg = toml::from_str::<PlatformConfig>(r#"
///     data_dir = "/var/lib/corral"
///     default_tier = "pro"
///     [tiers.hobby]
///     compute_shares = 1
///     memory_bytes = 33554432
///     fuel_per_request = 1000000
///     wall_clock = "2s"
///     burst = 10
///     rate_per_minute = 30
///     max_body_bytes = 65536
///     max_bundle_bytes = 1048576
///     idle_timeout = "1m"
///     max_streams = 1
/// "#).unwrap().with_presets();
/// assert_eq!(cfg.default_tier, "pro");
/// assert!(cfg.tiers.contains_key("hobby") && cfg.tiers.contains_key("free"));
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PlatformConfig {
    /// Where the SQLite database and precompiled artifacts live. Default `./corral-data`.
    pub data_dir: PathBuf,
    /// Tiers by name. The presets (`free`, `pro`, `scale`, `pilot`,
    /// `sovereign`, `omni-core`) are always present; tiers named here are
    /// added, or replace a preset of the same name.
    pub tiers: BTreeMap<String, Tier>,
    /// The tier a deploy gets when it names none. Default `free`.
    pub default_tier: String,
    /// Bytes of the static-asset cache; `None` (default) = the host budget's.
    pub cache_bytes: Option<u64>,
    /// Objects larger than this are streamed from storage, never cached. Default 1 MiB.
    pub cache_max_object_bytes: u64,
    /// Host-wide execution slots (requests, and event-stream steps) for
    /// shared tiers; `None` (default) = the host budget's.
    pub runtime_slots: Option<usize>,
    /// How long a request waits for a compute share of its app, and then for
    /// a host runtime slot, before it is refused with 429 `overloaded`.
    /// Default 100 ms; `"0s"` refuses at once. The wait absorbs bursts and
    /// paces a client hammering a saturated app, so its refusals cost the
    /// host little.
    #[serde(with = "humantime_serde")]
    pub queue_wait: Duration,
    /// How often usage totals are written to the store. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub usage_flush_interval: Duration,
    /// Keeps the usage counters in memory-mapped files in `data_dir`
    /// (`usage-ID.journal`, `account-usage-ID.journal`, one each per
    /// process, deleted once handed over), so a node that is killed
    /// (SIGKILL, OOM killer, a crash) loses none of the usage it had not
    /// flushed: the next start with the same data dir adds it to the store,
    /// exactly once. Costs nothing per request (the same atomic adds, in the
    /// file's pages) and about 600 bytes of file per metered app. A power
    /// loss can still lose what the kernel had not written back. Default on.
    pub usage_journal: bool,
    /// How often idle tenants are looked for and parked. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub park_sweep_interval: Duration,
    /// How often this node looks in the store for apps deployed, redeployed
    /// or removed through other nodes that share it (`[storage] url` on one
    /// PostgreSQL): the longest a change made on one node takes to reach
    /// another. `None` (default): never, right for a store of its own.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_sync_interval: Option<Duration>,
    /// Host thresholds (RAM, disk, CPU) that fire the expansion hook.
    pub thresholds: Thresholds,
    /// URL the expansion hook POSTs its JSON event to (http only). Default none.
    pub hook_url: Option<String>,
    /// Command the expansion hook runs with the JSON event on stdin. Default none.
    pub hook_command: Option<PathBuf>,
    /// Bytes kept back for the OS before the budget is derived; `None` = metering's default.
    pub os_overhead_bytes: Option<u64>,
    /// How many tenants get their own Prometheus series (the busiest). Default 50.
    pub metrics_top_tenants: usize,
    /// Where apps, accounts, bundles, artifacts, KV, usage and config are
    /// stored (`[storage]`). Default: the SQLite file `<data_dir>/corral.db`.
    pub storage: StorageSettings,
}

/// The `[storage]` table: which database backs the platform.
///
/// ```
/// use corral::platform::PlatformConfig;
/// let cfg = toml::from_str::<PlatformConfig>(r#"
///     [storage]
///     url = "postgres://corral@127.0.0.1:5432/corral"
/// "#).unwrap();
/// assert_eq!(cfg.storage.url.as_deref(), Some("postgres://corral@127.0.0.1:5432/corral"));
/// assert_eq!(PlatformConfig::default().storage.url, None); // SQLite in data_dir
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageSettings {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or a Unix socket
    /// directory, percent-encoded, as HOST): the PostgreSQL database shared
    /// by every node, no TLS (loopback or a private network). `None`
    /// (default): SQLite in `data_dir`, this node's alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./corral-data"),
            tiers: presets(),
            default_tier: "free".into(),
            cache_bytes: None,
            cache_max_object_bytes: 1 << 20,
            runtime_slots: None,
            queue_wait: Duration::from_millis(100),
            usage_flush_interval: Duration::from_secs(10),
            usage_journal: true,
            park_sweep_interval: Duration::from_secs(1),
            app_sync_interval: None,
            thresholds: Thresholds::default(),
            hook_url: None,
            hook_command: None,
            os_overhead_bytes: None,
            metrics_top_tenants: corral_metering::DEFAULT_EXPORT_TOP,
            storage: StorageSettings::default(),
        }
    }
}

fn presets() -> BTreeMap<String, Tier> {
    Tier::presets()
        .into_iter()
        .map(|(name, tier)| (name.as_str().to_owned(), tier))
        .collect()
}

/// Why a [`PlatformConfig`] is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `default_tier` names no tier.
    #[error("default_tier {0:?} is not a configured tier")]
    UnknownDefaultTier(String),
    /// A tier name is not a valid tier name.
    #[error("tier name {name:?} is invalid: {source}")]
    BadTierName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: corral_limits::TierError,
    },
    /// A tier failed validation.
    #[error("tier {name:?} is invalid: {source}")]
    BadTier {
        /// The tier's name.
        name: String,
        /// Why.
        #[source]
        source: corral_limits::TierError,
    },
    /// A size or interval is zero where it must not be.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl PlatformConfig {
    /// Settings with the given data dir and every other default.
    ///
    /// ```
    /// let cfg = corral::platform::PlatformConfig::with_data_dir("/tmp/x");
    /// assert_eq!(cfg.default_tier, "free");
    /// ```
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: dir.into(),
            ..Self::default()
        }
    }

    /// Checks the settings once, before anything is opened. Presets missing
    /// from `tiers` (a file that names its own tiers) are added back.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, tier) in &self.tiers {
            corral_limits::TierName::new(name).map_err(|source| ConfigError::BadTierName {
                name: name.clone(),
                source,
            })?;
            tier.validate().map_err(|source| ConfigError::BadTier {
                name: name.clone(),
                source,
            })?;
        }
        if !self.tiers.contains_key(&self.default_tier) {
            return Err(ConfigError::UnknownDefaultTier(self.default_tier.clone()));
        }
        if self.usage_flush_interval.is_zero() {
            return Err(ConfigError::Zero("usage_flush_interval"));
        }
        if self.park_sweep_interval.is_zero() {
            return Err(ConfigError::Zero("park_sweep_interval"));
        }
        if self.app_sync_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero("app_sync_interval"));
        }
        if self.runtime_slots == Some(0) {
            return Err(ConfigError::Zero("runtime_slots"));
        }
        Ok(())
    }

    /// Adds back every preset a TOML `tiers` table left out (the table
    /// replaces the default map as a whole); a tier of the same name wins.
    pub fn with_presets(mut self) -> Self {
        for (name, tier) in presets() {
            self.tiers.entry(name).or_insert(tier);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_roundtrip() {
        let cfg = PlatformConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        let back: PlatformConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_default_tier_is_typed() {
        let cfg = PlatformConfig {
            default_tier: "gold".into(),
            ..PlatformConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::UnknownDefaultTier(t)) if t == "gold"
        ));
        let err = toml::from_str::<PlatformConfig>("nope = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
