//! Tiers (plans): the limits a tenant is sold, as data.
//!
//! A [`Tier`] is plain data that (de)serializes from TOML (`corral.toml`'s
//! `[tiers.<name>]` tables), validates once, and is shared as an `Arc<Tier>`
//! through [`TenantContext`](crate::TenantContext) with every layer.
//!
//! Durations are written as [`humantime`](https://docs.rs/humantime) strings
//! (`"250ms"`, `"10s"`, `"15m"`, `"1h"`). A missing optional field means
//! *unlimited*; unknown fields are refused, so a typo never silently lifts a limit.
//!
//! ```
//! use corral_limits::{Tier, TierError};
//!
//! let pro = Tier::preset("pro")?;
//! assert_eq!(pro.compute_shares, 2);
//! assert_eq!(pro.memory_bytes, 256 << 20);
//!
//! let custom = Tier::from_toml(r#"
//!     compute_shares = 1
//!     memory_bytes = 33554432
//!     fuel_per_request = 50000000
//!     wall_clock = "250ms"
//!     rate_per_minute = 30
//!     burst = 5
//!     requests_per_month = 1000
//!     max_body_bytes = 65536
//!     max_bundle_bytes = 1048576
//!     idle_timeout = "1m"
//!     max_streams = 1
//! "#)?;
//! assert_eq!(custom.wall_clock, std::time::Duration::from_millis(250));
//! assert_eq!(custom.max_apps, None); // omitted: unlimited
//! // Omitted stream budgets follow the per-request ones (10x fuel, 60x wall clock).
//! assert_eq!(custom.stream_fuel, 500_000_000);
//! assert_eq!(custom.max_stream_duration, std::time::Duration::from_secs(15));
//!
//! let err = Tier::from_toml("compute_shares = 0").unwrap_err();
//! assert!(matches!(err, TierError::Toml(_)));
//! # Ok::<(), TierError>(())
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One mebibyte (2^20 bytes): memory is sized in binary units.
pub const MIB: u64 = 1 << 20;
/// One gibibyte (2^30 bytes).
pub const GIB: u64 = 1 << 30;
/// One megabyte (10^6 bytes): storage is sold in decimal units.
pub const MB: u64 = 1_000_000;
/// One gigabyte (10^9 bytes).
pub const GB: u64 = 1_000_000_000;

/// The least memory one compute share may get: `memory_bytes / compute_shares`
/// below this is refused by [`Tier::validate`].
pub const MIN_MEMORY_PER_SHARE: u64 = MIB;

/// When a tier omits [`Tier::stream_fuel`], it is this many times its
/// `fuel_per_request`: a stream may compute for about as long as ten requests.
pub const DEFAULT_STREAM_FUEL_FACTOR: u64 = 10;

/// When a tier omits [`Tier::max_stream_duration`], it is this many times its
/// `wall_clock`.
pub const DEFAULT_STREAM_DURATION_FACTOR: u32 = 60;

/// The [`Tier::stream_fuel`] a tier gets when its TOML omits it.
///
/// ```
/// assert_eq!(corral_limits::default_stream_fuel(1_000), 10_000);
/// assert_eq!(corral_limits::default_stream_fuel(u64::MAX), u64::MAX);
/// ```
pub fn default_stream_fuel(fuel_per_request: u64) -> u64 {
    fuel_per_request.saturating_mul(DEFAULT_STREAM_FUEL_FACTOR)
}

/// The [`Tier::max_stream_duration`] a tier gets when its TOML omits it.
///
/// ```
/// use std::time::Duration;
/// let d = corral_limits::default_max_stream_duration(Duration::from_secs(5));
/// assert_eq!(d, Duration::from_secs(300));
/// ```
pub fn default_max_stream_duration(wall_clock: Duration) -> Duration {
    wall_clock
        .checked_mul(DEFAULT_STREAM_DURATION_FACTOR)
        .unwrap_or(Duration::MAX)
}

/// The names of the preset tiers, in the order of DESIGN.md's table.
pub const PRESET_NAMES: [&str; 6] = ["free", "pro", "scale", "pilot", "sovereign", "omni-core"];

