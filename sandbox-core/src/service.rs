//! [`SandboxService`]: the registry as a `tower::Service`.

use std::task::{Context, Poll};

use bytes::Bytes;
use corral_limits::TenantId;

use crate::{Body, BoxFuture, Registry, SandboxError};

/// A `tower::Service<http::Request<Bytes>>` that runs each request on the
/// tenant named by the [`TenantId`] in its extensions (put there by the
/// frontend's routing). A request without one is
/// [`SandboxError::MissingTenant`].
///
/// ```
/// use bytes::Bytes;
/// use corral::{EngineConfig, Registry, SandboxError, SandboxService};
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let registry = Registry::builder(dir.path())
///     .engine_config(EngineConfig::default().instances(2))
///     .open()
///     .unwrap();
/// let mut svc = SandboxService::new(registry);
/// let err = svc.call(http::Request::new(Bytes::new())).await.unwrap_err();
/// assert!(matches!(err, SandboxError::MissingTenant));
/// let mut req = http::Request::new(Bytes::new());
/// req.extensions_mut().insert("ghost".parse::<corral::TenantId>().unwrap());
/// let err = svc.call(req).await.unwrap_err();
/// assert!(matches!(err, SandboxError::TenantNotFound { .. }));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SandboxService {
    registry: Registry,
}

impl SandboxService {
    /// A service over `registry`.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// The registry it calls.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl tower_service::Service<http::Request<Bytes>> for SandboxService {
    type Response = http::Response<Body>;
    type Error = SandboxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, SandboxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let registry = self.registry.clone();
        Box::pin(async move {
            let tenant = request
                .extensions()
                .get::<TenantId>()
                .cloned()
                .ok_or(SandboxError::MissingTenant)?;
            registry.invoke(&tenant, request).await
        })
    }
}
