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
/// `TOKIO_WORKER_THREADS`, set to a positive number, wins, as it does for
/// tokio's own default.
///
/// ```
/// let workers = corral::worker_threads();
/// assert!(workers >= 2);
/// let runtime = tokio::runtime::Builder::new_multi_thread()
///     .worker_threads(workers)
///     .enable_all()
///     .build()
///     .unwrap();
/// assert_eq!(runtime.metrics().num_workers(), workers);
/// ```
pub fn worker_threads() -> usize {
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_more_than_the_cores() {
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().unwrap().get();
            assert_eq!(super::worker_threads(), cores + 1);
        }
    }
}
