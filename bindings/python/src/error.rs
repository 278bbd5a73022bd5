//! Rust errors → the Python exception classes of `corral._errors`.
//!
//! The classes live in Python (`python/corral/_errors.py`) so they can carry
//! typed keyword attributes and pickle; this module only picks the class and
//! passes the Rust error's fields through unchanged.

use std::time::Duration;

use corral::limits_layers::{Refusal, Refused};
use corral::platform::PlatformError;
use corral::storage::StorageError;
use corral::{InvalidTenantId, SandboxError, TenantId};
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
        SandboxError::OutboundRefused { authority } => {
            spec("OutboundRefused").field(py, "authority", authority.as_str())
        }
        SandboxError::OutputTooLarge { limit } => spec("OutputTooLarge").field(py, "limit", *limit),
        SandboxError::InvalidModule { .. } => spec("InvalidModule"),
        SandboxError::InitialMemoryTooLarge { declared, limit } => spec("InitialMemoryTooLarge")
            .field(py, "declared", *declared)
            .field(py, "limit", *limit),
        SandboxError::CorruptArtifact { .. } => spec("CorruptArtifact"),
        SandboxError::Overloaded { .. } => spec("RuntimeBusy"),
        SandboxError::TenantNotFound { tenant } => {
            spec("TenantNotFound").field(py, "tenant", tenant.as_str())
        }
        SandboxError::MissingTenant => spec("MissingTenant"),
        // Internal, and variants added later.
        _ => spec("InternalError"),
    }
}

/// The Python exception for an invalid tenant name (also a `ValueError`).
pub(crate) fn invalid_tenant(py: Python<'_>, name: &str, err: &InvalidTenantId) -> PyErr {
    invalid_tenant_spec(py, name, err).into_pyerr(py)
}

fn invalid_tenant_spec(py: Python<'_>, name: &str, err: &InvalidTenantId) -> PyErrorSpec {
    PyErrorSpec::new("InvalidTenantName", err.to_string(), "invalid_tenant", 400)
        .field(py, "name", name)
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
        PlatformError::Refused(r) => refused(py, r),
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
        PlatformError::AccountNotFound { account } => {
            spec("AccountNotFound").field(py, "account", account.as_str())
        }
        PlatformError::AccountExists { account } => {
            spec("AccountExists").field(py, "account", account.as_str())
        }
        PlatformError::AccountTier { account } => {
            spec("AccountTier").field(py, "account", account.as_str())
        }
        PlatformError::AccountNotEmpty { account, apps } => spec("AccountNotEmpty")
            .field(py, "account", account.as_str())
            .field(py, "apps", *apps),
        PlatformError::AppLimit { account, apps, max } => spec("AppLimit")
            .field(py, "account", account.as_str())
            .field(py, "apps", *apps)
            .field(py, "max_apps", *max),
        PlatformError::BundleTooLarge { limit, size } => spec("BundleTooLarge")
            .field(py, "limit", *limit)
            .field(py, "size", *size),
        PlatformError::InvalidBundle { .. } => spec("InvalidBundle"),
        PlatformError::NotAcceptingTenants => spec("NotAcceptingTenants"),
        PlatformError::InvalidArchive { .. } => spec("InvalidArchive"),
        PlatformError::Config(_) => spec("ConfigError"),
        PlatformError::MissingTenant => spec("MissingTenant"),
        PlatformError::Storage(_) => spec("StorageError"),
        // Internal, and variants added later.
        _ => spec("InternalError"),
    }
}

/// A refusal, from the typed [`Refused`]: one class per kind.
fn refused(py: Python<'_>, r: &Refused) -> PyErrorSpec {
    let retry_after = r.retry_after.map(|d| d.as_secs_f64());
    let spec =
        |class: &'static str| PyErrorSpec::new(class, r.to_string(), r.code(), r.status().as_u16());
    match r.kind {
        Refusal::Overloaded => spec("Overloaded").field(py, "retry_after", retry_after),
        Refusal::RuntimeBusy => spec("RuntimeBusy").field(py, "retry_after", retry_after),
        Refusal::TooManyStreams => spec("TooManyStreams")
            .field(py, "retry_after", retry_after)
            .field(py, "limit", r.limit),
        Refusal::RateLimited => {
            spec("RateLimited").field(py, "retry_after", retry_after.unwrap_or(0.0))
        }
        Refusal::QuotaExceeded => spec("QuotaExceeded")
            .field(py, "quota", r.quota.unwrap_or(0))
            .field(py, "used", r.used.unwrap_or(0))
            .field(
                py,
                "resets_at",
                r.resets_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            ),
        Refusal::Maintenance => spec("Maintenance").field(py, "retry_after", retry_after),
        Refusal::PayloadTooLarge => spec("PayloadTooLarge")
            .field(py, "limit", r.limit)
            .field(py, "size", r.size),
        // Kinds added later.
        _ => spec("InternalError"),
    }
}

