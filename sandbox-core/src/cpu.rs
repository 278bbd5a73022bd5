//! CPU time of invocations: the one measure of work both engines report
//! alike (fuel is WebAssembly instructions for one and JavaScript interrupt
//! ticks for the other), read from the thread's own CPU clock around each
//! stretch of guest work.
//!
//! The kernel's thread CPU clock has no vDSO path: each read is a system
//! call, and under load two of them a request cost the warm path about a
//! tenth of its throughput. Where the thread's restartable-sequences area
//! can tell whether the thread has been switched out since the last read
//! (Linux with glibc's rseq registration, x86-64; checked once per process),
//! [`thread_now_ns`] reads the kernel clock only after a switch and otherwise
//! adds the raw monotonic clock's elapsed time (vDSO, no system call) to
//! that read: a thread that was never switched out was on its CPU the whole
//! time. The two differ only by interrupt and hypervisor time inside a
//! stretch without a switch, and every read after a switch returns to the
//! kernel's figure, so sums over many requests agree: 0.1% apart in
//! `agrees_with_the_kernel_clock_under_contention`, where the thread is
//! preempted and sleeps inside the stretches it times.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The CPU time the calling thread has used so far, in nanoseconds (never
/// less than the last value it returned on this thread).
pub(crate) fn thread_now_ns() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    if let Some(ns) = switches::now_ns() {
        return ns;
    }
    kernel_thread_clock_ns()
}

/// The kernel's CPU clock of the calling thread (a system call).
fn kernel_thread_clock_ns() -> u64 {
    timespec_ns(rustix::time::clock_gettime(
        rustix::time::ClockId::ThreadCPUTime,
    ))
}

