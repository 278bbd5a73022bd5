//! `corral.Response`: a finished invocation's response and figures.

use std::collections::BTreeMap;

use bytes::Bytes;
use corral::InvocationStats;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The response of one invocation, with what it used.
#[pyclass(name = "Response", module = "corral", frozen)]
#[derive(Debug)]
pub struct PyResponse {
    /// HTTP status code.
    #[pyo3(get)]
    status: u16,
    headers: BTreeMap<String, String>,
    body: Bytes,
    /// Fuel consumed by the invocation.
    #[pyo3(get)]
    fuel_used: u64,
    /// Wall time of the invocation in milliseconds (excluding a cold start).
    #[pyo3(get)]
    wall_ms: f64,
    /// CPU time of the invocation in milliseconds (both engines' common
    /// measure of work, where fuel is each engine's own unit).
    #[pyo3(get)]
    cpu_ms: f64,
    /// Highest memory the instance held, in bytes.
    #[pyo3(get)]
    memory_peak: u64,
    /// Whether the tenant had to be woken from parked for this request.
    #[pyo3(get)]
    cold_start: bool,
}

impl PyResponse {
    /// Converts a core response; its stats come from the response extensions.
    pub(crate) fn from_http(response: http::Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        let stats = parts
            .extensions
            .get::<InvocationStats>()
            .copied()
            .unwrap_or_default();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        Self {
            status: parts.status.as_u16(),
            headers,
            body,
            fuel_used: stats.fuel_consumed,
            wall_ms: stats.wall_time.as_secs_f64() * 1000.0,
            cpu_ms: stats.cpu_time.as_secs_f64() * 1000.0,
            memory_peak: stats.peak_memory,
            cold_start: stats.cold_start,
        }
    }
}

#[pymethods]
impl PyResponse {
    /// Response headers, lowercase names; repeated headers joined with ", ".
    #[getter]
    fn headers(&self) -> BTreeMap<String, String> {
        self.headers.clone()
    }

    /// The response body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    /// The body decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn __repr__(&self) -> String {
        format!(
            "Response(status={}, body=<{} bytes>, fuel_used={}, wall_ms={:.3}, memory_peak={})",
            self.status,
            self.body.len(),
            self.fuel_used,
            self.wall_ms,
            self.memory_peak
        )
    }
}