/// One error of every kind the bindings raise, as `(code, status, class)`
/// from the same mapping `invoke` and friends use, so Python's test can
/// check that each code has its class and that both agree on the status.
#[pyfunction(name = "_error_table")]
pub(crate) fn error_table(py: Python<'_>) -> Vec<(&'static str, u16, &'static str)> {
    let t = TenantId::new("t").expect("a valid name");
    let d = Duration::from_secs(1);
    let boxed: Vec<corral::limits_layers::BoxError> = vec![
        corral::limits_layers::RateLimited::new(t.clone(), d).into(),
        corral::limits_layers::QuotaExceeded::new(t.clone(), 1, 1, chrono::Utc::now()).into(),
        corral::limits_layers::Overloaded::new(t.clone(), d).into(),
        corral::limits_layers::RuntimeBusy::new(d).into(),
        corral::limits_layers::TooManyStreams::new(t.clone(), 1, d).into(),
        corral::limits_layers::Maintenance::new(None, None).into(),
        Box::new(Refused::payload_too_large(None, 1, Some(2))),
    ];
    let mut errors: Vec<PlatformError> = boxed
        .iter()
        .filter_map(|e| Refused::of(&**e))
        .map(|r| PlatformError::Refused(Box::new(r)))
        .collect();
    // A kind without a sample shows as a code with no class.
    for kind in Refusal::ALL {
        if !errors
            .iter()
            .any(|e| matches!(e, PlatformError::Refused(r) if r.kind == kind))
        {
            return vec![(kind.code(), kind.status().as_u16(), "")];
        }
    }
    let sandbox = [
        SandboxError::FuelExhausted {
            limit: 1,
            consumed: 1,
        },
        SandboxError::MemoryLimit { limit: 1 },
        SandboxError::Deadline { limit: d },
        SandboxError::StackOverflow,
        SandboxError::Trap {
            message: "t".into(),
        },
        SandboxError::ScriptError {
            message: "s".into(),
            stack: None,
        },
        SandboxError::BadResponse { reason: "b".into() },
        SandboxError::OutboundRefused {
            authority: "a".into(),
        },
        SandboxError::OutputTooLarge { limit: 1 },
        SandboxError::InvalidModule { reason: "i".into() },
        SandboxError::InitialMemoryTooLarge {
            declared: 2,
            limit: 1,
        },
        SandboxError::CorruptArtifact { reason: "c".into() },
        SandboxError::Overloaded { reason: "o".into() },
        SandboxError::MissingTenant,
        SandboxError::TenantNotFound { tenant: t.clone() },
        SandboxError::Internal {
            message: "x".into(),
            source: None,
        },
    ];
    errors.extend(sandbox.into_iter().map(PlatformError::Sandbox));
    errors.extend([
        PlatformError::Storage(StorageError::Integrity {
            key: "k".into(),
            expected: 1,
            actual: 2,
        }),
        PlatformError::Storage(StorageError::Quarantined { key: "k".into() }),
        PlatformError::Storage(StorageError::StorageQuotaExceeded {
            limit: 1,
            used: 1,
            needed: 1,
        }),
        PlatformError::Storage(StorageError::NotFound { key: "k".into() }),
        PlatformError::NotFound { tenant: t.clone() },
        PlatformError::UnknownTier {
            tier: "gold".into(),
        },
        PlatformError::AccountNotFound { account: t.clone() },
        PlatformError::AccountExists { account: t.clone() },
        PlatformError::AccountTier { account: t.clone() },
        PlatformError::AccountNotEmpty {
            account: t.clone(),
            apps: 1,
        },
        PlatformError::AppLimit {
            account: t.clone(),
            apps: 1,
            max: 1,
        },
        PlatformError::BundleTooLarge { limit: 1, size: 2 },
        PlatformError::InvalidBundle { reason: "r".into() },
        PlatformError::NotAcceptingTenants,
        PlatformError::InvalidArchive { reason: "r".into() },
        PlatformError::MissingTenant,
        PlatformError::Internal("x".into()),
    ]);
    let mut table: Vec<_> = errors
        .iter()
        .map(|e| {
            let spec = platform_spec(py, e);
            (spec.code, spec.status, spec.class)
        })
        .collect();
    let name = invalid_tenant_spec(py, "Bad", &TenantId::new("Bad").unwrap_err());
    table.push((name.code, name.status, name.class));
    table
}
