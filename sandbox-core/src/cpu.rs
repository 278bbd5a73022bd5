//! CPU time of invocations: the one measure of work both engines report
//! alike (fuel is WebAssembly instructions for one and JavaScript interrupt
//! ticks for the other), read from the thread's own CPU clock around each
//! stretch of guest work.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The CPU time the calling thread has used so far.
pub(crate) fn thread_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// CPU time summed over the stretches of work timed into it (from any
/// thread: an async run moves between a runtime's workers).
#[derive(Debug, Default)]
pub(crate) struct CpuTime(AtomicU64);

impl CpuTime {
    /// The time summed so far.
    pub(crate) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Relaxed))
    }

    /// Adds the CPU time `f` takes on this thread.
    pub(crate) fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = thread_now();
        let out = f();
        self.add(thread_now().saturating_sub(start));
        out
    }

    fn add(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, Relaxed);
    }

    /// Runs `fut`, adding the CPU time of each of its polls (whatever
    /// thread runs it) and nothing for the time it waits.
    pub(crate) async fn time_async<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| self.time(|| fut.as_mut().poll(cx))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_work_and_not_waiting() {
        let cpu = CpuTime::default();
        let spun = cpu.time(|| {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(20) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x
        });
        assert!(spun > 0);
        let busy = cpu.get();
        // A busy loop of 20 ms of wall time: on a loaded machine the thread
        // may get less of the CPU, never more.
        assert!(
            busy > Duration::ZERO && busy <= Duration::from_millis(40),
            "{busy:?}"
        );
        cpu.time(|| std::thread::sleep(Duration::from_millis(50)));
        let slept = cpu.get() - busy;
        assert!(slept < Duration::from_millis(10), "sleeping cost {slept:?}");
    }

    #[tokio::test]
    async fn an_async_run_is_timed_per_poll() {
        let cpu = CpuTime::default();
        let out = cpu
            .time_async(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                7
            })
            .await;
        assert_eq!(out, 7);
        assert!(cpu.get() < Duration::from_millis(10), "{:?}", cpu.get());
    }
}
