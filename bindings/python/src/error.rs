//! Rust errors → the Python exception classes of `corral._errors`.
//!
//! The classes live in Python (`python/corral/_errors.py`) so they can carry
//! typed keyword attributes and pickle; this module only picks the class and
//! passes the Rust error's fields through unchanged.

use corral::platform::PlatformError;
use corral::storage::StorageError;
use corral::{InvalidTenantId, SandboxError};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// One Python exception to raise: its class name in `corral._errors`, its
/// message and its keyword attributes.
pub(crate) struct PyErrorSpec {
    class: &'static str,
    message: String,
    code: &'static str,
    status: u16,
    fields: Vec<(&'static str, Py<PyAny>)>,
}

impl PyErrorSpec {
    pub(crate) fn new(
        class: &'static str,
        message: String,
        code: &'static str,
        status: u16,
    ) -> Self {
        Self {
            class,
            message,
            code,
            status,
            fields: Vec::new(),
        }
    }

    fn field<'py, T>(mut self, py: Python<'py>, name: &'static str, value: T) -> Self
    where
        T: IntoPyObject<'py>,
    {
        // Conversions of plain integers, floats and strings cannot fail.
        if let Ok(v) = value.into_py_any(py) {
            self.fields.push((name, v));
        }
        self
    }

    /// Instantiates the exception class.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self.build(py) {
            Ok(err) => err,
            Err(err) => err,
        }
    }

    fn build(self, py: Python<'_>) -> PyResult<PyErr> {
        let module = ERRORS.import_module(py)?;
        let class = module.getattr(self.class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("code", self.code)?;
        kwargs.set_item("status", self.status)?;
        for (name, value) in self.fields {
            kwargs.set_item(name, value)?;
        }
        let value = class.call((self.message,), Some(&kwargs))?;
        Ok(PyErr::from_value(value))
    }
}

trait ImportModule {
    fn import_module<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyModule>>;
}

impl ImportModule for PyOnceLock<Py<PyModule>> {
    fn import_module<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyModule>> {
        self.get_or_try_init(py, || py.import("corral._errors").map(Bound::unbind))
            .map(|m| m.bind(py))
    }
}

/// The Python exception for a sandbox failure.
pub(crate) fn sandbox_error(py: Python<'_>, err: &SandboxError) -> PyErrorSpec {
    let code = err.code();
    let status = err.status().as_u16();
    let display = err.to_string();
    let spec = |class: &'static str| PyErrorSpec::new(class, display.clone(), code, status);
    match err {
        SandboxError::FuelExhausted { limit, consumed } => spec("FuelExhausted")
            .field(py, "limit", *limit)
            .field(py, "consumed", *consumed),
        SandboxError::MemoryLimit { limit } => {
            spec("MemoryLimitExceeded").field(py, "limit", *limit)
        }
        SandboxError::Deadline { limit } => {
            spec("DeadlineExceeded").field(py, "limit", limit.as_secs_f64())
        }
        SandboxError::StackOverflow => spec("StackOverflow"),
        SandboxError::Trap { message } => PyErrorSpec::new("Trap", message.clone(), code, status),
        SandboxError::ScriptError { message, stack } => {
            PyErrorSpec::new("ScriptError", message.clone(), code, status).field(
                py,
                "stack",
                stack.clone(),
            )
        }
        SandboxError::BadResponse { .. } => spec("BadResponse"),
        SandboxError::OutputTooLarge { limit } => spec("OutputTooLarge").field(py, "limit", *limit),
        SandboxError::InvalidModule { .. } => spec("InvalidModule"),
        SandboxError::InitialMemoryTooLarge { declared, limit } => spec("InitialMemoryTooLarge")
            .field(py, "declared", *declared)
            .field(py, "limit", *limit),
        SandboxError::CorruptArtifact { .. } => spec("CorruptArtifact"),
        SandboxError::Overloaded { .. } => spec("Overloaded"),
        SandboxError::TenantNotFound { tenant } => {
            spec("TenantNotFound").field(py, "tenant", tenant.as_str())
        }
        // MissingTenant (a routing bug), Internal, and variants added later.
        _ => spec("InternalError"),
    }
}

