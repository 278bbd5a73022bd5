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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Fuel for all the steps of one streamed response together; each step
    /// also stays within [`fuel_per_request`](Self::fuel_per_request).
    pub stream_fuel: u64,
    /// Wall clock of one streamed response, from its request's start.
    pub max_stream_duration: Duration,
    /// Hosts (`host` or `host:port`) a WebAssembly component may reach
    /// through `wasi:http/outgoing-handler`; any other outbound request is
    /// refused. Empty: no outbound HTTP at all.
    pub outbound_hosts: Vec<String>,
    /// How many of the tenant's requests may run at once (its tier's
    /// compute shares). A JavaScript tenant keeps up to this many warm
    /// runtimes, each within [`memory_bytes`](Self::memory_bytes), made only
    /// when every existing one is busy.
    pub compute_shares: u32,
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
            stream_fuel: corral_limits::default_stream_fuel(1_000_000_000),
            max_stream_duration: corral_limits::default_max_stream_duration(Duration::from_secs(
                10,
            )),
            outbound_hosts: Vec::new(),
            compute_shares: 1,
        }
    }
}

impl Limits {
    /// A builder starting from the defaults.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder {
            limits: Limits::default(),
            stream_fuel: None,
            max_stream_duration: None,
        }
    }
}

/// Builds [`Limits`]; see each setter for its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct LimitsBuilder {
    limits: Limits,
    /// Set explicitly; else derived from the per-request fuel at `build`.
    stream_fuel: Option<u64>,
    /// Set explicitly; else derived from the wall clock at `build`.
    max_stream_duration: Option<Duration>,
}

impl LimitsBuilder {
    /// Fuel per request. Default: 1,000,000,000.
    pub fn fuel_per_request(mut self, fuel: u64) -> Self {
        self.limits.fuel_per_request = fuel;
        self
    }
    /// Memory per instance in bytes. Default: 64 MiB.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.limits.memory_bytes = bytes;
        self
    }
    /// Wall-clock deadline per request. Default: 10 s.
    pub fn wall_clock(mut self, d: Duration) -> Self {
        self.limits.wall_clock = d;
        self
    }
    /// Guest stack in bytes. Default: 512 KiB.
    pub fn max_stack_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_stack_bytes = bytes;
        self
    }
    /// Response bytes per request. Default: 16 MiB.
    pub fn max_output_bytes(mut self, bytes: u64) -> Self {
        self.limits.max_output_bytes = bytes;
        self
    }
    /// Tenant log bytes kept. Default: 64 KiB.
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_log_bytes = bytes;
        self
    }
    /// Idle time before parking. Default: 15 min.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.limits.idle_timeout = d;
        self
    }
    /// Fuel for all the steps of one streamed response. Default: 10 ×
    /// the fuel per request ([`corral_limits::default_stream_fuel`]).
    ///
    /// ```
    /// let limits = corral::Limits::builder().fuel_per_request(100).build();
    /// assert_eq!(limits.stream_fuel, 1_000);
    /// let limits = corral::Limits::builder().stream_fuel(5).build();
    /// assert_eq!(limits.stream_fuel, 5);
    /// ```
    pub fn stream_fuel(mut self, fuel: u64) -> Self {
        self.stream_fuel = Some(fuel);
        self
    }
    /// Wall clock of one streamed response. Default: 60 × the wall clock
    /// per request ([`corral_limits::default_max_stream_duration`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let limits = corral::Limits::builder().wall_clock(Duration::from_secs(1)).build();
    /// assert_eq!(limits.max_stream_duration, Duration::from_secs(60));
    /// ```
    pub fn max_stream_duration(mut self, d: Duration) -> Self {
        self.max_stream_duration = Some(d);
        self
    }
    /// Lets components send outbound HTTP to `host` (`example.com`, or
    /// `127.0.0.1:8080` for one port only). Default: none, every outbound
    /// request is refused.
    ///
    /// ```
    /// let limits = corral::Limits::builder().allow_outbound_host("api.example.com").build();
    /// assert_eq!(limits.outbound_hosts, ["api.example.com"]);
    /// ```
    pub fn allow_outbound_host(mut self, host: impl Into<String>) -> Self {
        self.limits.outbound_hosts.push(host.into());
        self
    }
    /// Requests that may run at once (0 counts as 1). Default: 1.
    ///
    /// ```
    /// assert_eq!(corral::Limits::builder().compute_shares(4).build().compute_shares, 4);
    /// assert_eq!(corral::Limits::builder().compute_shares(0).build().compute_shares, 1);
    /// ```
    pub fn compute_shares(mut self, shares: u32) -> Self {
        self.limits.compute_shares = shares.max(1);
        self
    }
    /// Finishes the builder.
    pub fn build(self) -> Limits {
        let mut limits = self.limits;
        limits.stream_fuel = self
            .stream_fuel
            .unwrap_or_else(|| corral_limits::default_stream_fuel(limits.fuel_per_request));
        limits.max_stream_duration = self
            .max_stream_duration
            .unwrap_or_else(|| corral_limits::default_max_stream_duration(limits.wall_clock));
        limits
    }
}
