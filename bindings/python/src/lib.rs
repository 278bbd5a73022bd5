//! The native half of the `corral` Python package (`corral._corral`).
//!
//! Thin wrappers only: every method converts its arguments, calls the `corral`
//! crate with the GIL released, and converts the result back. Failures become
//! the exception classes of `corral._errors` (one per error kind).
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod bridge;
mod convert;
mod error;
mod platform;
mod response;

use pyo3::prelude::*;

pub use platform::PyPlatform;
pub use response::PyResponse;

/// The `corral._corral` extension module.
#[pymodule]
fn _corral(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyPlatform>()?;
    m.add_class::<PyResponse>()?;
    m.add_function(wrap_pyfunction!(error::error_table, m)?)?;
    Ok(())
}
