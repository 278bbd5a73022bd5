//! Wall-clock time behind a trait, so tests control which month it is.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the meter reads the current wall-clock time (UTC) to decide which
/// billing [`Period`](crate::Period) a request belongs to.
///
/// [`SystemClock`] is the real one; [`ManualClock`] is set by hand in tests.
///
/// ```
/// use corral_metering::{Clock, SystemClock};
/// assert!(SystemClock.now() > std::time::UNIX_EPOCH);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use corral_metering::{Clock, ManualClock};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(10));
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(11_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    to_millis(t)
}

fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

impl ManualClock {
    /// A clock standing at `at` (millisecond precision).
    pub fn new(at: SystemTime) -> Self {
        Self(Arc::new(AtomicI64::new(to_millis(at))))
    }

    /// Moves the clock to `at`, forwards or backwards.
    pub fn set(&self, at: SystemTime) {
        self.0.store(to_millis(at), Ordering::SeqCst);
    }

    /// Moves the clock forwards by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        from_millis(self.0.load(Ordering::SeqCst))
    }
}
