//! A bounded per-tenant log for guest stderr and `console.log`.
//!
//! The log is capped in bytes and in lines, and every line costs at least
//! [`LINE_OVERHEAD`] bytes, so a guest printing empty lines fills it as
//! surely as one printing long ones. Each request writes through its own
//! [`LogWriter`], which accepts at most one full log's worth of lines; what a
//! request prints past that is only counted, so a flood costs the host a
//! counter increment per line instead of an allocation and an eviction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// What every kept line costs against a log's byte cap on top of its text:
/// about what the host spends to keep a line (its `String` in the queue plus
/// allocator bookkeeping). An empty line is not free.
pub const LINE_OVERHEAD: usize = 64;

/// A tenant's recent log lines, capped in bytes and in lines: the oldest
/// lines go first.
///
/// A line costs its length plus [`LINE_OVERHEAD`], so a log of `max_bytes`
/// holds at most `max_bytes / LINE_OVERHEAD` lines, and a line longer than
/// `max_bytes - LINE_OVERHEAD` is truncated.
///
/// ```
/// use corral::{LINE_OVERHEAD, TenantLog};
/// // Room for "hello" and "world!" (5 + 6 bytes of text) and no more.
/// let log = TenantLog::new(2 * LINE_OVERHEAD + 11);
/// assert_eq!(log.max_lines(), 2);
/// log.push("hello");
/// log.push("world!");
/// log.push("again");
/// assert_eq!(log.lines(), vec!["world!".to_string(), "again".to_string()]);
/// assert_eq!(log.dropped(), 1);
/// // Empty lines are charged too: they push the others out.
/// for _ in 0..1_000 {
///     log.push("");
/// }
/// assert_eq!(log.lines(), vec![String::new(), String::new()]);
/// assert!(log.bytes() <= log.max_bytes());
/// ```
#[derive(Debug)]
pub struct TenantLog {
    max_bytes: usize,
    max_lines: usize,
    inner: Mutex<Inner>,
    /// Lines evicted to stay within the caps, or refused by a request's
    /// [`LogWriter`]. Outside the lock: refusing a line only bumps this.
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    lines: VecDeque<String>,
    /// Charged bytes: text plus [`LINE_OVERHEAD`] per line.
    bytes: usize,
    /// Lines ever kept (evicted ones included): the sequence number of the
    /// next line, for readers that follow the log.
    appended: u64,
}

