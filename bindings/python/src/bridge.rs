//! Tokio → asyncio: run a future on the platform's runtime and resolve an
//! `asyncio.Future` on the caller's event loop with its result, so the loop
//! never blocks. Cancelling the asyncio future aborts the tokio task.

use std::future::Future;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

/// Spawns `fut` on `runtime` and returns an `asyncio.Future` of the running
/// loop that `convert` resolves (with the GIL held) once `fut` is done.
/// `owner` (the object owning `runtime`) is kept alive until the future is
/// done, and released on the loop's thread.
pub(crate) fn spawn<'py, T, F, C>(
    py: Python<'py>,
    runtime: &tokio::runtime::Runtime,
    owner: Py<PyAny>,
    fut: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;

    let task = runtime.spawn(fut);
    let abort = task.abort_handle();
    let (loop_ref, fut_ref) = (event_loop.clone().unbind(), py_future.clone().unbind());
    runtime.spawn(async move {
        let joined = task.await;
        Python::attach(|py| {
            let outcome = match joined {
                Ok(value) => convert(py, value),
                Err(e) if e.is_cancelled() => return,
                Err(e) => Err(PyRuntimeError::new_err(format!("corral task failed: {e}"))),
            };
            let (ok, value) = match outcome {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            let resolve = match PyCFunction::new_closure(
                py,
                None,
                None,
                move |args, _kwargs| -> PyResult<()> {
                    let py = args.py();
                    let fut = fut_ref.bind(py);
                    if fut.call_method0("done")?.is_truthy()? {
                        return Ok(()); // cancelled meanwhile
                    }
                    if ok {
                        fut.call_method1("set_result", (&value,))?;
                    } else {
                        fut.call_method1("set_exception", (&value,))?;
                    }
                    Ok(())
                },
            ) {
                Ok(f) => f,
                Err(e) => return e.write_unraisable(py, None),
            };
            // Fails only when the loop is closed: nobody is waiting any more.
            let _ = loop_ref
                .bind(py)
                .call_method1("call_soon_threadsafe", (resolve,));
        });
    });

    let on_done = PyCFunction::new_closure(py, None, None, move |args, _kwargs| -> PyResult<()> {
        let _owner = &owner;
        let fut = args.get_item(0)?;
        if fut.call_method0("cancelled")?.is_truthy()? {
            abort.abort();
        }
        Ok(())
    })?;
    py_future.call_method1("add_done_callback", (on_done,))?;
    Ok(py_future)
}