/// The Python exception for an invalid tenant name (also a `ValueError`).
pub(crate) fn invalid_tenant(py: Python<'_>, name: &str, err: &InvalidTenantId) -> PyErr {
    PyErrorSpec::new("InvalidTenantName", err.to_string(), "invalid_tenant", 400)
        .field(py, "name", name)
        .into_pyerr(py)
}

/// The Python exception for a platform failure.
pub(crate) fn platform_error(py: Python<'_>, err: &PlatformError) -> PyErr {
    platform_spec(py, err).into_pyerr(py)
}

fn platform_spec(py: Python<'_>, err: &PlatformError) -> PyErrorSpec {
    let code = err.code();
    let status = err.status().as_u16();
    let spec = |class: &'static str| PyErrorSpec::new(class, err.to_string(), code, status);
    match err {
        PlatformError::Sandbox(e) => sandbox_error(py, e),
        PlatformError::Limit(_) => limit_error(py, err),
        PlatformError::Storage(StorageError::Integrity {
            key,
            expected,
            actual,
        }) => spec("IntegrityError")
            .field(py, "key", key.as_str())
            .field(py, "expected", *expected)
            .field(py, "actual", *actual),
        PlatformError::Storage(StorageError::Quarantined { key }) => {
            spec("IntegrityError").field(py, "key", key.as_str())
        }
        PlatformError::Storage(StorageError::StorageQuotaExceeded {
            limit,
            used,
            needed,
        }) => spec("StorageQuotaExceeded")
            .field(py, "limit", *limit)
            .field(py, "used", *used)
            .field(py, "needed", *needed),
        PlatformError::NotFound { tenant } => {
            spec("TenantNotFound").field(py, "tenant", tenant.as_str())
        }
        PlatformError::UnknownTier { tier } => spec("UnknownTier").field(py, "tier", tier.as_str()),
        PlatformError::BundleTooLarge { limit, size } => spec("BundleTooLarge")
            .field(py, "limit", *limit)
            .field(py, "size", *size),
        PlatformError::BodyTooLarge { limit, size } => spec("BodyTooLarge")
            .field(py, "limit", *limit)
            .field(py, "size", *size),
        PlatformError::InvalidBundle { .. } => spec("InvalidBundle"),
        PlatformError::NotAcceptingTenants => spec("NotAcceptingTenants"),
        PlatformError::InvalidArchive { .. } => spec("InvalidArchive"),
        PlatformError::Config(_) => spec("ConfigError"),
        // Other storage failures, Internal, and variants added later.
        _ => spec("InternalError"),
    }
}

/// A refusal from a limit layer, read from the stable fields the platform
/// reports for it (the same ones as the HTTP JSON body).
fn limit_error(py: Python<'_>, err: &PlatformError) -> PyErrorSpec {
    let code = err.code();
    let status = err.status().as_u16();
    let fields = err.fields();
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let uint = |name: &str| get(name).and_then(serde_json::Value::as_u64);
    let retry_after = uint("retry_after_ms").map(|ms| ms as f64 / 1000.0);
    let spec = |class: &'static str| PyErrorSpec::new(class, err.to_string(), code, status);
    match code {
        "overloaded" | "runtime_busy" | "too_many_streams" => {
            spec("Overloaded").field(py, "retry_after", retry_after)
        }
        "rate_limited" => spec("RateLimited").field(py, "retry_after", retry_after.unwrap_or(0.0)),
        "quota_exceeded" => spec("QuotaExceeded")
            .field(py, "quota", uint("quota").unwrap_or(0))
            .field(py, "used", uint("used").unwrap_or(0))
            .field(
                py,
                "resets_at",
                get("resets_at").and_then(serde_json::Value::as_str),
            ),
        "maintenance" => spec("Maintenance").field(py, "retry_after", retry_after),
        "memory_budget_exceeded" => {
            spec("MemoryLimitExceeded").field(py, "limit", uint("limit_bytes").unwrap_or(0))
        }
        "payload_too_large" | "body_too_large" => spec("BodyTooLarge")
            .field(py, "limit", uint("limit"))
            .field(py, "size", uint("size")),
        _ => spec("InternalError"),
    }
}
