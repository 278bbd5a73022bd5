//! The fuel and wall-clock budget of every entry into a tenant's runtime,
//! enforced from QuickJS's interrupt handler.
//!
//! The host arms the budget around each call into QuickJS that can run
//! guest-reachable code (a request, a stream step, the prelude's helpers, the
//! job queue) and closes it afterwards. A closed budget is spent, not lifted:
//! guest code that somehow ran outside an entry would be stopped at its first
//! interrupt tick instead of running unbounded.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::SandboxError;
use crate::cpu::thread_now_ns;

/// How many interpreter poll points (function calls and backward jumps)
/// QuickJS runs between two calls of the interrupt handler. One unit of
/// JavaScript fuel is one such call, an *interrupt tick*: `fuel_per_request`
/// of 1,000 lets a request run roughly 10 million calls or loop iterations.
pub const POLLS_PER_TICK: u64 = 10_000;

const NONE: u8 = 0;
const FUEL: u8 = 1;
const DEADLINE: u8 = 2;

/// Shared between a tenant's runtime (through the interrupt handler) and the
/// thread driving a request. Starts closed.
#[derive(Debug)]
pub(crate) struct Budget {
    base: Instant,
    ticks: AtomicU64,
    fuel_limit: AtomicU64,
    /// Nanoseconds after `base`; 0 when closed.
    deadline_ns: AtomicU64,
    wall: AtomicU64,
    tripped: AtomicU8,
    /// Nanoseconds after `base` when an entry running on an async worker
    /// must move to a blocking thread ([`super::inline`]); 0 when it is not
    /// on a worker.
    inline_until_ns: AtomicU64,
    /// The entry's CPU time so far on threads it has left, and the thread
    /// CPU clock where it started on its current thread (nanoseconds).
    cpu_carried_ns: AtomicU64,
    cpu_start_ns: AtomicU64,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            ticks: AtomicU64::new(0),
            fuel_limit: AtomicU64::new(0),
            deadline_ns: AtomicU64::new(0),
            wall: AtomicU64::new(0),
            tripped: AtomicU8::new(NONE),
            inline_until_ns: AtomicU64::new(0),
            cpu_carried_ns: AtomicU64::new(0),
            cpu_start_ns: AtomicU64::new(0),
        }
    }

    /// Starts a budget of `fuel` ticks and `wall` of wall-clock time.
    pub(crate) fn arm(&self, fuel: u64, wall: Duration) {
        let now = self.base.elapsed().as_nanos() as u64;
        let wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        self.ticks.store(0, Relaxed);
        self.tripped.store(NONE, Relaxed);
        self.fuel_limit.store(fuel, Relaxed);
        self.wall.store(wall_ns, Relaxed);
        self.deadline_ns.store(now.saturating_add(wall_ns), Relaxed);
    }

    /// Closes the budget after an entry: from now on any guest code trips it
    /// at its first tick, until the next [`Budget::arm`].
    pub(crate) fn close(&self) {
        self.fuel_limit.store(0, Relaxed);
        self.deadline_ns.store(0, Relaxed);
        self.inline_until_ns.store(0, Relaxed);
    }

    /// The entry about to run is on an async worker: at its first tick
    /// after `bound` from now, it moves to a blocking thread. Cleared by
    /// [`Budget::close`].
    pub(crate) fn set_inline(&self, bound: Duration) {
        let now = self.base.elapsed().as_nanos() as u64;
        let bound = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        self.inline_until_ns
            .store(now.saturating_add(bound).max(1), Relaxed);
    }

    /// Moves the running entry off its async worker now, if it is on one
    /// (before the host blocks, on storage for one); a no-op otherwise.
    pub(crate) fn leave_worker(&self) {
        if self.inline_until_ns.swap(0, Relaxed) == 0 {
            return;
        }
        let before = thread_now_ns();
        if super::inline::hop(true) {
            // The thread CPU clock is per thread: carry what the entry used
            // on the worker, and start again on the thread it is on now.
            let start = self.cpu_start_ns.load(Relaxed);
            self.cpu_carried_ns
                .fetch_add(before.saturating_sub(start), Relaxed);
            self.cpu_start_ns.store(thread_now_ns(), Relaxed);
        }
    }

    /// Starts timing an entry's CPU time (on whatever threads it runs).
    pub(crate) fn start_cpu(&self) {
        self.cpu_carried_ns.store(0, Relaxed);
        self.cpu_start_ns.store(thread_now_ns(), Relaxed);
    }

    /// CPU time used since [`Budget::start_cpu`].
    pub(crate) fn cpu_used(&self) -> Duration {
        let here = thread_now_ns().saturating_sub(self.cpu_start_ns.load(Relaxed));
        Duration::from_nanos(self.cpu_carried_ns.load(Relaxed).saturating_add(here))
    }

    /// Called by QuickJS every [`POLLS_PER_TICK`] poll points; `true` stops the guest.
    pub(crate) fn tick(&self) -> bool {
        if self.tripped.load(Relaxed) != NONE {
            return true;
        }
        let ticks = self.ticks.fetch_add(1, Relaxed) + 1;
        if ticks > self.fuel_limit.load(Relaxed) {
            self.tripped.store(FUEL, Relaxed);
            return true;
        }
        let now = self.base.elapsed().as_nanos() as u64;
        if now >= self.deadline_ns.load(Relaxed) {
            self.tripped.store(DEADLINE, Relaxed);
            return true;
        }
        let inline_until = self.inline_until_ns.load(Relaxed);
        if inline_until != 0 && now >= inline_until {
            self.leave_worker();
        }
        false
    }

    /// Ticks used since [`Budget::arm`].
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Relaxed)
    }

    /// Time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        let now = self.base.elapsed().as_nanos() as u64;
        Duration::from_nanos(self.deadline_ns.load(Relaxed).saturating_sub(now))
    }

    /// Marks the deadline as hit (when the host, not the guest, ran out of time).
    pub(crate) fn trip_deadline(&self) {
        self.tripped.store(DEADLINE, Relaxed);
    }

    /// The error for a tripped budget, if it tripped.
    pub(crate) fn error(&self) -> Option<SandboxError> {
        match self.tripped.load(Relaxed) {
            FUEL => Some(SandboxError::FuelExhausted {
                limit: self.fuel_limit.load(Relaxed),
                consumed: self.ticks(),
            }),
            DEADLINE => Some(SandboxError::Deadline {
                limit: Duration::from_nanos(self.wall.load(Relaxed)),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_budget_stops_guest_code_at_once() {
        let b = Budget::new();
        assert!(b.tick(), "a new budget is closed");
        b.arm(10, Duration::from_secs(60));
        assert!(!b.tick());
        b.close();
        assert!(b.tick(), "code that runs after the entry is stopped");
        assert!(b.error().is_some());
    }

    #[test]
    fn fuel_trips_after_the_limit() {
        let b = Budget::new();
        b.arm(3, Duration::from_secs(60));
        assert!(!b.tick());
        assert!(!b.tick());
        assert!(!b.tick());
        assert!(b.tick());
        assert!(matches!(
            b.error(),
            Some(SandboxError::FuelExhausted {
                limit: 3,
                consumed: 4
            })
        ));
        b.arm(3, Duration::from_secs(60));
        assert!(b.error().is_none());
        assert_eq!(b.ticks(), 0);
    }

    #[test]
    fn deadline_trips() {
        let b = Budget::new();
        b.arm(u64::MAX, Duration::ZERO);
        assert!(b.tick());
        assert!(matches!(
            b.error(),
            Some(SandboxError::Deadline { limit }) if limit == Duration::ZERO
        ));
        b.close();
        b.arm(u64::MAX, Duration::from_secs(60));
        assert!(!b.tick());
        assert!(b.remaining() > Duration::from_secs(59));
    }
}
