//! The request extension that tells every layer whose request this is.

use std::sync::Arc;

use crate::error::MissingTenant;
use crate::{TenantId, Tier};

/// Whose request this is and on which tier: the frontend inserts one into the
/// request's extensions after resolving the tenant; every layer of this crate
/// reads it. Cloning is one reference-count increment.
///
/// A tenant layer that meets a request without it fails with [`MissingTenant`]
/// (a 500: the stack is mis-assembled), never a panic.
///
/// ```
/// use std::sync::Arc;
/// use corral_limits::{TenantContext, TenantId, Tier};
///
/// let ctx = TenantContext::new(TenantId::new("shop")?, Arc::new(Tier::free()));
/// let mut req = http::Request::new(());
/// assert!(TenantContext::of(&req).is_err());
/// req.extensions_mut().insert(ctx);
/// let found = TenantContext::of(&req).unwrap();
/// assert_eq!(found.id().as_str(), "shop");
/// assert_eq!(found.tier().compute_shares, 1);
/// # Ok::<(), corral_limits::InvalidTenantId>(())
/// ```
#[derive(Clone, Debug)]
pub struct TenantContext(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    id: TenantId,
    account: TenantId,
    tier: Arc<Tier>,
}

impl TenantContext {
    /// A context for `id` on `tier`, in an account of its own (named `id`).
    pub fn new(id: TenantId, tier: Arc<Tier>) -> Self {
        Self::in_account(id.clone(), id, tier)
    }

    /// A context for `id` in `account`, on the account's `tier`. The
    /// account's apps share its monthly quota (see
    /// [`QuotaLayer`](crate::QuotaLayer)); every other limit is per app.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use corral_limits::{TenantContext, Tier};
    /// let ctx = TenantContext::in_account("blog".parse()?, "acme".parse()?, Arc::new(Tier::pro()));
    /// assert_eq!((ctx.id().as_str(), ctx.account().as_str()), ("blog", "acme"));
    /// let own = TenantContext::new("shop".parse()?, Arc::new(Tier::free()));
    /// assert_eq!(own.account().as_str(), "shop");
    /// # Ok::<(), corral_limits::InvalidTenantId>(())
    /// ```
    pub fn in_account(id: TenantId, account: TenantId, tier: Arc<Tier>) -> Self {
        Self(Arc::new(Inner { id, account, tier }))
    }

    /// The account the app belongs to (account names follow app-name rules).
    pub fn account(&self) -> &TenantId {
        &self.0.account
    }

    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.0.id
    }

    /// The tenant's tier.
    pub fn tier(&self) -> &Arc<Tier> {
        &self.0.tier
    }

    /// The context carried by `req`, or [`MissingTenant`].
    pub fn of<B>(req: &http::Request<B>) -> Result<&TenantContext, MissingTenant> {
        req.extensions().get::<TenantContext>().ok_or(MissingTenant)
    }

    /// Inserts this context into `req`'s extensions (replacing any other).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use corral_limits::{TenantContext, Tier};
    /// let mut req = http::Request::new(());
    /// TenantContext::new("a".parse().unwrap(), Arc::new(Tier::pro())).insert_into(&mut req);
    /// assert_eq!(TenantContext::of(&req).unwrap().id().as_str(), "a");
    /// ```
    pub fn insert_into<B>(self, req: &mut http::Request<B>) {
        req.extensions_mut().insert(self);
    }
}
