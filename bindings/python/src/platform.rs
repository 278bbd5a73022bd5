//! `corral.Platform`: a thin wrapper over [`corral::platform::Platform`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use corral::TenantId;
use corral::platform::{Bundle, ImportOptions, Platform, PlatformConfig, PlatformError};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};
use serde::Deserialize as _;

use crate::convert::to_py;
use crate::error::{invalid_tenant, platform_error};
use crate::response::PyResponse;

/// What the Python object owns: the platform, the tokio runtime it runs on,
/// and the temporary data dir when none was given.
#[derive(Debug)]
struct Shared {
    platform: Platform,
    /// `None` only while [`PyPlatform`] is being dropped.
    runtime: Option<tokio::runtime::Runtime>,
    closed: AtomicBool,
    // Declared last: removed after the platform has shut down.
    _temp: Option<tempfile::TempDir>,
}

impl Shared {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the platform is dropped")
    }

    fn shutdown(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.runtime().block_on(self.platform.shutdown());
        }
    }

    /// Flushes usage and stops the runtime's threads.
    fn stop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            // On one of the runtime's own threads (the last reference went
            // away inside a task): neither `block_on` nor joining the
            // runtime's threads is possible here.
            std::thread::scope(|s| {
                s.spawn(|| self.shutdown());
            });
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        } else {
            self.shutdown();
            drop(self.runtime.take());
        }
    }
}

/// A Corral platform: deploy tenants, invoke them under their tier's limits,
/// read their usage.
#[pyclass(name = "Platform", module = "corral", frozen)]
#[derive(Debug)]
pub struct PyPlatform {
    shared: Arc<Shared>,
}

impl Drop for PyPlatform {
    fn drop(&mut self) {
        // Dropped from Python, the GIL held: stop with it released, so that
        // a runtime thread waiting for the GIL cannot deadlock the join.
        Python::attach(|py| {
            py.detach(|| {
                if let Some(shared) = Arc::get_mut(&mut self.shared) {
                    shared.stop();
                }
            })
        });
    }
}

impl PyPlatform {
    fn platform(&self) -> PyResult<&Platform> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(PyRuntimeError::new_err("the platform is closed"));
        }
        Ok(&self.shared.platform)
    }
}

fn tenant(py: Python<'_>, name: &str) -> PyResult<TenantId> {
    TenantId::new(name).map_err(|e| invalid_tenant(py, name, &e))
}

/// `config` as a `PlatformConfig`: a mapping (as JSON) or a TOML string.
/// Returns whether it named a `data_dir`.
fn parse_config(
    py: Python<'_>,
    config: Option<&Bound<'_, PyAny>>,
) -> PyResult<(PlatformConfig, bool)> {
    let Some(config) = config.filter(|c| !c.is_none()) else {
        return Ok((PlatformConfig::default(), false));
    };
    let bad = |reason: String| {
        crate::error::PyErrorSpec::new("ConfigError", reason, "invalid_config", 400).into_pyerr(py)
    };
    if let Ok(text) = config.cast::<PyString>() {
        let text = text.to_cow()?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let has_dir = table.contains_key("data_dir");
        let cfg = PlatformConfig::deserialize(table).map_err(|e| bad(e.to_string()))?;
        return Ok((cfg, has_dir));
    }
    if config.cast::<PyDict>().is_ok() || config.hasattr("keys")? {
        let json = py.import("json")?;
        let text: String = json.call_method1("dumps", (config,))?.extract()?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let has_dir = value.get("data_dir").is_some();
        let cfg = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        return Ok((cfg, has_dir));
    }
    Err(PyTypeError::new_err(
        "config must be a mapping or a TOML string",
    ))
}

/// Code to deploy: bytes-like as is, `str` as UTF-8 source text, a path-like
/// object read from disk.
enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

impl Source {
    /// The bytes, reading the file for a path (call with the GIL released).
    fn read(self) -> std::io::Result<Vec<u8>> {
        match self {
            Source::Bytes(b) => Ok(b),
            Source::Path(p) => std::fs::read(p),
        }
    }
}

fn source(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Source::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Source::Bytes(b.to_vec()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Source::Bytes(s.to_cow()?.as_bytes().to_vec()));
    }
    if obj.hasattr("__fspath__")? {
        return Ok(Source::Path(obj.extract()?));
    }
    if let Ok(view) = obj.call_method0("tobytes") {
        return Ok(Source::Bytes(view.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(
        "source must be bytes, str (source text) or os.PathLike (a file to read)",
    ))
}

fn content_type(kind: Option<&str>) -> PyResult<Option<&'static str>> {
    match kind {
        None => Ok(None),
        Some("wasm") => Ok(Some("application/wasm")),
        Some("js") => Ok(Some("application/javascript")),
        Some("tar") => Ok(Some("application/x-tar")),
        Some(other) => Err(PyValueError::new_err(format!(
            "kind must be None, \"wasm\", \"js\" or \"tar\", not {other:?}"
        ))),
    }
}

