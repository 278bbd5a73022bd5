//! The usage journal: counts a killed process never flushed reach the sink
//! exactly once when the next process opens the journal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use corral_limits::{Refusal, TenantId};
use corral_metering::{
    InvocationFigures, Journal, JournalMark, ManualClock, Meter, Period, SinkError, Usage,
    UsageSink,
};
use parking_lot::Mutex;
use std::time::Duration;

use crate::id;

/// A sink that keeps rows and marks like the SQLite store: absolute upserts
/// from flushes, additions from recoveries, the mark in the same "transaction".
#[derive(Default)]
struct MarkSink {
    rows: Mutex<HashMap<(TenantId, Period), Usage>>,
    marks: Mutex<HashMap<String, u64>>,
    /// 0: work; 1: refuse before writing; 2: write, then report a failure
    /// (the commit went through but the answer was lost); 3: as 2, and the
    /// mark cannot be read back either (the connection is gone); 4: down
    /// (refuse everything).
    mode: AtomicU8,
}

impl MarkSink {
    fn requests(&self, tenant: &str) -> u64 {
        self.rows
            .lock()
            .iter()
            .filter(|((t, _), _)| t.as_str() == tenant)
            .map(|(_, u)| u.requests)
            .sum()
    }
    fn row(&self, tenant: &str, p: Period) -> Usage {
        self.rows.lock()[&(id(tenant), p)].clone()
    }
    fn gate(&self) -> Result<(), SinkError> {
        match self.mode.load(Ordering::SeqCst) {
            1 | 4 => Err("refused".into()),
            _ => Ok(()),
        }
    }
    fn answer(&self) -> Result<(), SinkError> {
        match self.mode.load(Ordering::SeqCst) {
            2 | 3 => Err("connection lost after commit".into()),
            _ => Ok(()),
        }
    }
}

impl UsageSink for MarkSink {
    fn store(&self, _: &[Usage]) -> Result<(), SinkError> {
        Err("a journaled meter must write through store_marked".into())
    }
    fn load(&self, period: Period) -> Result<Vec<Usage>, SinkError> {
        Ok(self
            .rows
            .lock()
            .values()
            .filter(|u| u.period == period)
            .cloned()
            .collect())
    }
    fn store_marked(&self, batch: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        self.gate()?;
        let mut rows = self.rows.lock();
        for u in batch {
            rows.insert((u.tenant.clone(), u.period), u.clone());
        }
        self.marks.lock().insert(mark.journal().into(), mark.seq());
        self.answer()
    }
    fn add_marked(&self, deltas: &[Usage], mark: &JournalMark) -> Result<(), SinkError> {
        self.gate()?;
        let mut rows = self.rows.lock();
        for d in deltas {
            let r = rows
                .entry((d.tenant.clone(), d.period))
                .or_insert_with(|| Usage::zero(d.tenant.clone(), d.period));
            r.requests += d.requests;
            r.errors += d.errors;
            r.fuel += d.fuel;
            r.cold_starts += d.cold_starts;
            for (k, n) in &d.refused {
                *r.refused.entry(*k).or_insert(0) += n;
            }
        }
        self.marks.lock().insert(mark.journal().into(), mark.seq());
        self.answer()
    }
    fn journal_mark(&self, journal: &str) -> Result<u64, SinkError> {
        if matches!(self.mode.load(Ordering::SeqCst), 3 | 4) {
            return Err("no connection".into());
        }
        Ok(self.marks.lock().get(journal).copied().unwrap_or(0))
    }
    fn forget_mark(&self, journal: &str) -> Result<(), SinkError> {
        self.marks.lock().remove(journal);
        Ok(())
    }
}

fn nov() -> Period {
    Period::new(2026, 11).unwrap()
}

fn journaled(dir: &std::path::Path, sink: &MarkSink, clock: &ManualClock) -> Meter {
    let (journal, recovered) = Journal::open(dir, "usage", sink).unwrap();
    assert!(recovered.discarded.is_empty());
    let meter = Meter::builder()
        .clock(clock.clone())
        .journal(journal)
        .build();
    meter.restore(sink).unwrap();
    meter
}

fn hit(meter: &Meter, tenant: &str, n: u64) {
    let t = meter.tenant(&id(tenant));
    for _ in 0..n {
        t.request();
        t.invocation(&InvocationFigures::new(
            10,
            Duration::from_micros(5),
            0,
            false,
        ));
    }
}

