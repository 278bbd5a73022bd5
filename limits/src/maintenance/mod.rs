//! Maintenance mode: while the shared [`MaintenanceSwitch`] is on, every
//! request through the layer fails with [`Maintenance`](crate::Maintenance)
//! (503). Put it in the tenant stack only, so the admin API is still served.
//!
//! ```
//! use std::convert::Infallible;
//! use corral_limits::{error_response, MaintenanceLayer, MaintenanceSwitch};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let switch = MaintenanceSwitch::new();
//! let mut svc = ServiceBuilder::new()
//!     .layer(MaintenanceLayer::new(switch.clone()))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//!
//! assert!(svc.ready().await.unwrap().call(Request::new(())).await.is_ok());
//! switch.enable();
//! let err = svc.ready().await.unwrap().call(Request::new(())).await.unwrap_err();
//! let (status, _, body) = error_response(&err).unwrap();
//! assert_eq!(status, 503);
//! let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(v["error"], "maintenance");
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::MaintenanceLayer;
pub use service::MaintenanceGate;

/// The host's maintenance flag, shared by the layer and the admin API. Clones
/// share the flag. Off when made.
///
/// ```
/// let s = corral_limits::MaintenanceSwitch::new();
/// assert!(!s.is_on());
/// s.clone().set(true);
/// assert!(s.is_on());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MaintenanceSwitch(Arc<AtomicBool>);

impl MaintenanceSwitch {
    /// A switch, off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns maintenance mode on.
    pub fn enable(&self) {
        self.set(true);
    }

    /// Turns maintenance mode off.
    pub fn disable(&self) {
        self.set(false);
    }

    /// Sets maintenance mode.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Release);
    }

    /// Whether maintenance mode is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
