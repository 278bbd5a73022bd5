//! A bounded per-tenant log for guest stderr and `console.log`.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// A tenant's recent log lines, capped in bytes: the oldest lines go first.
///
/// ```
/// use corral::TenantLog;
/// let log = TenantLog::new(10);
/// log.push("hello");
/// log.push("world!");
/// assert_eq!(log.lines(), vec!["world!".to_string()]);
/// assert_eq!(log.dropped(), 1);
/// ```
#[derive(Debug)]
pub struct TenantLog {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: u64,
}

impl TenantLog {
    /// A log keeping at most `cap` bytes of lines.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Appends a line, truncated to the cap, dropping the oldest lines to fit.
    pub fn push(&self, line: &str) {
        let mut end = line.len().min(self.cap);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = &line[..end];
        let mut g = self.inner.lock();
        while g.bytes + line.len() > self.cap {
            match g.lines.pop_front() {
                Some(old) => {
                    g.bytes -= old.len();
                    g.dropped += 1;
                }
                None => break,
            }
        }
        g.bytes += line.len();
        g.lines.push_back(line.to_owned());
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().lines.iter().cloned().collect()
    }

    /// How many lines were dropped to stay within the cap.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }
}
