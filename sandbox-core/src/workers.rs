//! How many tokio worker threads a host runtime serving Corral should run.

/// The worker threads for the multi-threaded tokio runtime that serves
/// Corral's tenants: one per core the process may use, plus one.
///
/// Why one more than cores: a JavaScript request starts on the async worker
/// that received it and stays there while it is short (`js::inline`), but at
/// most `workers − 1` requests run inline at once, so that one worker is
/// never inside tenant code and always polls I/O. With one worker per core
/// that reserve costs a whole core of inline capacity: on two cores, every
/// JS request that arrives while another runs inline hops to a blocking
/// thread and back (two thread switches, more than a hello's JavaScript
/// costs). One extra worker lets every core run a request inline and still
/// keeps a worker out of tenant code; when there is no JS work it is one
/// more parked thread. BENCHMARKS.md ("Stop 32: one worker more than
/// cores") has the figures.
///
/// Hosts apply it with [`size_workers`], which leaves tokio's own
/// `TOKIO_WORKER_THREADS` in charge when an operator sets it.
///
/// ```
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert_eq!(corral::worker_threads(), cores + 1);
/// ```
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 1
}

/// Gives `builder` [`worker_threads`] workers, unless `TOKIO_WORKER_THREADS`
/// is set: then tokio reads it as usual (and refuses a value that is not a
/// positive number when the runtime is built).
///
/// ```
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// let runtime = corral::size_workers(&mut builder).enable_all().build().unwrap();
/// if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
///     assert_eq!(runtime.metrics().num_workers(), corral::worker_threads());
/// }
/// ```
pub fn size_workers(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(worker_threads());
    }
    builder
}
