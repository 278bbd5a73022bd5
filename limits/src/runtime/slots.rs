use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Host-wide execution slots: a semaphore that can be resized at run time.
///
/// Growing adds slots at once. Shrinking takes free slots away at once and
/// the rest as in-flight requests give theirs back, so no request in flight is
/// dropped or interrupted; [`settled`](Self::settled) resolves when the host
/// is down to the new size. Clones share the same slots.
///
/// ```
/// use corral_limits::RuntimeSlots;
///
/// let slots = RuntimeSlots::new(2);
/// let a = slots.try_acquire().unwrap();
/// let b = slots.try_acquire().unwrap();
/// assert!(slots.try_acquire().is_none());
/// slots.resize(1); // both stay in flight
/// assert_eq!((slots.size(), slots.in_use(), slots.available()), (1, 2, 0));
/// drop(a); // this one pays the shrink off instead of coming back
/// assert!(slots.try_acquire().is_none());
/// drop(b);
/// assert_eq!(slots.available(), 1);
/// ```
#[derive(Clone)]
pub struct RuntimeSlots {
    inner: Arc<SlotsInner>,
}

struct SlotsInner {
    sem: Arc<Semaphore>,
    size: AtomicUsize,
    // Slots still to take away as they come back (a shrink below in-use).
    debt: AtomicUsize,
    in_use: AtomicUsize,
    resize: Mutex<()>,
    settled: Notify,
}

impl SlotsInner {
    /// Takes up to `n` of the debt off; returns how much was taken off.
    fn pay(&self, n: usize) -> usize {
        if self.debt.load(Ordering::Acquire) == 0 {
            return 0; // the common case: no shrink pending
        }
        let prev = self
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| Some(d - d.min(n)))
            .unwrap_or_else(|d| d);
        let paid = prev.min(n);
        if paid > 0 && prev == paid {
            self.settled.notify_waiters();
        }
        paid
    }
}

impl RuntimeSlots {
    /// `n` slots (capped at `tokio::sync::Semaphore::MAX_PERMITS`).
    pub fn new(n: usize) -> Self {
        let n = n.min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(SlotsInner {
                sem: Arc::new(Semaphore::new(n)),
                size: AtomicUsize::new(n),
                debt: AtomicUsize::new(0),
                in_use: AtomicUsize::new(0),
                resize: Mutex::new(()),
                settled: Notify::new(),
            }),
        }
    }

    /// The configured number of slots.
    pub fn size(&self) -> usize {
        self.inner.size.load(Ordering::Acquire)
    }

    /// Slots held by requests in flight (may exceed [`size`](Self::size) just after a shrink).
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Acquire)
    }

    /// Slots free to take now.
    pub fn available(&self) -> usize {
        self.inner.sem.available_permits()
    }

    fn wrap(&self, permit: OwnedSemaphorePermit) -> RuntimeSlot {
        self.inner.in_use.fetch_add(1, Ordering::AcqRel);
        RuntimeSlot {
            permit: Some(permit),
            slots: self.inner.clone(),
        }
    }

    /// A slot if one is free now.
    pub fn try_acquire(&self) -> Option<RuntimeSlot> {
        let permit = self.inner.sem.clone().try_acquire_owned().ok()?;
        Some(self.wrap(permit))
    }

    /// Waits for a slot (wrap it in a timeout: the layer never waits unbounded).
    pub async fn acquire(&self) -> RuntimeSlot {
        let permit = self
            .inner
            .sem
            .clone()
            .acquire_owned()
            .await
            .expect("the runtime semaphore is never closed");
        self.wrap(permit)
    }

    /// Sets the number of slots to `n` (capped at `tokio::sync::Semaphore::MAX_PERMITS`)
    /// without touching requests in flight.
    ///
    /// ```
    /// # use corral_limits::RuntimeSlots;
    /// let slots = RuntimeSlots::new(1);
    /// let _held = slots.try_acquire().unwrap();
    /// slots.resize(3);
    /// assert_eq!((slots.size(), slots.in_use(), slots.available()), (3, 1, 2));
    /// ```
    pub fn resize(&self, n: usize) {
        let n = n.min(Semaphore::MAX_PERMITS);
        let _one_at_a_time = self.inner.resize.lock();
        let old = self.inner.size.swap(n, Ordering::AcqRel);
        if n > old {
            let grow = n - old;
            let paid = self.inner.pay(grow);
            self.inner.sem.add_permits(grow - paid);
        } else if n < old {
            let shrink = old - n;
            let forgotten = self.inner.sem.forget_permits(shrink);
            self.inner
                .debt
                .fetch_add(shrink - forgotten, Ordering::AcqRel);
            // A slot may have come back between the two steps: take it now.
            let debt = self.inner.debt.load(Ordering::Acquire);
            if debt > 0 {
                let extra = self.inner.sem.forget_permits(debt);
                let paid = self.inner.pay(extra);
                // Anything forgotten but not owed goes back.
                self.inner.sem.add_permits(extra - paid);
            }
        }
    }

    /// Resolves once every shrink is paid off (slots in use ≤ size).
    ///
    /// ```
    /// # use corral_limits::RuntimeSlots;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let slots = RuntimeSlots::new(1);
    /// let held = slots.try_acquire().unwrap();
    /// slots.resize(0);
    /// let waiter = tokio::spawn({ let s = slots.clone(); async move { s.settled().await } });
    /// drop(held);
    /// waiter.await.unwrap();
    /// assert_eq!((slots.in_use(), slots.available()), (0, 0));
    /// # }
    /// ```
    pub async fn settled(&self) {
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.debt.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for RuntimeSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeSlots")
            .field("size", &self.size())
            .field("in_use", &self.in_use())
            .field("available", &self.available())
            .finish()
    }
}

/// One held runtime slot; dropping it gives the slot back (or pays off a shrink).
pub struct RuntimeSlot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<SlotsInner>,
}

impl Drop for RuntimeSlot {
    fn drop(&mut self) {
        self.slots.in_use.fetch_sub(1, Ordering::AcqRel);
        if let Some(permit) = self.permit.take() {
            if self.slots.pay(1) == 1 {
                permit.forget();
            } else {
                drop(permit);
            }
        }
    }
}

impl fmt::Debug for RuntimeSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeSlot").finish_non_exhaustive()
    }
}
