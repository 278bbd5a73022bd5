//! Short JavaScript requests run on the async worker that received them.
//!
//! A request handed to a blocking thread pays two thread switches (there and
//! back), which cost a warm hello more than its JavaScript does. So a request
//! for a tenant whose runtime is idle and warm starts right on the tokio
//! worker, on a fiber (a stack of its own). If it is still running
//! [`INLINE_BOUND`] later (checked at QuickJS's interrupt ticks), or before
//! the host blocks on the tenant's KV store, the fiber suspends and the rest
//! of the request runs on a blocking thread, from where it stopped: nothing
//! runs twice, and the worker goes back to other tenants' I/O.
//!
//! What bounds the cost to others:
//! - at most `workers - 1` requests run inline at once in the process, so at
//!   least one worker is never inside tenant code, even when a built-in that
//!   does not tick (a large `sort`, say) keeps one past the bound (hosts run
//!   one worker more than cores, [`crate::worker_threads`], so that reserve
//!   is a thread and not a core);
//! - only a multi-threaded tokio runtime runs anything inline;
//! - a tenant whose request had to move runs its next [`SKIP_AFTER_MOVE`]
//!   requests on blocking threads directly.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime_internal_fiber::{Fiber, FiberStack, Suspend};

use crate::SandboxError;

/// How long a request may run on an async worker before it moves.
pub(crate) const INLINE_BOUND: Duration = Duration::from_millis(1);

/// Requests of a tenant that run on blocking threads directly after one of
/// its requests had to move.
pub(crate) const SKIP_AFTER_MOVE: u32 = 64;

/// A fiber's stack: as large as a tokio blocking thread's, which the
/// QuickJS stack limit ([`super::MAX_JS_STACK_BYTES`]) is sized against.
const STACK_BYTES: usize = 2 << 20;

/// Fiber stacks each worker keeps for its next requests.
const STACKS_KEPT: usize = 2;

/// Requests running inline now, process-wide.
static INLINE: AtomicUsize = AtomicUsize::new(0);

type Sus<T> = Suspend<(), (), T>;

thread_local! {
    /// The suspension point of the fiber running on this thread, type-erased
    /// (`*mut Sus<T>`); null when none or once it has moved.
    static SUSPEND: Cell<*mut ()> = const { Cell::new(ptr::null_mut()) };
    /// Stacks of finished fibers, for the next ones on this thread.
    static STACKS: RefCell<Vec<FiberStack>> = const { RefCell::new(Vec::new()) };
    /// Whether the last `hop` on this thread was for the request's own
    /// slowness (its time ran out, or it blocks on KV): read by `start`
    /// when the fiber it resumed comes back suspended.
    static SLOW: Cell<bool> = const { Cell::new(false) };
    /// How `hop` suspends the current fiber (monomorphic per `T`).
    static HOP: Cell<Option<unsafe fn(*mut ())>> = const { Cell::new(None) };
}

/// The right to run one request inline; given back on drop.
pub(crate) struct Token(());

#[cfg(test)]
impl Token {
    fn for_test() -> Self {
        INLINE.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        INLINE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why [`token`] gave none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoToken {
    /// Not on a multi-threaded tokio runtime with two workers or more.
    NotHere,
    /// Its workers minus one requests run inline now.
    Busy,
}

/// A token if this thread runs a multi-threaded tokio runtime's tasks and
/// fewer than its workers minus one requests run inline now.
pub(crate) fn token() -> Result<Token, NoToken> {
    if !cfg!(target_os = "linux") {
        return Err(NoToken::NotHere);
    }
    let handle = tokio::runtime::Handle::try_current().map_err(|_| NoToken::NotHere)?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(NoToken::NotHere);
    }
    let most = handle.metrics().num_workers().saturating_sub(1);
    if most == 0 {
        return Err(NoToken::NotHere);
    }
    INLINE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < most).then_some(n + 1)
        })
        .map(|_| Token(()))
        .map_err(|_| NoToken::Busy)
}

/// How an inline start ended.
pub(crate) enum Started<T: 'static> {
    /// It ran to the end on the worker.
    Done(T),
    /// It moved: [`Moving::finish`] it on a blocking thread.
    Moved(Moving<T>),
}

/// A request suspended on its way off a worker, to finish elsewhere.
pub(crate) struct Moving<T: 'static> {
    fiber: Option<Fiber<'static, (), (), T>>,
    /// It moved for its own slowness ([`hop`]'s `slow`), not for host work.
    pub(crate) slow: bool,
}

// SAFETY: what the fiber owns is `Send` (`start` requires it of `f`). Its
// stack, at the one place it suspends (`hop`, from the QuickJS interrupt
// handler or a host function), holds our frames, QuickJS's (no thread-local
// state: everything hangs off its runtime) and rquickjs's `Context::with`,
// which holds the runtime's `std::sync::Mutex`. On Linux (the only target
// `token` allows) that mutex is a futex word with no owner thread, so it may
// be released from the thread the request finishes on. Thread-locals are
// read again after `hop` returns, never held across it.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for Moving<T> {}