/// Why a tier or a tier name is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
    /// The name is not 1–63 characters of `a-z`, `0-9`, `-` (not at either end).
    #[error(
        "tier name {name:?} is invalid: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// [`Tier::preset`] was asked for a name that is not a preset.
    #[error(
        "no preset tier named {name:?}; the presets are free, pro, scale, pilot, sovereign, omni-core"
    )]
    UnknownPreset {
        /// The requested name.
        name: String,
    },
    /// A field that must be positive is zero.
    #[error("tier field `{field}` must not be zero")]
    Zero {
        /// The field's name as written in TOML.
        field: &'static str,
    },
    /// `memory_bytes / compute_shares` is below [`MIN_MEMORY_PER_SHARE`].
    #[error(
        "memory_bytes = {memory_bytes} gives each of the {compute_shares} compute shares less than {min} bytes"
    )]
    MemoryTooSmall {
        /// The tier's total memory.
        memory_bytes: u64,
        /// The tier's compute shares.
        compute_shares: u32,
        /// The minimum per share ([`MIN_MEMORY_PER_SHARE`]).
        min: u64,
    },
    /// The TOML could not be parsed into a valid tier (syntax, a missing or
    /// unknown field, or a validation failure, which the message names).
    #[error("invalid tier TOML")]
    Toml(#[source] toml::de::Error),
}

/// The key a tier is known by (`free`, `pro`, or an operator's own name).
///
/// Validated like a DNS label, the same rules as [`TenantId`](crate::TenantId).
///
/// ```
/// use corral_limits::TierName;
/// let name: TierName = "omni-core".parse().unwrap();
/// assert_eq!(name.as_str(), "omni-core");
/// assert!(name.is_preset());
/// assert!("Pro Plan".parse::<TierName>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TierName(Box<str>);

impl TierName {
    /// Validates `name` and wraps it.
    ///
    /// ```
    /// # use corral_limits::{TierName, TierError};
    /// assert!(TierName::new("team-2").is_ok());
    /// assert!(matches!(TierName::new(""), Err(TierError::InvalidName { .. })));
    /// ```
    pub fn new(name: &str) -> Result<Self, TierError> {
        let ok = !name.is_empty()
            && name.len() <= crate::MAX_TENANT_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(Self(name.into()))
        } else {
            Err(TierError::InvalidName { name: name.into() })
        }
    }

    /// The name as a string slice.
    ///
    /// ```
    /// # use corral_limits::TierName;
    /// assert_eq!(TierName::new("pro").unwrap().as_str(), "pro");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of [`PRESET_NAMES`].
    ///
    /// ```
    /// # use corral_limits::TierName;
    /// assert!(TierName::new("free").unwrap().is_preset());
    /// assert!(!TierName::new("gold").unwrap().is_preset());
    /// ```
    pub fn is_preset(&self) -> bool {
        PRESET_NAMES.contains(&self.as_str())
    }
}

impl FromStr for TierName {
    type Err = TierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for TierName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TierName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TierName({:?})", &*self.0)
    }
}

