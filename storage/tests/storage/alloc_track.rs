//! A global allocator that records, per thread and only while enabled, the
//! largest single allocation and the peak of live bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Tracking;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            LIVE.with(|live| {
                let v = live.get() + size as i64;
                live.set(v);
                PEAK.with(|p| p.set(p.get().max(v)));
            });
        }
    });
}

fn note_dealloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.with(|live| live.set(live.get() - size as i64));
        }
    });
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping touches
// only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_dealloc(layout.size());
        note_alloc(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// What one tracked section allocated on this thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peak {
    pub(crate) largest_alloc: usize,
    pub(crate) peak_live: i64,
}

/// Runs `f` with tracking on for this thread.
pub(crate) fn track<T>(f: impl FnOnce() -> T) -> (T, Peak) {
    LIVE.with(|c| c.set(0));
    PEAK.with(|c| c.set(0));
    LARGEST.with(|c| c.set(0));
    ON.with(|c| c.set(true));
    let out = f();
    ON.with(|c| c.set(false));
    let peak = Peak {
        largest_alloc: LARGEST.with(|c| c.get()),
        peak_live: PEAK.with(|c| c.get()),
    };
    (out, peak)
}
