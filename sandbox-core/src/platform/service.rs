//! The tower stack every tenant request goes through.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use corral_limits::{BoxError, Refusal, ServiceBuilderExt, TenantId};
use corral_metering::{
    AccountFromExtensions, ClassifyError, ErrorKind, InvocationFigures, MeteringLayer,
};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::{AppRef, Inner, PlatformError};
use crate::{AppHandle, BoxFuture, InvocationStats, Registry, SandboxError};

/// The body of a platform response: a boxed `http_body::Body` of `Bytes`.
pub type PlatformBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The whole per-tenant stack as one `tower::Service`, from
/// [`Platform::service`](super::Platform::service).
///
/// The caller names the tenant by inserting its [`TenantId`] in the request's
/// extensions; the service looks up the tenant's tier and runs, outermost
/// first: metering, maintenance, rate limit, monthly quota, compute shares,
/// host runtime slots, the static-asset cache, and the sandbox (waking a
/// parked tenant first). Refusals and guest failures come back as
/// [`PlatformError`]s, whose [`to_http`](PlatformError::to_http) gives the
/// status, `Retry-After` and JSON body.
#[derive(Clone)]
pub struct PlatformService {
    inner: Arc<Inner>,
    stack: BoxCloneSyncService<
        http::Request<Full<Bytes>>,
        http::Response<PlatformBody>,
        PlatformError,
    >,
}

impl std::fmt::Debug for PlatformService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformService").finish_non_exhaustive()
    }
}

/// The quota's view of usage: the requests counted *before* this one, by
/// the account meter (the quota layer asks about the request's account).
///
/// Metering sits outermost and counts a request in flight as it enters; it
/// becomes an admitted request (what the quota counts) when the stack
/// answers, or a refusal (counted apart by kind, never against the quota)
/// when a limit layer refused it. The quota reads admitted plus in flight,
/// so concurrent requests can never take a tenant past its quota; by the
/// time the quota layer runs, synchronously in the same `call`, this request
/// is already in flight. Without the `- 1` the last request of a quota
/// would be refused.
#[derive(Clone, Debug)]
struct EarlierRequests(corral_metering::Meter);

impl corral_limits::UsageSource for EarlierRequests {
    fn requests_this_month(&self, account: &TenantId) -> u64 {
        self.0.requests_this_month(account).saturating_sub(1)
    }
}

/// Names the stack's failures for metering: the sandbox's by its own kind,
/// the limit layers' as refusals (not admitted, not counted by the quota).
#[derive(Clone, Copy, Debug)]
struct Classify;

impl ClassifyError<BoxError> for Classify {
    fn classify(&self, e: &BoxError) -> ErrorKind {
        if let Some(s) = e.downcast_ref::<SandboxError>() {
            return s.error_kind();
        }
        Refusal::of(&**e).map_or(ErrorKind::Other, ErrorKind::of_refusal)
    }

    fn refusal(&self, e: &BoxError) -> Option<Refusal> {
        Refusal::of(&**e)
    }
}

impl PlatformService {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        let stack = ServiceBuilder::new()
            .layer(MeteringLayer::new(inner.meter.clone()).classify(Classify))
            // The same request again, by account: what the quota reads.
            .layer(
                MeteringLayer::new(inner.account_meter.clone())
                    .classify(Classify)
                    .tenant_from(AccountFromExtensions),
            )
            .tenant_maintenance(inner.maintenance.clone())
            .tenant_rate_limit(inner.apps.limits())
            .tenant_quota(EarlierRequests(inner.account_meter.clone()))
            .layer(share_gate(inner.apps.limits(), inner.config.queue_wait))
            .layer(slot_gate(&inner.slots, inner.config.queue_wait))
            // Innermost of the limits, so the share and slot gates see a
            // stream's `Detached` mark and let go when its head is out.
            .tenant_streams(inner.apps.limits())
            .layer(inner.assets.clone())
            .service(SandboxAdapter(inner.registry.clone()))
            .map_response(|r| r.map(|b| b.map_err(Into::<BoxError>::into).boxed_unsync()))
            // Typed inside the box: the stack's own future is the one
            // `call` returns, not boxed again around it.
            .map_err(PlatformError::from_box);
        Self {
            inner,
            stack: BoxCloneSyncService::new(stack),
        }
    }
}