/// Builds the request `invoke` sends.
fn request(
    method: &str,
    path: &str,
    headers: Option<&Bound<'_, PyAny>>,
    body: &Bound<'_, PyAny>,
) -> PyResult<http::Request<Bytes>> {
    let body = if let Ok(b) = body.cast::<PyBytes>() {
        Bytes::copy_from_slice(b.as_bytes())
    } else if let Ok(s) = body.cast::<PyString>() {
        Bytes::copy_from_slice(s.to_cow()?.as_bytes())
    } else if let Ok(b) = body.cast::<PyByteArray>() {
        Bytes::from(b.to_vec())
    } else {
        return Err(PyTypeError::new_err("body must be bytes or str"));
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| PyValueError::new_err(format!("invalid method {method:?}: {e}")))?;
    let uri: http::Uri = path
        .parse()
        .map_err(|e| PyValueError::new_err(format!("invalid path {path:?}: {e}")))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(headers) = headers.filter(|h| !h.is_none()) {
        let pairs = if headers.hasattr("items")? {
            headers.call_method0("items")?
        } else {
            headers.clone()
        };
        for pair in pairs.try_iter()? {
            let (name, value): (String, String) = pair?.extract()?;
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| PyValueError::new_err(format!("invalid header name {name:?}: {e}")))?;
            let value = http::HeaderValue::from_str(&value).map_err(|e| {
                PyValueError::new_err(format!("invalid value for header {name}: {e}"))
            })?;
            builder = builder.header(name, value);
        }
    }
    builder
        .body(body)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymethods]
impl PyPlatform {
    /// Opens a platform over `data_dir` (a temporary directory, removed on
    /// close, when None) with `config` (a mapping or a TOML string of
    /// `PlatformConfig` fields; the presets when None).
    #[new]
    #[pyo3(signature = (data_dir=None, config=None))]
    fn new(
        py: Python<'_>,
        data_dir: Option<PathBuf>,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (mut cfg, has_dir) = parse_config(py, config)?;
        let temp = match (&data_dir, has_dir) {
            (Some(dir), _) => {
                cfg.data_dir = dir.clone();
                None
            }
            (None, true) => None,
            (None, false) => {
                let temp = tempfile::Builder::new().prefix("corral-").tempdir()?;
                cfg.data_dir = temp.path().to_owned();
                Some(temp)
            }
        };
        let runtime = corral::size_workers(&mut tokio::runtime::Builder::new_multi_thread())
            .thread_name("corral")
            .enable_all()
            .build()?;
        let platform = py
            .detach(|| {
                let _enter = runtime.enter();
                Platform::builder().config(cfg).build()
            })
            .map_err(|e| platform_error(py, &e))?;
        Ok(Self {
            shared: Arc::new(Shared {
                platform,
                runtime: Some(runtime),
                closed: AtomicBool::new(false),
                _temp: temp,
            }),
        })
    }