impl<'de> Deserialize<'de> for TierName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The limits of one plan. Fields are public so an operator can start from a
/// preset and change a figure; call [`Tier::validate`] after editing by hand
/// (deserialization validates on its own).
///
/// Figures of the presets (the first five columns come from DESIGN.md; the rest
/// are Corral's documented choices; `—` means unlimited / `None`):
///
/// | tier | shares | memory | req/month | apps | storage | fuel/req | wall clock | rate/min | burst | body | bundle | idle | streams | stream fuel | stream duration | dedicated |
/// |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
/// | free | 1 | 64 MiB | 10,000 | 1 | 10 MB | 100 M | 5 s | 60 | 20 | 1 MiB | 5 MiB | 5 min | 2 | 1 G | 5 min | no |
/// | pro | 2 | 256 MiB | 100,000 | 10 | 100 MB | 1 G | 10 s | 600 | 100 | 10 MiB | 25 MiB | 15 min | 20 | 10 G | 10 min | no |
/// | scale | 4 | 1 GiB | 1,000,000 | — | 1 GB | 5 G | 30 s | 6,000 | 500 | 50 MiB | 100 MiB | 1 h | 200 | 50 G | 30 min | no |
/// | pilot | 1 | 512 MiB | — | — | — | 2 G | 30 s | 1,200 | 200 | 25 MiB | 100 MiB | 1 h | 50 | 20 G | 30 min | no |
/// | sovereign | 4 | 4 GiB | — | — | — | 10 G | 60 s | 60,000 | 1,000 | 100 MiB | 256 MiB | 4 h | 500 | 100 G | 1 h | no |
/// | omni-core | 16 | 32 GiB | — | — | — | 50 G | 300 s | — | 0 | 256 MiB | 1 GiB | 24 h | 2,000 | 500 G | 5 h | yes |
///
/// The stream budgets of the presets are the defaults a tier gets when its
/// TOML omits them ([`default_stream_fuel`], [`default_max_stream_duration`]).
///
/// `dedicated` ("dedicated partition" in DESIGN.md) means the tenant's compute
/// shares are a partition of their own: [`RuntimeSlotsLayer`](crate::RuntimeSlotsLayer)
/// does not count its requests against the shared host-wide slots.
///
/// ```
/// use corral_limits::{Tier, TierError};
/// let mut t = Tier::free();
/// t.compute_shares = 0;
/// assert!(matches!(t.validate(), Err(TierError::Zero { field: "compute_shares" })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TierFields")]
#[non_exhaustive]
pub struct Tier {
    /// Concurrent requests per tenant (the per-tenant semaphore). At least 1.
    pub compute_shares: u32,
    /// Memory for all of the tenant's instances together, in bytes.
    pub memory_bytes: u64,
    /// Fuel per request (WebAssembly instructions, roughly; JS interrupt ticks).
    pub fuel_per_request: u64,
    /// Wall-clock deadline per request (`"10s"` in TOML).
    #[serde(with = "humantime_serde")]
    pub wall_clock: Duration,
    /// Sustained requests per minute; `None` (omitted) = no rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    /// Requests admitted at once on top of the sustained rate (GCRA burst).
    /// Must be positive when `rate_per_minute` is set.
    pub burst: u32,
    /// Requests per calendar month (UTC); `None` = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_month: Option<u64>,
    /// Apps (tenants) one account may deploy; `None` = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_apps: Option<u32>,
    /// Bytes of tenant KV and blobs; `None` = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
    /// Request body bytes (0 refuses every non-empty body).
    pub max_body_bytes: u64,
    /// Bytes of one deployed bundle (module or script plus assets).
    pub max_bundle_bytes: u64,
    /// Idle time before a warm tenant is parked (`"15m"` in TOML).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Event streams (SSE responses) open at once, each holding a stream
    /// permit instead of a compute share (see
    /// [`TenantStreamsLayer`](crate::TenantStreamsLayer)); 0 refuses every stream.
    pub max_streams: u32,
    /// Fuel for all the steps of one streamed response together (each step
    /// also stays within `fuel_per_request`): a stream that computes a
    /// little on every step still ends, with the fuel error, once it has
    /// used this much. Omitted in TOML: [`default_stream_fuel`].
    pub stream_fuel: u64,
    /// Wall clock of one streamed response from its request's start (an
    /// event stream stays open at most this long, however fast its client
    /// reads), ending with the wall-clock error (`"5m"` in TOML). Omitted:
    /// [`default_max_stream_duration`].
    #[serde(with = "humantime_serde")]
    pub max_stream_duration: Duration,
    /// A dedicated partition: not counted against the shared runtime slots.
    #[serde(default)]
    pub dedicated: bool,
}

/// The unchecked shape serde reads before [`Tier::validate`] runs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFields {
    compute_shares: u32,
    memory_bytes: u64,
    fuel_per_request: u64,
    #[serde(with = "humantime_serde")]
    wall_clock: Duration,
    rate_per_minute: Option<u32>,
    burst: u32,
    requests_per_month: Option<u64>,
    max_apps: Option<u32>,
    storage_bytes: Option<u64>,
    max_body_bytes: u64,
    max_bundle_bytes: u64,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    max_streams: u32,
    #[serde(default)]
    stream_fuel: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    max_stream_duration: Option<Duration>,
    #[serde(default)]
    dedicated: bool,
}

