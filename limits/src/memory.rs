//! Per-tenant memory budget: one aggregate shared by all of a tenant's
//! concurrent instances, so shares × instance memory can never pass the tier.
//!
//! The sandbox's resource limiter (wasmtime `ResourceLimiter::memory_growing`,
//! QuickJS allocation hooks) holds one [`MemoryReservation`] per instance and
//! calls [`MemoryReservation::grow`] before each growth; a refusal becomes a
//! failed allocation inside the guest. Dropping the reservation (the instance
//! ends) gives the bytes back.
//!
//! ```
//! use corral_limits::{MemoryBudget, MemoryBudgetExceeded};
//!
//! let budget = MemoryBudget::new("a".parse().unwrap(), 100);
//! let mut first = budget.reserve(60).unwrap();
//! let second = budget.reserve(30).unwrap();
//! assert_eq!(budget.used(), 90);
//! let err: MemoryBudgetExceeded = first.grow(20).unwrap_err();
//! assert_eq!((err.requested, err.used, err.limit), (20, 90, 100));
//! drop(second);
//! first.grow(20).unwrap();
//! assert_eq!(budget.used(), 80);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TenantId;
use crate::error::MemoryBudgetExceeded;

pub(crate) struct BudgetState {
    tenant: TenantId,
    limit: AtomicU64,
    used: AtomicU64,
}

impl BudgetState {
    pub(crate) fn new(tenant: TenantId, limit: u64) -> Self {
        Self {
            tenant,
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Release);
    }

    fn take(&self, bytes: u64) -> Result<(), MemoryBudgetExceeded> {
        let limit = self.limit.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .map(drop)
            .map_err(|used| MemoryBudgetExceeded {
                tenant: self.tenant.clone(),
                requested: bytes,
                used,
                limit,
            })
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// One tenant's memory budget. Clones share the same budget.
///
/// Get the tenant's shared budget from
/// [`TenantLimits::memory_budget`](crate::TenantLimits::memory_budget) (sized
/// from the tier's `memory_bytes`), or make a stand-alone one with [`MemoryBudget::new`].
#[derive(Clone)]
pub struct MemoryBudget {
    state: Arc<BudgetState>,
}

impl MemoryBudget {
    /// A fresh budget of `limit_bytes` for `tenant`.
    pub fn new(tenant: TenantId, limit_bytes: u64) -> Self {
        Self::from_state(Arc::new(BudgetState::new(tenant, limit_bytes)))
    }

    pub(crate) fn from_state(state: Arc<BudgetState>) -> Self {
        Self { state }
    }

    /// Whose budget this is.
    pub fn tenant(&self) -> &TenantId {
        &self.state.tenant
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.state.limit.load(Ordering::Acquire)
    }

    /// Bytes reserved by all live reservations.
    pub fn used(&self) -> u64 {
        self.state.used()
    }

    /// Bytes still free (0 when a lowered limit is below what is in use).
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.used())
    }

    /// Reserves `bytes`, or refuses if that would pass the limit.
    /// A reservation of 0 bytes always succeeds (an instance's starting point).
    ///
    /// ```
    /// # use corral_limits::MemoryBudget;
    /// let b = MemoryBudget::new("a".parse().unwrap(), 10);
    /// assert!(b.reserve(11).is_err());
    /// let r = b.reserve(10).unwrap();
    /// assert_eq!(r.bytes(), 10);
    /// drop(r);
    /// assert_eq!(b.used(), 0);
    /// ```
    pub fn reserve(&self, bytes: u64) -> Result<MemoryReservation, MemoryBudgetExceeded> {
        self.state.take(bytes)?;
        Ok(MemoryReservation {
            state: self.state.clone(),
            bytes,
        })
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("tenant", &self.state.tenant)
            .field("limit", &self.limit())
            .field("used", &self.used())
            .finish()
    }
}

/// Bytes held from a [`MemoryBudget`]; given back when dropped.
#[must_use = "dropping the reservation gives the bytes back at once"]
pub struct MemoryReservation {
    state: Arc<BudgetState>,
    bytes: u64,
}

impl MemoryReservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `additional` more bytes, or refuses (holding nothing more).
    pub fn grow(&mut self, additional: u64) -> Result<(), MemoryBudgetExceeded> {
        self.state.take(additional)?;
        self.bytes += additional;
        Ok(())
    }

    /// Gives back up to `by` bytes (never more than held).
    ///
    /// ```
    /// # use corral_limits::MemoryBudget;
    /// let b = MemoryBudget::new("a".parse().unwrap(), 10);
    /// let mut r = b.reserve(8).unwrap();
    /// r.shrink(100);
    /// assert_eq!((r.bytes(), b.used()), (0, 0));
    /// ```
    pub fn shrink(&mut self, by: u64) {
        let by = by.min(self.bytes);
        self.state.give(by);
        self.bytes -= by;
    }

    /// Grows or shrinks to hold exactly `total` bytes (what a resource limiter
    /// sees as `desired` in `memory_growing`).
    ///
    /// ```
    /// # use corral_limits::MemoryBudget;
    /// let b = MemoryBudget::new("a".parse().unwrap(), 10);
    /// let mut r = b.reserve(0).unwrap();
    /// r.set(6).unwrap();
    /// assert!(r.set(11).is_err());
    /// r.set(2).unwrap();
    /// assert_eq!(b.used(), 2);
    /// ```
    pub fn set(&mut self, total: u64) -> Result<(), MemoryBudgetExceeded> {
        if total >= self.bytes {
            self.grow(total - self.bytes)
        } else {
            self.shrink(self.bytes - total);
            Ok(())
        }
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.state.give(self.bytes);
    }
}

impl fmt::Debug for MemoryReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReservation")
            .field("tenant", &self.state.tenant)
            .field("bytes", &self.bytes)
            .finish()
    }
}