impl<T> Moving<T> {
    /// Runs the rest of the request on this thread.
    pub(crate) fn finish(mut self) -> Result<T, SandboxError> {
        let fiber = self.fiber.take().expect("finished once");
        run_to_end(&fiber)
    }
}

impl<T> Drop for Moving<T> {
    fn drop(&mut self) {
        // Never leave it half run: it holds the tenant's runtime.
        if let Some(fiber) = self.fiber.take() {
            let _ = run_to_end(&fiber);
        }
    }
}

fn run_to_end<T>(fiber: &Fiber<'static, (), (), T>) -> Result<T, SandboxError> {
    loop {
        match catch_unwind(AssertUnwindSafe(|| fiber.resume(()))) {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(())) => {}
            Err(_) => return Err(panicked()),
        }
    }
}

fn panicked() -> SandboxError {
    SandboxError::Internal {
        message: "the JavaScript request panicked".into(),
        source: None,
    }
}

/// Suspends `T`'s fiber at `p` (a `*mut Sus<T>`).
#[allow(unsafe_code)]
unsafe fn suspend_at<T>(p: *mut ()) {
    // SAFETY: `p` was set by the fiber running on this thread, from the
    // `&mut Suspend` its body holds for as long as it runs; `hop` is only
    // reached from inside that body.
    unsafe { (*p.cast::<Sus<T>>()).suspend(()) }
}

/// Moves the fiber running on this thread, if any, off it: suspends it, to
/// be resumed on a blocking thread. `true` if it moved (and now runs
/// there). `slow`: the request itself is slow (its time ran out, or it
/// blocks on KV), not about to do a long piece of host work.
pub(crate) fn hop(slow: bool) -> bool {
    let p = SUSPEND.with(|c| c.replace(ptr::null_mut()));
    if p.is_null() {
        return false;
    }
    SLOW.with(|c| c.set(slow));
    let Some(how) = HOP.with(Cell::get) else {
        return false;
    };
    // SAFETY: `how` was set together with `p`, by the same fiber.
    #[allow(unsafe_code)]
    unsafe {
        how(p)
    };
    true
}

/// Runs `f` on a fiber on this thread (a tokio worker), holding `token`
/// while it runs here; see the module docs. `Err` only when no fiber could
/// be made or `f` panicked.
pub(crate) fn start<T: Send + 'static>(
    token: Token,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<Started<T>, SandboxError> {
    let stack = match STACKS.with(|s| s.borrow_mut().pop()) {
        Some(stack) => stack,
        None => FiberStack::new(STACK_BYTES, false)
            .map_err(|e| SandboxError::internal("allocating a fiber stack", e))?,
    };
    let fiber = Fiber::new(stack, move |(), suspend: &mut Sus<T>| {
        let me: *mut () = ptr::from_mut(suspend).cast();
        SUSPEND.with(|c| c.set(me));
        HOP.with(|c| c.set(Some(suspend_at::<T>)));
        let out = f();
        // Still set only if it never moved (then this is the same thread).
        SUSPEND.with(|c| {
            if c.get() == me {
                c.set(ptr::null_mut());
            }
        });
        out
    })
    .map_err(|(e, _)| SandboxError::internal("starting a fiber", e))?;
    let first = catch_unwind(AssertUnwindSafe(|| fiber.resume(())));
    // Done or moved: this worker is out of tenant code.
    drop(token);
    match first {
        Ok(Ok(out)) => {
            let stack = fiber.into_stack();
            STACKS.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < STACKS_KEPT {
                    s.push(stack);
                }
            });
            Ok(Started::Done(out))
        }
        Ok(Err(())) => Ok(Started::Moved(Moving {
            fiber: Some(fiber),
            slow: SLOW.with(Cell::get),
        })),
        Err(_) => {
            SUSPEND.with(|c| c.set(ptr::null_mut()));
            Err(panicked())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fiber_that_hops_finishes_on_another_thread() {
        let started = start(Token::for_test(), || {
            let first = std::thread::current().id();
            assert!(hop(true), "on a fiber");
            assert!(!hop(true), "once only");
            (first, std::thread::current().id())
        })
        .unwrap();
        let Started::Moved(moving) = started else {
            panic!("it hopped")
        };
        assert!(moving.slow);
        let (first, last) = std::thread::spawn(move || moving.finish().unwrap())
            .join()
            .unwrap();
        assert_ne!(first, last);
        assert!(!hop(false), "no fiber here");
    }

    #[test]
    fn a_fiber_that_does_not_hop_is_done_and_a_panic_is_an_error() {
        assert!(matches!(
            start(Token::for_test(), || 7).unwrap(),
            Started::Done(7)
        ));
        assert!(matches!(
            start(Token::for_test(), || -> u8 { panic!("boom") }),
            Err(SandboxError::Internal { .. })
        ));
    }
}
