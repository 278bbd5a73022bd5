use std::time::Duration;

use tower_layer::Layer;

use super::{RuntimeLimit, RuntimeSlots};

/// Applies host-wide runtime slots; see the [module docs](crate::runtime).
#[derive(Debug, Clone)]
#[must_use]
pub struct RuntimeSlotsLayer {
    pub(crate) slots: RuntimeSlots,
    pub(crate) wait: Option<Duration>,
    pub(crate) retry_after: Duration,
}

impl RuntimeSlotsLayer {
    /// Uses `slots`, shared with whoever resizes them (the admin API, the probe).
    pub fn new(slots: RuntimeSlots) -> Self {
        Self {
            slots,
            wait: None,
            retry_after: Duration::from_secs(1),
        }
    }

    /// Waits up to `max` for a slot before refusing. Default: no wait (fail fast).
    pub fn wait(mut self, max: Duration) -> Self {
        self.wait = Some(max);
        self
    }

    /// The `retry_after` reported in [`RuntimeBusy`](crate::RuntimeBusy). Default: 1 s.
    pub fn retry_after(mut self, hint: Duration) -> Self {
        self.retry_after = hint;
        self
    }
}

impl<S> Layer<S> for RuntimeSlotsLayer {
    type Service = RuntimeLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RuntimeLimit {
            inner,
            layer: self.clone(),
        }
    }
}
