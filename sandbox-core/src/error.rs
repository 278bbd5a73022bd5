//! The typed errors of a sandbox invocation or deploy.

use std::time::Duration;

use corral_limits::TenantId;

/// Why a deploy or an invocation failed.
///
/// Each variant maps to one stable JSON error code ([`SandboxError::code`]) and
/// one HTTP status ([`SandboxError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The request used all its fuel.
    #[error("fuel exhausted: used {consumed} of {limit}")]
    FuelExhausted {
        /// Fuel allowed per request.
        limit: u64,
        /// Fuel consumed when the guest was stopped.
        consumed: u64,
    },
    /// The guest tried to take more memory than its limit.
    #[error("memory limit of {limit} bytes reached")]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request ran past its wall-clock deadline.
    #[error("deadline of {limit:?} exceeded")]
    Deadline {
        /// The deadline.
        limit: Duration,
    },
    /// The guest overflowed its stack.
    #[error("guest stack overflow")]
    StackOverflow,
    /// The guest trapped (unreachable, out-of-bounds access, …) or exited non-zero.
    #[error("guest trapped: {message}")]
    Trap {
        /// What the engine said.
        message: String,
    },
    /// A JavaScript tenant threw.
    #[error("script error: {message}")]
    ScriptError {
        /// The error message.
        message: String,
        /// The JavaScript stack, when there is one.
        stack: Option<String>,
    },
    /// The guest's response could not be parsed.
    #[error("bad response from guest: {reason}")]
    BadResponse {
        /// What was wrong with it.
        reason: String,
    },
    /// A WebAssembly component failed after the host refused its outbound
    /// HTTP request: the host is not on the tier's allow-list
    /// ([`Limits::outbound_hosts`](crate::Limits::outbound_hosts)).
    #[error("outbound HTTP to {authority:?} refused: not on the tier's allow-list")]
    OutboundRefused {
        /// The `host[:port]` the guest tried to reach.
        authority: String,
    },
    /// The guest wrote more than `max_output_bytes`.
    #[error("guest output exceeded {limit} bytes")]
    OutputTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The uploaded code is not a valid module or script.
    #[error("invalid module: {reason}")]
    InvalidModule {
        /// Why it was refused (for scripts: with line and column).
        reason: String,
    },
    /// The module declares more initial linear memory than the tenant may use.
    #[error("module declares {declared} bytes of initial memory; the limit is {limit}")]
    InitialMemoryTooLarge {
        /// Initial memory the module declares, in bytes.
        declared: u64,
        /// The tenant's memory limit, in bytes.
        limit: u64,
    },
    /// A persisted artifact failed its checksum or could not be loaded; it is
    /// never executed.
    #[error("corrupt artifact: {reason}")]
    CorruptArtifact {
        /// What was wrong with it.
        reason: String,
    },
    /// The host has no free instance slot right now; retry later.
    #[error("overloaded: {reason}")]
    Overloaded {
        /// Which resource ran out.
        reason: String,
    },
    /// The request carried no [`TenantId`] extension (a routing bug).
    #[error("request carries no tenant")]
    MissingTenant,
    /// No tenant of that name is deployed.
    #[error("tenant {tenant} not found")]
    TenantNotFound {
        /// The requested tenant.
        tenant: TenantId,
    },
    /// The host failed (I/O on the data dir, a corrupted artifact, …); not the guest's fault.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl SandboxError {
    /// The kind metering counts this failure under: the fuel, memory and
    /// deadline limits by name, anything else as `other`.
    ///
    /// ```
    /// use corral::{SandboxError, metering::ErrorKind};
    /// let e = SandboxError::FuelExhausted { limit: 10, consumed: 11 };
    /// assert_eq!(e.error_kind(), ErrorKind::Fuel);
    /// assert_eq!(SandboxError::StackOverflow.error_kind(), ErrorKind::Other);
    /// ```
    pub fn error_kind(&self) -> corral_metering::ErrorKind {
        use corral_metering::ErrorKind;
        match self {
            Self::FuelExhausted { .. } => ErrorKind::Fuel,
            Self::MemoryLimit { .. } => ErrorKind::Memory,
            Self::Deadline { .. } => ErrorKind::Deadline,
            _ => ErrorKind::Other,
        }
    }

    /// The stable machine-readable code used in JSON error bodies,
    /// e.g. `"fuel_exhausted"`.
    ///
    /// ```
    /// use corral::SandboxError;
    /// assert_eq!(SandboxError::StackOverflow.code(), "stack_overflow");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::FuelExhausted { .. } => "fuel_exhausted",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Deadline { .. } => "deadline_exceeded",
            Self::StackOverflow => "stack_overflow",
            Self::Trap { .. } => "trap",
            Self::ScriptError { .. } => "script_error",
            Self::BadResponse { .. } => "bad_response",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::OutboundRefused { .. } => "outbound_refused",
            Self::InvalidModule { .. } => "invalid_module",
            Self::TenantNotFound { .. } => "not_found",
            Self::InitialMemoryTooLarge { .. } => "initial_memory_too_large",
            Self::CorruptArtifact { .. } => "corrupt_artifact",
            // The host's instance pool is full: the same refusal as a full
            // set of runtime slots, one code with one status.
            Self::Overloaded { .. } => "runtime_busy",
            Self::MissingTenant => "missing_tenant",
            Self::Internal { .. } => "internal",
        }
    }

    /// The HTTP status a frontend should answer with.
    ///
    /// ```
    /// use corral::SandboxError;
    /// assert_eq!(SandboxError::StackOverflow.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::FuelExhausted { .. }
            | Self::MemoryLimit { .. }
            | Self::Deadline { .. }
            | Self::StackOverflow => S::SERVICE_UNAVAILABLE,
            Self::Trap { .. }
            | Self::ScriptError { .. }
            | Self::BadResponse { .. }
            | Self::OutputTooLarge { .. }
            | Self::OutboundRefused { .. } => S::BAD_GATEWAY,
            Self::InvalidModule { .. } | Self::InitialMemoryTooLarge { .. } => S::BAD_REQUEST,
            Self::TenantNotFound { .. } => S::NOT_FOUND,
            // A frontend that sent no tenant has a bug: not the client's fault.
            Self::MissingTenant => S::INTERNAL_SERVER_ERROR,
            Self::Overloaded { .. } => S::SERVICE_UNAVAILABLE,
            Self::CorruptArtifact { .. } => S::INTERNAL_SERVER_ERROR,
            Self::Internal { .. } => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// Wraps a host-side failure.
    pub fn internal(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}