impl TenantLog {
    /// A log keeping at most `max_bytes` bytes of lines, each charged its
    /// length plus [`LINE_OVERHEAD`]. Below `LINE_OVERHEAD` nothing is kept.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_lines: max_bytes / LINE_OVERHEAD,
            inner: Mutex::new(Inner::default()),
            dropped: AtomicU64::new(0),
        }
    }

    /// The byte cap (text plus [`LINE_OVERHEAD`] per line).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The line cap: `max_bytes / LINE_OVERHEAD`.
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// The longest line kept whole; longer ones are cut to this many bytes
    /// (at a character boundary).
    pub fn max_line_len(&self) -> usize {
        self.max_bytes.saturating_sub(LINE_OVERHEAD)
    }

    /// Appends a line, truncated to [`max_line_len`](Self::max_line_len),
    /// dropping the oldest lines to fit both caps.
    pub fn push(&self, line: &str) {
        if self.max_lines == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let line = truncate(line, self.max_line_len());
        let cost = line.len() + LINE_OVERHEAD;
        let mut evicted = 0;
        let mut g = self.inner.lock();
        while g.bytes + cost > self.max_bytes || g.lines.len() >= self.max_lines {
            match g.lines.pop_front() {
                Some(old) => {
                    g.bytes -= old.len() + LINE_OVERHEAD;
                    evicted += 1;
                }
                None => break,
            }
        }
        g.bytes += cost;
        g.lines.push_back(line.to_owned());
        g.appended += 1;
        drop(g);
        if evicted > 0 {
            self.dropped.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().lines.iter().cloned().collect()
    }

    /// The kept lines appended after the first `seen` lines this log ever
    /// kept, oldest first, and how many it has kept so far: pass that as
    /// `seen` next time to follow the log. Lines evicted before the reader
    /// saw them are skipped ([`dropped`](Self::dropped) counts them); a
    /// `seen` past the count (another log's) reads every kept line.
    ///
    /// ```
    /// use corral::{LINE_OVERHEAD, TenantLog};
    /// let log = TenantLog::new(2 * LINE_OVERHEAD + 16);
    /// log.push("a");
    /// let (lines, seen) = log.lines_after(0);
    /// assert_eq!((lines, seen), (vec!["a".to_string()], 1));
    /// log.push("b");
    /// log.push("c"); // evicts "a"
    /// assert_eq!(log.lines_after(seen), (vec!["b".to_string(), "c".to_string()], 3));
    /// log.push("d"); // evicts "b", unseen by a reader at 1
    /// assert_eq!(log.lines_after(1), (vec!["c".to_string(), "d".to_string()], 4));
    /// assert_eq!(log.lines_after(4), (vec![], 4));
    /// ```
    pub fn lines_after(&self, seen: u64) -> (Vec<String>, u64) {
        let g = self.inner.lock();
        let first = g.appended - g.lines.len() as u64;
        let skip = if seen > g.appended {
            0
        } else {
            usize::try_from(seen.saturating_sub(first)).unwrap_or(usize::MAX)
        };
        (g.lines.iter().skip(skip).cloned().collect(), g.appended)
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.inner.lock().lines.len()
    }

    /// Whether no line is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the kept lines are charged: their text plus
    /// [`LINE_OVERHEAD`] each. Never more than [`max_bytes`](Self::max_bytes).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// How many lines were dropped: evicted to stay within the caps, or
    /// refused because their request was over its share (see [`LogWriter`]).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A writer for one request: it accepts up to one full log's worth
    /// ([`max_lines`](Self::max_lines) lines, [`max_bytes`](Self::max_bytes)
    /// charged bytes) and counts the rest as dropped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use corral::{LINE_OVERHEAD, TenantLog};
    /// let log = Arc::new(TenantLog::new(16 * LINE_OVERHEAD));
    /// let writer = log.writer();
    /// for _ in 0..100_000 {
    ///     writer.push("");
    /// }
    /// drop(writer);
    /// // The request's first lines filled the log; a note says what was cut
    /// // (and pushes out the oldest lines it needs room for).
    /// let lines = log.lines();
    /// assert_eq!(lines.len(), 15);
    /// assert_eq!(lines[14], "[corral] 99984 more log lines from this request were dropped");
    /// assert_eq!(log.dropped(), 99_984 + 2);
    /// ```
    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter {
            log: self.clone(),
            quota: Mutex::new(Quota {
                lines: self.max_lines,
                bytes: self.max_bytes,
                refused: 0,
            }),
        }
    }
}

fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// One request's way into a [`TenantLog`], from [`TenantLog::writer`].
///
/// It accepts lines until the request has written one full log's worth, then
/// only counts them (each refused line is one atomic increment of
/// [`TenantLog::dropped`], whatever its length). When the writer is dropped,
/// a last line says how many lines were refused, if any.
#[derive(Debug)]
pub struct LogWriter {
    log: Arc<TenantLog>,
    quota: Mutex<Quota>,
}

#[derive(Debug)]
struct Quota {
    lines: usize,
    bytes: usize,
    refused: u64,
}

impl LogWriter {
    /// Whether this writer still accepts a line: callers can skip building
    /// a line (copying a guest string, splitting a buffer) when it does not.
    pub fn accepts(&self) -> bool {
        let q = self.quota.lock();
        q.lines > 0 && q.bytes >= LINE_OVERHEAD
    }