/// What a SIGKILL leaves in the file: dropping a meter flushes nothing and
/// writes no counter (it only frees the slots whose counts are all in the
/// sink) and closes the file, as the kernel does for a killed process. The
/// server tests kill a real process.
fn kill(meter: Meter) {
    drop(meter);
}

#[test]
fn counts_a_killed_process_never_flushed_reach_the_sink_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();

    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 30);
    hit(&meter, "blog", 4);
    meter.tenant(&id("shop")).refused(Refusal::RateLimited);
    meter.flush(&sink).unwrap();
    assert_eq!(sink.requests("shop"), 30);
    hit(&meter, "shop", 12);
    hit(&meter, "new", 3);
    kill(meter);
    assert_eq!(sink.requests("shop"), 30, "the last 12 were never flushed");

    let (journal, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 15);
    assert_eq!(sink.requests("shop"), 42);
    assert_eq!(sink.requests("blog"), 4);
    assert_eq!(sink.requests("new"), 3);
    assert_eq!(sink.row("shop", nov()).fuel, 420);
    assert_eq!(sink.row("shop", nov()).refused[&Refusal::RateLimited], 1);
    assert_eq!(journal.tenants(), 0, "the file starts empty");
    drop(journal);

    // Opened again: nothing more to hand over.
    let meter = journaled(dir.path(), &sink, &clock);
    assert_eq!(sink.requests("shop"), 42);
    assert_eq!(meter.usage(&id("shop")).unwrap().requests, 42);
    hit(&meter, "shop", 1);
    meter.flush(&sink).unwrap();
    assert_eq!(sink.requests("shop"), 43);
}

#[test]
fn a_flush_committed_before_the_kill_is_not_added_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 20);
    // The sink commits but the answer is lost, and the mark cannot be read
    // back: the journal never learns.
    sink.mode.store(3, Ordering::SeqCst);
    assert!(meter.flush(&sink).is_err());
    assert_eq!(sink.requests("shop"), 20);
    hit(&meter, "shop", 5);
    kill(meter);
    sink.mode.store(0, Ordering::SeqCst);

    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(
        recovered.requests(),
        5,
        "the 20 are in; only the 5 are missing"
    );
    assert_eq!(sink.requests("shop"), 25);
}

/// A commit whose answer was lost, with the mark readable: the flush is a
/// success, and the journal knows the rows are in.
#[test]
fn a_flush_whose_answer_was_lost_is_found_in_by_its_mark() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 20);
    sink.mode.store(2, Ordering::SeqCst);
    assert_eq!(meter.flush(&sink).unwrap(), 1);
    sink.mode.store(0, Ordering::SeqCst);
    hit(&meter, "shop", 4);
    kill(meter);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 4);
    assert_eq!(sink.requests("shop"), 24);
}

/// A commit whose answer was lost while the sink went down: no later flush
/// starts (and overwrites what the file says that one held) before the
/// sink says whether it is in, so a kill in the outage still recovers
/// exactly what is missing.
#[test]
fn an_unknown_commit_is_settled_before_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 20);
    sink.mode.store(3, Ordering::SeqCst);
    assert!(meter.flush(&sink).is_err());
    assert_eq!(sink.requests("shop"), 20, "in, unknown to the meter");
    hit(&meter, "shop", 6);
    sink.mode.store(4, Ordering::SeqCst);
    assert!(meter.flush(&sink).is_err());
    hit(&meter, "shop", 1);
    kill(meter);
    sink.mode.store(0, Ordering::SeqCst);
    let (journal, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 7);
    assert_eq!(sink.requests("shop"), 27);
    drop(journal);

    // Settled by the next flush once the sink is back, then flushed on.
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "blog", 10);
    sink.mode.store(3, Ordering::SeqCst);
    assert!(meter.flush(&sink).is_err());
    sink.mode.store(0, Ordering::SeqCst);
    hit(&meter, "blog", 2);
    meter.flush(&sink).unwrap();
    assert_eq!(sink.requests("blog"), 12);
    hit(&meter, "blog", 3);
    kill(meter);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 3);
    assert_eq!(sink.requests("blog"), 15);
}

#[test]
fn a_refused_flush_leaves_everything_to_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 7);
    meter.flush(&sink).unwrap();
    hit(&meter, "shop", 8);
    sink.mode.store(1, Ordering::SeqCst);
    assert!(meter.flush(&sink).is_err());
    kill(meter);

    // The sink is still down when the next process starts: nothing is lost.
    let err = Journal::open(dir.path(), "usage", &sink).unwrap_err();
    assert!(
        matches!(err, corral_metering::JournalError::Sink { .. }),
        "{err}"
    );
    sink.mode.store(0, Ordering::SeqCst);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 8);
    assert_eq!(sink.requests("shop"), 15);
}