/// The compute-share gate: a request over its tenant's shares waits up to
/// `wait` for one to free (zero = refuse at once), then gets `Overloaded`.
///
/// The short wait smooths bursts for well-behaved tenants and, against a
/// client hammering a tenant that holds its shares, paces the refusals to
/// the wait instead of answering as fast as the CPU allows, which is what
/// keeps other tenants' latency flat.
fn share_gate(
    limits: &corral_limits::TenantLimits,
    wait: std::time::Duration,
) -> corral_limits::TenantConcurrencyLayer {
    let layer = corral_limits::TenantConcurrencyLayer::new(limits.clone());
    if wait.is_zero() {
        layer
    } else {
        layer.wait(wait)
    }
}

/// The host-wide runtime-slot gate, with the same wait as [`share_gate`]:
/// a burst wider than the host's slots queues briefly instead of failing.
fn slot_gate(
    slots: &corral_limits::RuntimeSlots,
    wait: std::time::Duration,
) -> corral_limits::RuntimeSlotsLayer {
    let layer = corral_limits::RuntimeSlotsLayer::new(slots.clone());
    if wait.is_zero() {
        layer
    } else {
        layer.wait(wait)
    }
}

impl Service<http::Request<Bytes>> for PlatformService {
    type Response = http::Response<PlatformBody>;
    type Error = PlatformError;
    type Future = BoxFuture<'static, Result<Self::Response, PlatformError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Bytes>) -> Self::Future {
        match self.inner.resolve(&mut req) {
            Ok(()) => self.stack.call(req.map(Full::new)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

impl super::Inner {
    /// Finds the app (the [`AppRef`] a frontend resolved, else by the
    /// request's [`TenantId`]: one table lookup either way) and checks the
    /// body size before any layer runs. The layers read the app's
    /// [`TenantContext`], the sandbox its program handle, both put in the
    /// request's extensions here: nothing below looks the app up again.
    fn resolve(&self, req: &mut http::Request<Bytes>) -> Result<(), PlatformError> {
        let app = match req.extensions_mut().remove::<AppRef>() {
            Some(app) => app,
            None => {
                let id = req
                    .extensions()
                    .get::<TenantId>()
                    .ok_or(PlatformError::MissingTenant)?;
                self.apps
                    .get(id)
                    .ok_or_else(|| PlatformError::NotFound { tenant: id.clone() })?
            }
        };
        let ctx = app.context();
        let limit = ctx.tier().max_body_bytes;
        let size = req.body().len() as u64;
        if size > limit {
            // Refused before metering: counted here, under `refused` only.
            self.meter
                .tenant(ctx.id())
                .refused(Refusal::PayloadTooLarge);
            let refused = corral_limits::Refused::payload_too_large(
                Some(ctx.id().clone()),
                limit,
                Some(size),
            );
            return Err(PlatformError::Refused(Box::new(refused)));
        }
        ctx.clone().insert_into(req);
        req.extensions_mut().insert(app.program().clone());
        Ok(())
    }
}

/// The innermost service: runs the request in the tenant's sandbox and puts
/// the invocation's figures where metering reads them.
#[derive(Clone, Debug)]
struct SandboxAdapter(Registry);

impl Service<http::Request<Full<Bytes>>> for SandboxAdapter {
    type Response = http::Response<crate::Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let registry = self.0.clone();
        Box::pin(async move {
            // The handle `resolve` put in: no lookup by name here.
            let program = req
                .extensions()
                .get::<AppHandle>()
                .cloned()
                .ok_or(SandboxError::MissingTenant)?;
            let (parts, mut body) = req.into_parts();
            // `Full` holds the bytes already, in one frame: taking it does
            // not wait, and no buffer list is built around it.
            let body = match body.frame().await {
                Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
                Some(Err(never)) => match never {},
                None => Bytes::new(),
            };
            let req = http::Request::from_parts(parts, body);
            let mut resp = registry.invoke_handle(&program, req).await?;
            if let Some(s) = resp.extensions().get::<InvocationStats>().copied() {
                resp.extensions_mut().insert(
                    InvocationFigures::new(
                        s.fuel_consumed,
                        s.wall_time,
                        s.peak_memory,
                        s.cold_start,
                    )
                    .with_cpu_time(s.cpu_time),
                );
            }
            Ok(resp)
        })
    }
}

/// Collects a platform response into `Bytes`, keeping status, headers and
/// extensions (the [`InvocationStats`]).
pub(super) async fn collect(
    resp: http::Response<PlatformBody>,
) -> Result<http::Response<Bytes>, PlatformError> {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(PlatformError::from_box)?
        .to_bytes();
    Ok(http::Response::from_parts(parts, bytes))
}
