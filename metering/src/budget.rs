//! Sizing every limit from what the host has.
//!
//! ```text
//! usable             = floor((ram_total − os_overhead) × safety)        (safety 0.7 by default)
//! cache_bytes        = usable / 4                                        (byte-capped asset/data cache)
//! sqlite_cache_bytes = clamp(usable / 16, 2 MiB, 512 MiB)                (SQLite page cache)
//! runtime_bytes      = usable − cache_bytes − sqlite_cache_bytes         (what guests may use)
//! runtime_slots      = max(1, min(cpus × 4, runtime_bytes / 32 MiB))     (host-wide concurrent executions)
//! instance_memory    = clamp(floor_MiB(runtime_bytes / runtime_slots), 16 MiB, 4 GiB)
//!                                                                         (pooling allocator: max memory per instance)
//! default_tier_memory= clamp(prev_power_of_two(instance_memory / 2), 16 MiB, 256 MiB)
//! pool_instances     = clamp(runtime_bytes / default_tier_memory, runtime_slots, 10 000)
//!                                                                         (pooling allocator: instances kept)
//! ```
//! Every step saturates at zero; a machine smaller than the overhead still
//! gets one slot and the minimum sizes.

use crate::Probe;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The default safety factor: use 70% of what the OS leaves.
pub const DEFAULT_SAFETY: f64 = 0.7;

/// A reasonable OS overhead for a small VPS: 512 MiB.
pub const DEFAULT_OS_OVERHEAD: u64 = 512 * MIB;

/// Why [`Budget::from_probe`] refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The safety factor is not in (0, 1].
    #[error("safety factor {safety} is not in (0, 1]")]
    InvalidSafety {
        /// The factor given.
        safety: f64,
    },
}

/// What the host can afford, derived from a [`Probe`] by the formula in the
/// [module docs](crate::budget).
///
/// ```
/// use corral_metering::{Budget, Probe};
/// let box_4g = Probe { ram_total: 4 << 30, cpus: 2, ..Probe::default() };
/// let b = Budget::from_probe(&box_4g, 512 << 20, 0.7).unwrap();
/// assert_eq!(b.usable, 2_630_667_468);
/// assert_eq!(b.runtime_slots, 8);
/// assert_eq!(b.default_tier_memory, 64 << 20);
/// assert!(Budget::from_probe(&box_4g, 0, 1.5).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Budget {
    /// Bytes Corral may use in all: (total − OS overhead) × safety.
    pub usable: u64,
    /// Byte capacity of the cache.
    pub cache_bytes: u64,
    /// SQLite page cache, bytes (`PRAGMA cache_size = -(bytes / 1024)`).
    pub sqlite_cache_bytes: u64,
    /// Bytes left for guest memory.
    pub runtime_bytes: u64,
    /// Host-wide concurrent executions.
    pub runtime_slots: u32,
    /// Pooling-allocator instances.
    pub pool_instances: u32,
    /// Pooling-allocator memory per instance, bytes.
    pub instance_memory: u64,
    /// Memory of the default tier, bytes.
    pub default_tier_memory: u64,
}

fn prev_power_of_two(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

impl Budget {
    /// Derives the budget of a host from its probe, the RAM to leave to the OS
    /// and a safety factor in (0, 1] ([`DEFAULT_SAFETY`] is 0.7).
    pub fn from_probe(probe: &Probe, os_overhead: u64, safety: f64) -> Result<Self, BudgetError> {
        if !(safety > 0.0 && safety <= 1.0) {
            return Err(BudgetError::InvalidSafety { safety });
        }
        let usable = (probe.ram_total.saturating_sub(os_overhead) as f64 * safety).floor() as u64;
        let cache_bytes = usable / 4;
        let sqlite_cache_bytes = (usable / 16).clamp(2 * MIB, 512 * MIB);
        let runtime_bytes = usable
            .saturating_sub(cache_bytes)
            .saturating_sub(sqlite_cache_bytes);
        let cpus = u64::from(probe.cpus.max(1));
        let runtime_slots = (cpus * 4).min(runtime_bytes / (32 * MIB)).max(1);
        let instance_memory = (runtime_bytes / runtime_slots / MIB * MIB).clamp(16 * MIB, 4 * GIB);
        let default_tier_memory = prev_power_of_two(instance_memory / 2).clamp(16 * MIB, 256 * MIB);
        let pool_instances = (runtime_bytes / default_tier_memory).clamp(runtime_slots, 10_000);
        Ok(Self {
            usable,
            cache_bytes,
            sqlite_cache_bytes,
            runtime_bytes,
            runtime_slots: u32::try_from(runtime_slots).unwrap_or(u32::MAX),
            pool_instances: u32::try_from(pool_instances).unwrap_or(u32::MAX),
            instance_memory,
            default_tier_memory,
        })
    }

    /// The SQLite `cache_size` pragma value (negative: KiB).
    ///
    /// ```
    /// use corral_metering::{Budget, Probe};
    /// let b = Budget::from_probe(&Probe { ram_total: 4 << 30, cpus: 2, ..Probe::default() }, 512 << 20, 0.7).unwrap();
    /// assert_eq!(b.sqlite_cache_size_pragma(), -160_563);
    /// ```
    pub fn sqlite_cache_size_pragma(&self) -> i64 {
        -i64::try_from(self.sqlite_cache_bytes / 1024).unwrap_or(i64::MAX)
    }
}