    /// Deploys (or atomically replaces) the app `name`. `source` is the code:
    /// bytes (a module, a script or a tar bundle), str (source text) or a
    /// path-like object to read. `tier` None keeps an existing app's tier or
    /// gives a new app the default tier; `kind` ("wasm", "js", "tar") skips
    /// detection. `account` deploys into an account made with
    /// `create_account` (the app runs on the account's tier; give `tier` or
    /// `account`, not both). Returns what was deployed.
    #[pyo3(signature = (name, source, tier=None, kind=None, account=None))]
    fn deploy<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        source: &Bound<'py, PyAny>,
        tier: Option<&str>,
        kind: Option<&str>,
        account: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let account = account.map(|a| tenant(py, a)).transpose()?;
        if account.is_some() && tier.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "give tier or account, not both: an app runs on its account's tier",
            ));
        }
        let code = self::source(source)?;
        let content_type = content_type(kind)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let result = py.detach(|| -> Result<_, Result<PlatformError, std::io::Error>> {
            let bytes = code.read().map_err(Err)?;
            let bundle = Bundle::detect(bytes, content_type).map_err(Ok)?;
            let rt = shared.runtime();
            match &account {
                Some(a) => rt.block_on(platform.deploy_in(&id, a, bundle)),
                None => rt.block_on(platform.deploy(&id, tier, bundle)),
            }
            .map_err(Ok)
        });
        match result {
            Ok(info) => to_py(py, &info),
            Err(Ok(e)) => Err(platform_error(py, &e)),
            Err(Err(io)) => Err(io.into()),
        }
    }

    /// Sends one request to `name` through the whole stack (metering, rate,
    /// quota, concurrency, sandbox) and returns its response. The GIL is
    /// released while the tenant runs.
    #[pyo3(signature = (name, method="GET", path="/", headers=None, body=None))]
    fn invoke(
        &self,
        py: Python<'_>,
        name: &str,
        method: &str,
        path: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyResponse> {
        let id = tenant(py, name)?;
        let empty = PyBytes::new(py, b"");
        let req = request(method, path, headers, body.unwrap_or(empty.as_any()))?;
        let platform = self.platform()?;
        let shared = &self.shared;
        py.detach(|| shared.runtime().block_on(platform.invoke(&id, req)))
            .map(PyResponse::from_http)
            .map_err(|e| platform_error(py, &e))
    }

    /// Like `invoke`, as an awaitable that never blocks the event loop: the
    /// request runs on the platform's own threads and the result is handed to
    /// the running loop. Cancelling the awaitable cancels the request.
    #[pyo3(signature = (name, method="GET", path="/", headers=None, body=None))]
    fn invoke_async<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        method: &str,
        path: &str,
        headers: Option<&Bound<'py, PyAny>>,
        body: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let id = tenant(py, name)?;
        let empty = PyBytes::new(py, b"");
        let req = request(method, path, headers, body.unwrap_or(empty.as_any()))?;
        let platform = this.platform()?.clone();
        crate::bridge::spawn(
            py,
            this.shared.runtime(),
            // Its runtime runs the request: the awaitable keeps it alive.
            slf.clone().into_any().unbind(),
            async move { platform.invoke(&id, req).await },
            |py, result| match result {
                Ok(resp) => Ok(Bound::new(py, PyResponse::from_http(resp))?
                    .into_any()
                    .unbind()),
                Err(e) => Err(platform_error(py, &e)),
            },
        )
    }

    /// Removes the app: code, static files, KV, counters. False if absent.
    fn remove(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        py.detach(|| platform.remove(&id))
            .map_err(|e| platform_error(py, &e))
    }

    /// This month's usage beside the tier's quotas.
    fn usage<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let report = py
            .detach(|| platform.usage(&id))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &report)
    }

    /// Whether the app is warm or parked, and what it is doing.
    fn status<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let status = py
            .detach(|| platform.status(&id))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &status)
    }

    /// Parks the app now (frees its memory; the next request is a cold
    /// start). True if it was warm.
    fn park(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        py.detach(|| platform.park(&id))
            .map_err(|e| platform_error(py, &e))
    }

    /// Moves the app to another tier (recompiled under its limits).
    fn set_tier<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        tier: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let info = py
            .detach(|| shared.runtime().block_on(platform.set_tier(&id, tier)))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &info)
    }

    /// Creates an account on `tier`: its apps run on that tier and share its
    /// monthly requests, storage and `max_apps`.
    fn create_account<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        tier: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let info = py
            .detach(|| {
                shared
                    .runtime()
                    .block_on(platform.create_account(&id, tier))
            })
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &info)
    }

    /// One account (tier, apps, max_apps), or None.
    fn account<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let info = py
            .detach(|| platform.account(&id))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &info)
    }

    /// Every account, by name.
    fn accounts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let platform = self.platform()?;
        let all = py
            .detach(|| platform.accounts())
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &all)
    }

    /// Moves the account and every app in it to `tier`.
    fn set_account_tier<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        tier: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let info = py
            .detach(|| {
                shared
                    .runtime()
                    .block_on(platform.set_account_tier(&id, tier))
            })
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &info)
    }

    /// Deletes an account that holds no apps (`AccountNotEmpty` otherwise).
    /// False if it did not exist.
    fn delete_account(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        py.detach(|| platform.delete_account(&id))
            .map_err(|e| platform_error(py, &e))
    }

    /// Moves the app into `account`: it takes the account's tier and counts
    /// toward its quotas and `max_apps` from now on.
    fn move_app<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        account: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let acct = tenant(py, account)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let info = py
            .detach(|| shared.runtime().block_on(platform.move_app(&id, &acct)))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &info)
    }

    /// This month's usage of all the account's apps together beside its
    /// tier's quotas (`usage["tenant"]` is the account's name).
    fn account_usage<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let report = py
            .detach(|| platform.account_usage(&id))
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &report)
    }

    /// Every deployed app.
    fn apps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let platform = self.platform()?;
        let apps = py
            .detach(|| platform.apps())
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &apps)
    }

    /// The app's recent log lines (guest stderr, `console.log`).
    fn logs(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        py.detach(|| platform.logs(&id))
            .map_err(|e| platform_error(py, &e))
    }

    /// The metrics in Prometheus text format.
    fn metrics(&self, py: Python<'_>) -> PyResult<String> {
        let platform = self.platform()?;
        Ok(py.detach(|| platform.metrics()))
    }

    /// The host as the platform sees it: the latest probe, the budget it
    /// affords, runtime slots, cache, thresholds and modes (`GET /api/host`).
    fn host<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let host = self.platform()?.host();
        to_py(py, &host)
    }

    /// Probes the host again and resizes the runtime slots and the cache to
    /// the new budget without dropping a request; returns the new `host()`.
    fn recalibrate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let platform = self.platform()?;
        let host = py
            .detach(|| platform.recalibrate())
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &host)
    }

    /// Reads every stored blob and checks its CRC32; corrupt ones are
    /// quarantined (reads of them raise `IntegrityError`) and listed.
    fn scrub<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let platform = self.platform()?;
        let summary = py
            .detach(|| platform.scrub())
            .map_err(|e| platform_error(py, &e))?;
        to_py(py, &summary)
    }

    /// An archive of the app's bundle, KV and usage, every entry CRC-checked:
    /// the same bytes as `corral-server tenant export`.
    fn export_tenant<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyBytes>> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let archive = py
            .detach(|| platform.export_tenant(&id))
            .map_err(|e| platform_error(py, &e))?;
        Ok(PyBytes::new(py, &archive))
    }

    /// Imports an archive from `export_tenant` (or `corral-server tenant
    /// export`), given as bytes or a path, as a new app and returns its
    /// name. Everything is verified, and the code compiled, before anything
    /// is written: a damaged archive, or one for an app that already exists
    /// here, raises `InvalidArchive` and imports nothing.
    ///
    /// The app lands on the default tier with fresh usage unless
    /// `keep_tier` (the archive's tier, which must be one of this platform's,
    /// else `UnknownTier`) or `keep_usage` (the archive's usage months) say
    /// otherwise.
    #[pyo3(signature = (archive, keep_tier = false, keep_usage = false))]
    fn import_tenant(
        &self,
        py: Python<'_>,
        archive: &Bound<'_, PyAny>,
        keep_tier: bool,
        keep_usage: bool,
    ) -> PyResult<String> {
        if archive.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "archive must be bytes or os.PathLike (a file to read), not str",
            ));
        }
        let archive = self::source(archive)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        let options = ImportOptions::new()
            .keep_tier(keep_tier)
            .keep_usage(keep_usage);
        let result = py.detach(|| -> Result<_, Result<PlatformError, std::io::Error>> {
            let bytes = archive.read().map_err(Err)?;
            shared
                .runtime()
                .block_on(platform.import_tenant(bytes, options))
                .map_err(Ok)
        });
        match result {
            Ok(id) => Ok(id.as_str().to_owned()),
            Err(Ok(e)) => Err(platform_error(py, &e)),
            Err(Err(io)) => Err(io.into()),
        }
    }

    /// The configured tiers by name, as their settings.
    #[getter]
    fn tiers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tiers = self.platform()?.tiers();
        to_py(py, &tiers)
    }

    /// Maintenance mode: while True, tenant requests are refused with
    /// `corral.Maintenance`.
    #[getter]
    fn get_maintenance(&self) -> PyResult<bool> {
        Ok(self.platform()?.maintenance())
    }

    #[setter]
    fn set_maintenance(&self, on: bool) -> PyResult<()> {
        self.platform()?.set_maintenance(on);
        Ok(())
    }

    /// The data directory in use.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.shared.platform.config().data_dir.clone()
    }

    /// Flushes usage and stops the background tasks. Idempotent; afterwards
    /// every method raises RuntimeError.
    fn close(&self, py: Python<'_>) {
        let shared = &self.shared;
        py.detach(|| shared.shutdown());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    /// Bench hook: runs `n` GET / requests to `name` from Rust (one
    /// `block_on` per request, as `invoke` does, minus the Python side) and
    /// returns the seconds they took. Lets `bench/bench_invoke.py` compare
    /// the Python overhead in the same process and build.
    fn _invoke_loop_rust(&self, py: Python<'_>, name: &str, n: u32) -> PyResult<f64> {
        let id = tenant(py, name)?;
        let platform = self.platform()?;
        let shared = &self.shared;
        py.detach(|| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                let req = http::Request::builder()
                    .uri("/")
                    .body(Bytes::new())
                    .map_err(|e| PlatformError::Internal(e.to_string()))?;
                shared.runtime().block_on(platform.invoke(&id, req))?;
            }
            Ok(start.elapsed().as_secs_f64())
        })
        .map_err(|e: PlatformError| platform_error(py, &e))
    }

    fn __repr__(&self) -> String {
        format!(
            "Platform(data_dir={:?})",
            self.shared.platform.config().data_dir
        )
    }
}
