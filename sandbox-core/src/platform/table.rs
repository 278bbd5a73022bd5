//! [`TenantTable`]: the one owner of every deployed app's in-memory state.
//!
//! An app's state in memory is its [`TenantContext`] (name, account and
//! tier, what every request carries), its limit state in [`TenantLimits`] (compute-share
//! and stream semaphores, rate cell; made on the app's first request, so a
//! parked app with no traffic holds none), its program in the [`Registry`]
//! (warm or parked), its cached static files, and its meter counters. Deploy,
//! re-tier, import and restore end in [`TenantTable::install`]; remove is
//! [`TenantTable::forget`]. Nothing else creates or drops any of it.
//!
//! What survives a remove: the month's usage (the meter's counters and the
//! stored usage row, the app's and its account's), so that deleting and
//! redeploying an app never resets its quota. Everything else goes: context,
//! limit state, program, cached files here; code, static files and KV in the
//! store (`Platform::remove`). A request still running on the removed app
//! has its KV refused from the remove on (the registry gives each
//! deployment its own view of the KV), so it cannot write into a later app
//! of the same name.

use std::collections::HashMap;
use std::sync::Arc;

use corral_limits::{TenantContext, TenantId, TenantLimits, Tier};
use corral_storage::ByteCache;
use parking_lot::RwLock;

use crate::{AppHandle, Registry, SandboxError};

/// One app's in-memory record as a request needs it: its context (name,
/// account, tier) and its program in the registry, found with one lookup
/// ([`Platform::resolve_app`](super::Platform::resolve_app)). Cheap to clone.
/// A frontend that puts it in a request's extensions
/// ([`insert_into`](Self::insert_into)) spares the platform every further
/// lookup of the app on that request's way to the engine.
#[derive(Clone, Debug)]
pub struct AppRef {
    ctx: TenantContext,
    program: AppHandle,
}

impl AppRef {
    /// Name, account and tier.
    pub fn context(&self) -> &TenantContext {
        &self.ctx
    }

    /// The app's tier (the account's).
    pub fn tier(&self) -> &Arc<Tier> {
        self.ctx.tier()
    }

    /// The app's program in the registry.
    pub fn program(&self) -> &AppHandle {
        &self.program
    }

    /// Puts the record into `req`'s extensions, for
    /// [`PlatformService`](super::PlatformService) to use as it is.
    pub fn insert_into<B>(self, req: &mut http::Request<B>) {
        req.extensions_mut().insert(self);
    }
}

/// The records by app, shared with the KV host functions (which read a
/// tier's storage quota) without sharing the rest of the table.
pub(crate) type Contexts = Arc<RwLock<HashMap<TenantId, AppRef>>>;

/// Every deployed app's in-memory state, created, re-tiered and removed in
/// one place each.
pub(crate) struct TenantTable {
    contexts: Contexts,
    limits: TenantLimits,
    registry: Registry,
    cache: Arc<ByteCache>,
}

impl TenantTable {
    pub(crate) fn new(contexts: Contexts, registry: Registry, cache: Arc<ByteCache>) -> Self {
        Self {
            contexts,
            limits: TenantLimits::new(),
            registry,
            cache,
        }
    }

    /// Makes `name` live on `tier`, or moves it there: its program is
    /// already in the registry (compiled under the tier's limits). Its limit
    /// state starts again from the new tier on its next request; requests
    /// in flight keep what they hold.
    pub(crate) fn install(&self, name: &TenantId, account: &TenantId, tier: Arc<Tier>) {
        self.limits.forget(name);
        let Some(program) = self.registry.handle(name) else {
            // Every caller deploys into the registry first.
            tracing::error!(app = %name, "install without a program; the app stays unreachable");
            return;
        };
        let ctx = TenantContext::in_account(name.clone(), account.clone(), tier);
        self.contexts
            .write()
            .insert(name.clone(), AppRef { ctx, program });
    }

    /// Drops `name`'s context, limit state, program and cached files (see
    /// the module docs for what survives). Whether the registry held it.
    pub(crate) fn forget(&self, name: &TenantId) -> Result<bool, SandboxError> {
        // Context first: from here on, new requests get 404.
        self.contexts.write().remove(name);
        self.limits.forget(name);
        self.cache.remove_prefix(&format!("{name}/"));
        self.registry.remove(name)
    }

    /// The app's record (context and program), if it is deployed.
    pub(crate) fn get(&self, name: &TenantId) -> Option<AppRef> {
        self.contexts.read().get(name).cloned()
    }

    /// Whether `name` is deployed.
    pub(crate) fn contains(&self, name: &TenantId) -> bool {
        self.contexts.read().contains_key(name)
    }

    /// Deployed apps.
    pub(crate) fn len(&self) -> usize {
        self.contexts.read().len()
    }

    /// The limit state the tenant layers share.
    pub(crate) fn limits(&self) -> &TenantLimits {
        &self.limits
    }
}