#[test]
fn a_recovery_whose_answer_was_lost_is_not_added_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 9);
    kill(meter);

    sink.mode.store(2, Ordering::SeqCst);
    assert!(Journal::open(dir.path(), "usage", &sink).is_err());
    assert_eq!(sink.requests("shop"), 9, "committed, answer lost");
    sink.mode.store(0, Ordering::SeqCst);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert!(recovered.usage.is_empty(), "{recovered:?}");
    assert_eq!(sink.requests("shop"), 9);
}

#[test]
fn a_closed_month_and_the_new_one_are_both_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let meter = journaled(dir.path(), &sink, &clock);
    hit(&meter, "shop", 4);
    meter.flush(&sink).unwrap();
    clock.set(nov().next().start() + Duration::from_secs(5));
    hit(&meter, "shop", 6);
    // November's final totals and December's first rows go in one flush.
    meter.flush(&sink).unwrap();
    hit(&meter, "shop", 2);
    kill(meter);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 2);
    assert_eq!(recovered.usage[0].period, nov().next());
    assert_eq!(sink.row("shop", nov()).requests, 4);
    assert_eq!(sink.row("shop", nov().next()).requests, 8);
}

#[test]
fn slots_of_flushed_tenants_are_reused_and_the_file_grows_past_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(nov().start());
    let sink = MarkSink::default();
    let (journal, _) = Journal::open(dir.path(), "usage", &sink).unwrap();
    let meter = Meter::builder()
        .clock(clock.clone())
        .journal(journal.clone())
        .build();
    for i in 0..700 {
        hit(&meter, &format!("app{i}"), 1);
    }
    assert_eq!(journal.tenants(), 700);
    meter.flush(&sink).unwrap();
    for i in 0..700 {
        meter.forget(&id(&format!("app{i}")));
    }
    assert_eq!(
        journal.tenants(),
        0,
        "flushed and forgotten: every slot is free"
    );
    for i in 0..10 {
        hit(&meter, &format!("again{i}"), 2);
    }
    let len = std::fs::metadata(journal.path()).unwrap().len();
    drop(journal);
    kill(meter);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 20);
    assert_eq!(sink.requests("app699"), 1);
    assert!(len > 4096 + 512 * 600, "two segments: {len}");
}

#[test]
fn a_journal_in_use_is_left_alone_and_recovered_once_it_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let sink = MarkSink::default();
    let clock = ManualClock::new(nov().start());
    let first = journaled(dir.path(), &sink, &clock);
    hit(&first, "shop", 3);
    // A second meter on the same dir (a restart inside one process, or a
    // second node by mistake) gets a file of its own and must not take over
    // the live one's counts.
    let second = journaled(dir.path(), &sink, &clock);
    assert_eq!(sink.requests("shop"), 0);
    hit(&second, "shop", 4);
    let files = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    assert_eq!(files(dir.path()), 2);
    // The first goes away without a flush; the next open finds its 3.
    kill(first);
    let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.requests(), 3);
    assert_eq!(sink.requests("shop"), 3);
    second.flush(&sink).unwrap();
    assert_eq!(
        sink.requests("shop"),
        4,
        "the second's own totals (it restored 0)"
    );
    // Recovered files are deleted, and so are their marks.
    assert_eq!(
        files(dir.path()),
        2,
        "the second's file and the last open's"
    );
    let marks = sink.marks.lock().len();
    assert_eq!(marks, 1, "the second's; the first's went with its file");
}

#[test]
fn an_unreadable_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage-0123.journal");
    std::fs::write(&path, b"not a journal").unwrap();
    let sink = MarkSink::default();
    let (journal, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
    assert_eq!(recovered.discarded.len(), 1);
    assert_eq!(
        std::fs::read(&recovered.discarded[0]).unwrap(),
        b"not a journal"
    );
    assert!(!path.exists());
    assert_eq!(journal.tenants(), 0);
}

#[test]
fn a_sink_without_marks_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sink = crate::usage::MemSink::default();
    // A new file needs no mark; the first flush does.
    let (journal, _) = Journal::open(dir.path(), "usage", &sink).unwrap();
    let meter = Meter::builder().journal(journal).build();
    meter.request(&id("shop"));
    let err = meter.flush(&sink).unwrap_err();
    assert!(
        format!("{:?}", err).contains("keeps no journal marks"),
        "{err:?}"
    );
}
