//! The per-tenant state every stateful layer shares: one concurrent map.

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::RateLimiter;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use tokio::sync::Semaphore;

use crate::clock::{TokioClock, TokioInstant};
use crate::{TenantContext, TenantId, Tier};

pub(crate) type DirectLimiter =
    RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// One tenant's live limit state.
pub(crate) struct TenantState {
    pub(crate) tier: Arc<Tier>,
    pub(crate) shares: Arc<Semaphore>,
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) rate: Option<DirectLimiter>,
}

impl TenantState {
    fn new(tier: Arc<Tier>) -> Self {
        let shares = Arc::new(Semaphore::new(tier.compute_shares.max(1) as usize));
        let streams = Arc::new(Semaphore::new(stream_capacity(&tier)));
        let rate = tier
            .rate_quota()
            .map(|q| RateLimiter::direct_with_clock(q, TokioClock));
        Self {
            tier,
            shares,
            streams,
            rate,
        }
    }

    fn same_tier(&self, tier: &Arc<Tier>) -> bool {
        Arc::ptr_eq(&self.tier, tier) || *self.tier == **tier
    }
}

/// Permits of a tenant's stream semaphore: `max_streams`, as a semaphore allows.
fn stream_capacity(tier: &Tier) -> usize {
    usize::try_from(tier.max_streams)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// The registry of per-tenant limit state (compute-share and stream
/// semaphores, GCRA rate state) that the tenant layers share.
///
/// Make one per host and hand clones (one `Arc`) to
/// [`TenantConcurrencyLayer`](crate::TenantConcurrencyLayer),
/// [`TenantStreamsLayer`](crate::TenantStreamsLayer),
/// [`RateLimitLayer`](crate::RateLimitLayer). A tenant's entry is made on its
/// first request from the tier in its [`TenantContext`]; the state is passive
/// (no task, no timer per tenant), so 100,000 tenants are 100,000 small map
/// entries. [`forget`](Self::forget) drops a removed tenant's entry.
///
/// When a tenant's tier changes, its next request starts fresh semaphores and
/// rate state from the new tier (requests in flight keep what they hold).
///
/// ```
/// use std::sync::Arc;
/// use corral_limits::{TenantContext, TenantLimits, Tier};
///
/// let limits = TenantLimits::new();
/// let ctx = TenantContext::new("a".parse().unwrap(), Arc::new(Tier::pro()));
/// assert!(limits.is_empty()); // nothing until the tenant's first request
/// assert_eq!(limits.prepare(&ctx).shares, 2);
/// assert_eq!(limits.len(), 1);
/// assert!(limits.forget(ctx.id()));
/// assert!(limits.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct TenantLimits {
    tenants: Arc<DashMap<TenantId, Arc<TenantState>>>,
}

/// A tenant's current load, for dashboards and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantLoad {
    /// Compute shares of the tier.
    pub shares: u32,
    /// Shares held by requests in flight and open streaming bodies (event
    /// streams admitted by [`TenantStreamsLayer`](crate::TenantStreamsLayer)
    /// hold a stream permit instead).
    pub shares_in_use: u32,
    /// Event streams the tier allows open at once (`max_streams`; 0: none).
    pub max_streams: u32,
    /// Event streams open now, each holding a stream permit.
    pub streams_open: u32,
}

impl TenantLimits {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state for `ctx`'s tenant, made (or remade after a tier change) as needed.
    pub(crate) fn state(&self, ctx: &TenantContext) -> Arc<TenantState> {
        if let Some(s) = self.tenants.get(ctx.id())
            && s.same_tier(ctx.tier())
        {
            return s.clone();
        }
        match self.tenants.entry(ctx.id().clone()) {
            Entry::Occupied(mut e) => {
                if !e.get().same_tier(ctx.tier()) {
                    e.insert(Arc::new(TenantState::new(ctx.tier().clone())));
                }
                e.get().clone()
            }
            Entry::Vacant(e) => e
                .insert(Arc::new(TenantState::new(ctx.tier().clone())))
                .clone(),
        }
    }

    /// Makes `ctx`'s entry as its first request would (or remakes it after a
    /// tier change) and returns its load.
    pub fn prepare(&self, ctx: &TenantContext) -> TenantLoad {
        let s = self.state(ctx);
        Self::load_of(&s)
    }

    /// The tenant's current load, or `None` if it has no entry.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use corral_limits::{TenantContext, TenantLimits, Tier};
    /// let limits = TenantLimits::new();
    /// let ctx = TenantContext::new("a".parse().unwrap(), Arc::new(Tier::scale()));
    /// assert!(limits.load(ctx.id()).is_none());
    /// limits.prepare(&ctx);
    /// let load = limits.load(ctx.id()).unwrap();
    /// assert_eq!((load.shares, load.shares_in_use), (4, 0));
    /// assert_eq!((load.max_streams, load.streams_open), (200, 0));
    /// ```
    pub fn load(&self, tenant: &TenantId) -> Option<TenantLoad> {
        let s = self.tenants.get(tenant)?;
        Some(Self::load_of(&s))
    }

    fn load_of(s: &TenantState) -> TenantLoad {
        let shares = s.tier.compute_shares.max(1);
        let free = u32::try_from(s.shares.available_permits()).unwrap_or(u32::MAX);
        let max_streams = s.tier.max_streams;
        let open = stream_capacity(&s.tier).saturating_sub(s.streams.available_permits());
        TenantLoad {
            shares,
            shares_in_use: shares.saturating_sub(free),
            max_streams,
            streams_open: u32::try_from(open).unwrap_or(u32::MAX),
        }
    }

    /// Drops `tenant`'s entry (call when the tenant is removed). Requests in
    /// flight keep their permits until they end. Returns
    /// whether there was an entry.
    pub fn forget(&self, tenant: &TenantId) -> bool {
        self.tenants.remove(tenant).is_some()
    }

    /// Tenants with an entry.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether no tenant has an entry.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

impl fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLimits")
            .field("tenants", &self.tenants.len())
            .finish()
    }
}
