//! Per-tenant execution limits.

use std::time::Duration;

/// The hard limits one tenant's invocations run under.
///
/// Build with [`Limits::builder`]; every setter documents its default.
///
/// ```
/// use std::time::Duration;
/// use corral::Limits;
///
/// let limits = Limits::builder()
///     .fuel_per_request(1_000_000)
///     .wall_clock(Duration::from_millis(250))
///     .build();
/// assert_eq!(limits.fuel_per_request, 1_000_000);
/// assert_eq!(limits.memory_bytes, 64 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Fuel (roughly, WebAssembly instructions; for JavaScript, interrupt ticks) per request.
    pub fuel_per_request: u64,
    /// Linear memory (WebAssembly) or heap (JavaScript) per instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline per request.
    pub wall_clock: Duration,
    /// Guest stack, in bytes.
    pub max_stack_bytes: usize,
    /// Response (stdout) bytes per request.
    pub max_output_bytes: u64,
    /// Bytes of the tenant's log (stderr, `console.log`) kept; older lines are dropped.
    pub max_log_bytes: usize,
    /// How long a tenant stays warm with nothing in flight before it is parked.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_request: 1_000_000_000,
            memory_bytes: 64 << 20,
            wall_clock: Duration::from_secs(10),
            max_stack_bytes: 512 << 10,
            max_output_bytes: 16 << 20,
            max_log_bytes: 64 << 10,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl Limits {
    /// A builder starting from the defaults.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder(Limits::default())
    }
}

/// Builds [`Limits`]; see each setter for its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct LimitsBuilder(Limits);

impl LimitsBuilder {
    /// Fuel per request. Default: 1,000,000,000.
    pub fn fuel_per_request(mut self, fuel: u64) -> Self {
        self.0.fuel_per_request = fuel;
        self
    }
    /// Memory per instance in bytes. Default: 64 MiB.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.0.memory_bytes = bytes;
        self
    }
    /// Wall-clock deadline per request. Default: 10 s.
    pub fn wall_clock(mut self, d: Duration) -> Self {
        self.0.wall_clock = d;
        self
    }
    /// Guest stack in bytes. Default: 512 KiB.
    pub fn max_stack_bytes(mut self, bytes: usize) -> Self {
        self.0.max_stack_bytes = bytes;
        self
    }
    /// Response bytes per request. Default: 16 MiB.
    pub fn max_output_bytes(mut self, bytes: u64) -> Self {
        self.0.max_output_bytes = bytes;
        self
    }
    /// Tenant log bytes kept. Default: 64 KiB.
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.0.max_log_bytes = bytes;
        self
    }
    /// Idle time before parking. Default: 15 min.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.0.idle_timeout = d;
        self
    }
    /// Finishes the builder.
    pub fn build(self) -> Limits {
        self.0
    }
}