impl TryFrom<TierFields> for Tier {
    type Error = TierError;
    fn try_from(f: TierFields) -> Result<Self, TierError> {
        let tier = Tier {
            compute_shares: f.compute_shares,
            memory_bytes: f.memory_bytes,
            fuel_per_request: f.fuel_per_request,
            wall_clock: f.wall_clock,
            rate_per_minute: f.rate_per_minute,
            burst: f.burst,
            requests_per_month: f.requests_per_month,
            max_apps: f.max_apps,
            storage_bytes: f.storage_bytes,
            max_body_bytes: f.max_body_bytes,
            max_bundle_bytes: f.max_bundle_bytes,
            idle_timeout: f.idle_timeout,
            max_streams: f.max_streams,
            stream_fuel: f
                .stream_fuel
                .unwrap_or_else(|| default_stream_fuel(f.fuel_per_request)),
            max_stream_duration: f
                .max_stream_duration
                .unwrap_or_else(|| default_max_stream_duration(f.wall_clock)),
            dedicated: f.dedicated,
        };
        tier.validate()?;
        Ok(tier)
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Tier {
    /// The `free` preset (see the table on [`Tier`]).
    ///
    /// ```
    /// let t = corral_limits::Tier::free();
    /// assert_eq!((t.compute_shares, t.memory_bytes, t.requests_per_month), (1, 64 << 20, Some(10_000)));
    /// ```
    pub fn free() -> Self {
        Tier {
            compute_shares: 1,
            memory_bytes: 64 * MIB,
            fuel_per_request: 100_000_000,
            wall_clock: secs(5),
            rate_per_minute: Some(60),
            burst: 20,
            requests_per_month: Some(10_000),
            max_apps: Some(1),
            storage_bytes: Some(10 * MB),
            max_body_bytes: MIB,
            max_bundle_bytes: 5 * MIB,
            idle_timeout: secs(5 * 60),
            max_streams: 2,
            stream_fuel: 1_000_000_000,
            max_stream_duration: secs(5 * 60),
            dedicated: false,
        }
    }

    /// The `pro` preset (see the table on [`Tier`]).
    ///
    /// ```
    /// assert_eq!(corral_limits::Tier::pro().max_apps, Some(10));
    /// ```
    pub fn pro() -> Self {
        Tier {
            compute_shares: 2,
            memory_bytes: 256 * MIB,
            fuel_per_request: 1_000_000_000,
            wall_clock: secs(10),
            rate_per_minute: Some(600),
            burst: 100,
            requests_per_month: Some(100_000),
            max_apps: Some(10),
            storage_bytes: Some(100 * MB),
            max_body_bytes: 10 * MIB,
            max_bundle_bytes: 25 * MIB,
            idle_timeout: secs(15 * 60),
            max_streams: 20,
            stream_fuel: 10_000_000_000,
            max_stream_duration: secs(10 * 60),
            dedicated: false,
        }
    }

    /// The `scale` preset (see the table on [`Tier`]).
    ///
    /// ```
    /// assert_eq!(corral_limits::Tier::scale().max_apps, None);
    /// ```
    pub fn scale() -> Self {
        Tier {
            compute_shares: 4,
            memory_bytes: GIB,
            fuel_per_request: 5_000_000_000,
            wall_clock: secs(30),
            rate_per_minute: Some(6_000),
            burst: 500,
            requests_per_month: Some(1_000_000),
            max_apps: None,
            storage_bytes: Some(GB),
            max_body_bytes: 50 * MIB,
            max_bundle_bytes: 100 * MIB,
            idle_timeout: secs(60 * 60),
            max_streams: 200,
            stream_fuel: 50_000_000_000,
            max_stream_duration: secs(30 * 60),
            dedicated: false,
        }
    }

    /// The `pilot` preset (see the table on [`Tier`]).
    ///
    /// ```
    /// assert_eq!(corral_limits::Tier::pilot().memory_bytes, 512 << 20);
    /// ```
    pub fn pilot() -> Self {
        Tier {
            compute_shares: 1,
            memory_bytes: 512 * MIB,
            fuel_per_request: 2_000_000_000,
            wall_clock: secs(30),
            rate_per_minute: Some(1_200),
            burst: 200,
            requests_per_month: None,
            max_apps: None,
            storage_bytes: None,
            max_body_bytes: 25 * MIB,
            max_bundle_bytes: 100 * MIB,
            idle_timeout: secs(60 * 60),
            max_streams: 50,
            stream_fuel: 20_000_000_000,
            max_stream_duration: secs(30 * 60),
            dedicated: false,
        }
    }

    /// The `sovereign` preset (see the table on [`Tier`]).
    ///
    /// ```
    /// assert_eq!(corral_limits::Tier::sovereign().memory_bytes, 4 << 30);
    /// ```
    pub fn sovereign() -> Self {
        Tier {
            compute_shares: 4,
            memory_bytes: 4 * GIB,
            fuel_per_request: 10_000_000_000,
            wall_clock: secs(60),
            rate_per_minute: Some(60_000),
            burst: 1_000,
            requests_per_month: None,
            max_apps: None,
            storage_bytes: None,
            max_body_bytes: 100 * MIB,
            max_bundle_bytes: 256 * MIB,
            idle_timeout: secs(4 * 60 * 60),
            max_streams: 500,
            stream_fuel: 100_000_000_000,
            max_stream_duration: secs(60 * 60),
            dedicated: false,
        }
    }

    /// The `omni-core` preset: a dedicated partition (see the table on [`Tier`]).
    ///
    /// ```
    /// let t = corral_limits::Tier::omni_core();
    /// assert!(t.dedicated);
    /// assert_eq!(t.memory_bytes, 32 << 30);
    /// ```
    pub fn omni_core() -> Self {
        Tier {
            compute_shares: 16,
            memory_bytes: 32 * GIB,
            fuel_per_request: 50_000_000_000,
            wall_clock: secs(300),
            rate_per_minute: None,
            burst: 0,
            requests_per_month: None,
            max_apps: None,
            storage_bytes: None,
            max_body_bytes: 256 * MIB,
            max_bundle_bytes: GIB,
            idle_timeout: secs(24 * 60 * 60),
            max_streams: 2_000,
            stream_fuel: 500_000_000_000,
            max_stream_duration: secs(5 * 60 * 60),
            dedicated: true,
        }
    }

    /// The preset called `name` (one of [`PRESET_NAMES`]).
    ///
    /// ```
    /// use corral_limits::{Tier, TierError};
    /// assert_eq!(Tier::preset("scale")?, Tier::scale());
    /// assert!(matches!(Tier::preset("gold"), Err(TierError::UnknownPreset { .. })));
    /// # Ok::<(), TierError>(())
    /// ```
    pub fn preset(name: &str) -> Result<Self, TierError> {
        Ok(match name {
            "free" => Self::free(),
            "pro" => Self::pro(),
            "scale" => Self::scale(),
            "pilot" => Self::pilot(),
            "sovereign" => Self::sovereign(),
            "omni-core" => Self::omni_core(),
            _ => return Err(TierError::UnknownPreset { name: name.into() }),
        })
    }

    /// Every preset with its name, in the order of [`PRESET_NAMES`].
    ///
    /// ```
    /// let all = corral_limits::Tier::presets();
    /// assert_eq!(all.len(), 6);
    /// assert_eq!(all[5].0.as_str(), "omni-core");
    /// ```
    pub fn presets() -> Vec<(TierName, Tier)> {
        PRESET_NAMES
            .iter()
            .map(|n| {
                (
                    TierName(Box::from(*n)),
                    Self::preset(n).expect("every preset name has a preset"),
                )
            })
            .collect()
    }

    /// Checks the figures: positive shares, fuel, wall clock, bundle size,
    /// idle timeout, stream fuel and stream duration; a positive rate and burst when rate limited; positive
    /// monthly quota and app count when set; at least [`MIN_MEMORY_PER_SHARE`]
    /// per compute share.
    ///
    /// ```
    /// use corral_limits::{Tier, TierError};
    /// let mut t = Tier::pro();
    /// assert!(t.validate().is_ok());
    /// t.memory_bytes = 1024;
    /// assert!(matches!(t.validate(), Err(TierError::MemoryTooSmall { compute_shares: 2, .. })));
    /// ```
    pub fn validate(&self) -> Result<(), TierError> {
        let zero = |field| Err(TierError::Zero { field });
        if self.compute_shares == 0 {
            return zero("compute_shares");
        }
        if self.memory_bytes / u64::from(self.compute_shares) < MIN_MEMORY_PER_SHARE {
            return Err(TierError::MemoryTooSmall {
                memory_bytes: self.memory_bytes,
                compute_shares: self.compute_shares,
                min: MIN_MEMORY_PER_SHARE,
            });
        }
        if self.fuel_per_request == 0 {
            return zero("fuel_per_request");
        }
        if self.wall_clock.is_zero() {
            return zero("wall_clock");
        }
        if self.rate_per_minute == Some(0) {
            return zero("rate_per_minute");
        }
        if self.rate_per_minute.is_some() && self.burst == 0 {
            return zero("burst");
        }
        if self.requests_per_month == Some(0) {
            return zero("requests_per_month");
        }
        if self.max_apps == Some(0) {
            return zero("max_apps");
        }
        if self.max_bundle_bytes == 0 {
            return zero("max_bundle_bytes");
        }
        if self.idle_timeout.is_zero() {
            return zero("idle_timeout");
        }
        if self.stream_fuel == 0 {
            return zero("stream_fuel");
        }
        if self.max_stream_duration.is_zero() {
            return zero("max_stream_duration");
        }
        Ok(())
    }

    /// Parses and validates one tier from TOML (the body of a `[tiers.<name>]` table).
    ///
    /// ```
    /// use corral_limits::Tier;
    /// let t = Tier::from_toml(&Tier::pro().to_toml()).unwrap();
    /// assert_eq!(t, Tier::pro());
    /// ```
    pub fn from_toml(s: &str) -> Result<Self, TierError> {
        toml::from_str(s).map_err(TierError::Toml)
    }

    /// The tier as TOML (durations as humantime strings, `None` fields omitted).
    ///
    /// ```
    /// let s = corral_limits::Tier::free().to_toml();
    /// assert!(s.contains("wall_clock = \"5s\""));
    /// assert!(s.contains("requests_per_month = 10000"));
    /// ```
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a tier always serializes to TOML")
    }

    /// Memory of one instance when every share runs at once:
    /// `memory_bytes / compute_shares`, the figure the sandbox gives each
    /// instance so that shares × instance memory never passes the tier's memory.
    ///
    /// ```
    /// assert_eq!(corral_limits::Tier::pro().instance_memory_bytes(), 128 << 20);
    /// ```
    pub fn instance_memory_bytes(&self) -> u64 {
        self.memory_bytes / u64::from(self.compute_shares.max(1))
    }

    /// tower-http's [`RequestBodyLimitLayer`](tower_http::limit::RequestBodyLimitLayer)
    /// set to `max_body_bytes`, for a stack that serves a single tier (its
    /// refusal reads as [`Refusal::PayloadTooLarge`](crate::Refusal::PayloadTooLarge)).
    /// Corral's platform checks each tenant's tier before it reads the body.
    ///
    /// ```
    /// let _layer = corral_limits::Tier::free().body_limit_layer();
    /// ```
    pub fn body_limit_layer(&self) -> tower_http::limit::RequestBodyLimitLayer {
        tower_http::limit::RequestBodyLimitLayer::new(
            usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
        )
    }

    /// The GCRA quota for the rate limiter, if rate limited.
    pub(crate) fn rate_quota(&self) -> Option<governor::Quota> {
        let rate = NonZeroU32::new(self.rate_per_minute?)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Some(governor::Quota::per_minute(rate).allow_burst(burst))
    }
}
