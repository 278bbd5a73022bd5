use std::time::Duration;

use tower_layer::Layer;

use super::{MaintenanceGate, MaintenanceSwitch};

/// Refuses requests while the switch is on; see the [module docs](crate::maintenance).
#[derive(Debug, Clone)]
#[must_use]
pub struct MaintenanceLayer {
    pub(crate) switch: MaintenanceSwitch,
    pub(crate) retry_after: Option<Duration>,
}

impl MaintenanceLayer {
    /// Watches `switch`.
    pub fn new(switch: MaintenanceSwitch) -> Self {
        Self {
            switch,
            retry_after: None,
        }
    }

    /// A `Retry-After` hint for refused requests. Default: none.
    pub fn retry_after(mut self, hint: Duration) -> Self {
        self.retry_after = Some(hint);
        self
    }
}

impl<S> Layer<S> for MaintenanceLayer {
    type Service = MaintenanceGate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MaintenanceGate {
            inner,
            layer: self.clone(),
        }
    }
}