fn timespec_ns(t: rustix::time::Timespec) -> u64 {
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// Whether the thread was switched out, from glibc's rseq area.
///
/// `rseq_cs` in that area points at the thread's current critical-section
/// descriptor. The kernel sets it to NULL "when it detects that it is
/// preempting or delivering a signal outside of the range targeted by the
/// rseq_cs" (`include/uapi/linux/rseq.h`). So a descriptor whose range is
/// empty, stored there, stays until the thread is next switched out or
/// signalled, and is then cleared: a flag the kernel lowers for free.
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
#[allow(unsafe_code)] // reads glibc's per-thread rseq area by its documented ABI
mod switches {
    use std::cell::Cell;
    use std::ptr::{read_volatile, write_volatile};
    use std::sync::OnceLock;
    use std::sync::atomic::{Ordering::SeqCst, compiler_fence};

    /// glibc's `RSEQ_SIG` on x86: the kernel checks that the four bytes
    /// before a descriptor's abort address hold the signature the thread
    /// registered with, and kills the thread if they do not.
    const RSEQ_SIG: u32 = 0x5305_3053;
    /// Offset of `rseq_cs` in `struct rseq` (after `cpu_id_start`, `cpu_id`).
    const RSEQ_CS: usize = 8;
    /// Offset of `cpu_id`: negative while the thread has no registration.
    const CPU_ID: usize = 4;

    /// `struct rseq_cs` (uapi), 32-byte aligned as the kernel requires.
    #[repr(C, align(32))]
    struct Descriptor {
        version: u32,
        flags: u32,
        start_ip: u64,
        post_commit_offset: u64,
        abort_ip: u64,
    }

    /// The signature, then the (never jumped to) abort address.
    static SIGNATURE: [u32; 2] = [RSEQ_SIG, 0];

    /// An empty critical section: no instruction is ever inside it, so the
    /// kernel never aborts to it, only clears the pointer to it. The kernel
    /// reads it first, so it must stay mapped: true of a program, and of an
    /// extension module, which CPython never unloads.
    static DESCRIPTOR: OnceLock<Descriptor> = OnceLock::new();

    /// `Some(offset of the rseq area from the thread pointer)` when this
    /// process can use it: glibc registered rseq and the kernel clears the
    /// pointer on a switch (tested once, below).
    static USABLE: OnceLock<Option<isize>> = OnceLock::new();

    #[derive(Clone, Copy)]
    struct Anchor {
        /// This thread's rseq area; 0 before the first read, 1 if unusable.
        area: usize,
        /// The kernel clock at the last system-call read, and the raw
        /// monotonic clock just before it.
        cpu: u64,
        wall: u64,
        /// The last value returned, so that the clock never runs backwards.
        last: u64,
    }

    thread_local! {
        static ANCHOR: Cell<Anchor> = const {
            Cell::new(Anchor { area: 0, cpu: 0, wall: 0, last: 0 })
        };
    }

    fn descriptor() -> u64 {
        let d = DESCRIPTOR.get_or_init(|| {
            let abort_ip = std::ptr::addr_of!(SIGNATURE[1]) as u64;
            Descriptor {
                version: 0,
                flags: 0,
                start_ip: abort_ip,
                post_commit_offset: 0,
                abort_ip,
            }
        });
        std::ptr::from_ref(d) as u64
    }

    fn thread_pointer() -> usize {
        let tp: usize;
        // SAFETY: on x86-64 glibc keeps the thread control block's own
        // address at %fs:0; the read has no side effects.
        unsafe {
            std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
                options(nostack, readonly, preserves_flags));
        }
        tp
    }

    /// This thread's registered rseq area, if it has one.
    fn area(offset: isize) -> Option<usize> {
        let area = thread_pointer().wrapping_add_signed(offset);
        // SAFETY: glibc's `__rseq_offset` places a `struct rseq` (at least
        // 20 bytes, checked in `usable`) at this offset from every thread's
        // thread pointer.
        let cpu_id = unsafe { read_volatile((area + CPU_ID) as *const i32) };
        (cpu_id >= 0).then_some(area)
    }

    fn arm(area: usize) {
        // SAFETY: the area is this thread's registered rseq area, and the
        // descriptor is a valid, static `struct rseq_cs`.
        unsafe { write_volatile((area + RSEQ_CS) as *mut u64, descriptor()) }
        compiler_fence(SeqCst);
    }

    /// Whether the flag is still up (and the thread still registered: a
    /// thread whose registration went would never see it lowered).
    fn armed(area: usize) -> bool {
        compiler_fence(SeqCst);
        // SAFETY: as in `arm`; the kernel writes these fields only between
        // this thread's instructions (on its way back to user space).
        unsafe {
            read_volatile((area + RSEQ_CS) as *const u64) == descriptor()
                && read_volatile((area + CPU_ID) as *const i32) >= 0
        }
    }

    fn monotonic_ns() -> u64 {
        super::timespec_ns(rustix::time::clock_gettime(
            rustix::time::ClockId::MonotonicRaw,
        ))
    }

    /// Finds glibc's rseq area and checks, on the calling thread, that a
    /// switch clears the flag: a sleep switches the thread out.
    fn usable() -> Option<isize> {
        // SAFETY: dlsym with a NUL-terminated name; the symbols, when glibc
        // (2.35 or later) exports them, are an `isize` and a `u32`.
        let (offset, size) = unsafe {
            let offset = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
            let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
            if offset.is_null() || size.is_null() {
                return None;
            }
            (*(offset as *const isize), *(size as *const u32))
        };
        if size < 20 {
            return None;
        }
        let area = area(offset)?;
        arm(area);
        std::thread::sleep(std::time::Duration::from_micros(1));
        let cleared = !armed(area);
        cleared.then_some(offset)
    }

    /// The thread's CPU time in nanoseconds, or `None` where rseq cannot
    /// tell switches (the caller then reads the kernel clock).
    pub(super) fn now_ns() -> Option<u64> {
        let offset = (*USABLE.get_or_init(usable))?;
        ANCHOR.with(|cell| {
            let mut a = cell.get();
            if a.area == 0 {
                a.area = area(offset).unwrap_or(1);
            }
            if a.area == 1 {
                cell.set(a);
                return None;
            }
            let wall = monotonic_ns();
            let ns = if a.wall != 0 && armed(a.area) {
                // Not switched out since the anchor (nor before `wall`):
                // on the CPU all along.
                a.cpu.saturating_add(wall.saturating_sub(a.wall))
            } else {
                // Arm first: a switch from here on clears it, and the next
                // read takes the kernel clock again.
                arm(a.area);
                a.wall = monotonic_ns();
                a.cpu = super::kernel_thread_clock_ns();
                a.cpu
            };
            a.last = a.last.max(ns);
            cell.set(a);
            Some(a.last)
        })
    }

    /// Whether this process reads through rseq (for tests).
    #[cfg(test)]
    pub(super) fn in_use() -> bool {
        USABLE.get_or_init(usable).is_some()
    }
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
        let start = thread_now_ns();
        let out = f();
        self.0
            .fetch_add(thread_now_ns().saturating_sub(start), Relaxed);
        out
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

    /// The meter against the kernel's clock over the same stretches, with
    /// more spinning threads than cores (so the measuring thread is
    /// preempted mid-stretch) and a sleep inside every tenth stretch: time
    /// the thread spends off its CPU is billed by neither.
    #[test]
    fn agrees_with_the_kernel_clock_under_contention() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;

        #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
        assert!(
            switches::in_use(),
            "rseq cannot tell switches here: every read is a system call"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners: Vec<_> = (0..=cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let (mut meter, mut kernel) = (0u64, 0u64);
        let started = std::time::Instant::now();
        for i in 0..2_000u32 {
            let (m0, k0) = (thread_now_ns(), kernel_thread_clock_ns());
            let mut x = 0u64;
            for k in 0..20_000u64 {
                x = std::hint::black_box(x.wrapping_add(k));
            }
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let (m1, k1) = (thread_now_ns(), kernel_thread_clock_ns());
            assert!(m1 >= m0, "the meter ran backwards");
            meter += m1 - m0;
            kernel += k1 - k0;
        }
        let wall = started.elapsed();
        stop.store(true, Relaxed);
        spinners.into_iter().for_each(|t| t.join().unwrap());
        let (meter, kernel) = (Duration::from_nanos(meter), Duration::from_nanos(kernel));
        // `--nocapture` shows the figures (BENCHMARKS.md cites them).
        eprintln!("meter {meter:?}, kernel clock {kernel:?}, wall {wall:?}");
        // The thread was off its CPU for much of the run: sleeping, and
        // preempted by the spinners.
        assert!(
            wall > kernel * 5 / 4,
            "no contention: {wall:?} wall, {kernel:?} CPU"
        );
        let slack = kernel / 30 + Duration::from_millis(2);
        assert!(
            meter <= kernel + slack && meter + slack >= kernel,
            "meter {meter:?}, kernel clock {kernel:?}, wall {wall:?}"
        );
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