    /// Appends a line to the log if this request still has room for it, or
    /// counts it as dropped.
    pub fn push(&self, line: &str) {
        let mut q = self.quota.lock();
        let line = truncate(line, self.log.max_line_len());
        let cost = line.len() + LINE_OVERHEAD;
        if q.lines == 0 || q.bytes < cost {
            // Nothing later fits either: close the quota so `accepts` says so.
            q.lines = 0;
            q.refused += 1;
            drop(q);
            self.log.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.lines -= 1;
        q.bytes -= cost;
        drop(q);
        self.log.push(line);
    }

    /// Counts `n` lines the caller refused without building them (after
    /// [`accepts`](Self::accepts) said no).
    pub fn refuse(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut q = self.quota.lock();
        q.lines = 0;
        q.refused += n;
        drop(q);
        self.log.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The longest line the log keeps whole
    /// ([`TenantLog::max_line_len`]): callers need not build more of a line.
    pub fn max_line_len(&self) -> usize {
        self.log.max_line_len()
    }

    /// How many lines this writer refused so far.
    pub fn refused(&self) -> u64 {
        self.quota.lock().refused
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let refused = self.quota.get_mut().refused;
        if refused > 0 {
            self.log.push(&format!(
                "[corral] {refused} more log lines from this request were dropped"
            ));
            // The note is not a dropped line; the push above may have
            // evicted an older one, which it counted.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_empty_lines_is_held_to_both_caps() {
        let log = TenantLog::new(64 << 10);
        for _ in 0..100_000 {
            log.push("");
        }
        assert_eq!(log.len(), (64 << 10) / LINE_OVERHEAD);
        assert_eq!(log.bytes(), 64 << 10);
        assert_eq!(log.dropped(), 100_000 - 1024);
    }

    #[test]
    fn long_lines_are_cut_at_a_char_boundary() {
        let log = TenantLog::new(LINE_OVERHEAD + 5);
        log.push("ééé");
        assert_eq!(log.lines(), vec!["éé"]);
        assert_eq!(log.bytes(), LINE_OVERHEAD + 4);
    }

    #[test]
    fn a_log_below_one_line_keeps_nothing() {
        let log = TenantLog::new(LINE_OVERHEAD - 1);
        log.push("x");
        assert!(log.is_empty());
        assert_eq!(log.dropped(), 1);
        let writer = Arc::new(log).writer();
        assert!(!writer.accepts());
        writer.push("y");
        assert_eq!(writer.refused(), 1);
    }

    #[test]
    fn a_writer_stops_at_one_log_and_leaves_a_note() {
        let log = Arc::new(TenantLog::new(16 * LINE_OVERHEAD));
        log.push("before");
        let writer = log.writer();
        let mut accepted = 0;
        while writer.accepts() {
            writer.push("line");
            accepted += 1;
        }
        assert_eq!(
            accepted, 15,
            "15 lines of 4 + {LINE_OVERHEAD} bytes fill 1024"
        );
        writer.refuse(1_000_000);
        writer.push("late");
        assert_eq!(writer.refused(), 1_000_001);
        drop(writer);
        let lines = log.lines();
        // "before" made room for the request's lines, two of which made
        // room for the note.
        assert_eq!(lines.len(), 14);
        assert!(lines[..13].iter().all(|l| l == "line"));
        assert_eq!(
            lines[13],
            "[corral] 1000001 more log lines from this request were dropped"
        );
        assert!(log.bytes() <= log.max_bytes());
        assert_eq!(log.dropped(), 1 + 1_000_001 + 2);
    }

    #[test]
    fn each_writer_gets_its_own_quota() {
        // Room for four lines of three bytes.
        let log = Arc::new(TenantLog::new(4 * (LINE_OVERHEAD + 3)));
        for round in 0..3 {
            let writer = log.writer();
            for i in 0..3 {
                writer.push(&format!("{round}.{i}"));
            }
            assert_eq!(writer.refused(), 0);
        }
        assert_eq!(log.lines(), vec!["1.2", "2.0", "2.1", "2.2"]);
    }
}
