//! The usage journal: a meter's counters in a memory-mapped file, so the
//! counts a killed process had not flushed yet are not lost.
//!
//! A [`Meter`](crate::Meter) built with a [`Journal`] keeps each tenant's
//! additive counters (requests, refusals, errors, wall and CPU time, fuel,
//! bytes, cold starts) in a slot of a shared file mapping instead of the
//! heap. The hot path does the same atomic adds as before; the kernel owns
//! the pages, so they survive the process being killed (`SIGKILL`, an OOM
//! kill, a panic that aborts). They do not survive the machine losing power:
//! nothing is `fsync`ed.
//!
//! Each slot also holds what the last committed flush included (`committed`)
//! and what the flush under way includes (`inflight`, with its sequence
//! number). A flush writes its batch and the journal's mark (its id and that
//! sequence number) into the sink in one transaction; so when a later
//! process opens the journals in that directory, the sink's mark says
//! whether the flush that was under way when the process died was committed,
//! and the dead journal hands the sink exactly the counts that never reached
//! it — once — and is deleted.
//!
//! Each process has a file of its own (`NAME-ID.journal`), locked while it
//! lives: a second node on the same directory, or a restart inside one
//! process, never reads or cuts a live journal.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use corral_limits::{Refusal, TenantId};
use parking_lot::Mutex;

use crate::{Period, SinkError, Usage, UsageSink};

/// How many additive counters a slot holds.
pub(crate) const FIELDS: usize = 1 + 2 * Refusal::COUNT + 6;
const ERROR_KINDS: usize = 7;
const _: () = assert!(ERROR_KINDS == Refusal::COUNT);

/// One tenant's additive counters: what monthly usage is made of. `repr(C)`
/// of one type, so it is also an array of [`FIELDS`] counters.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Additive {
    pub(crate) requests: AtomicU64,
    pub(crate) refused: [AtomicU64; Refusal::COUNT],
    pub(crate) errors: [AtomicU64; ERROR_KINDS],
    pub(crate) wall_us: AtomicU64,
    pub(crate) fuel: AtomicU64,
    pub(crate) cpu_us: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) cold_starts: AtomicU64,
}
const _: () = assert!(std::mem::size_of::<Additive>() == FIELDS * 8);

/// The counters of an [`Additive`] read at one instant, in field order.
pub(crate) type Raw = [u64; FIELDS];

impl Additive {
    fn cells(&self) -> &[AtomicU64; FIELDS] {
        // SAFETY: `Additive` is `repr(C)` and made only of `AtomicU64`s (the
        // size assertion above rules out padding), so it has the layout of
        // `[AtomicU64; FIELDS]`.
        unsafe { &*(self as *const Additive).cast::<[AtomicU64; FIELDS]>() }
    }

    pub(crate) fn load(&self) -> Raw {
        let c = self.cells();
        std::array::from_fn(|i| c[i].load(Relaxed))
    }

    fn store(&self, v: &Raw) {
        for (c, v) in self.cells().iter().zip(v) {
            c.store(*v, Relaxed);
        }
    }
}

/// Field positions in a [`Raw`].
pub(crate) mod at {
    use super::{ERROR_KINDS, Refusal};
    pub(crate) const REQUESTS: usize = 0;
    pub(crate) const REFUSED: usize = 1;
    pub(crate) const ERRORS: usize = REFUSED + Refusal::COUNT;
    pub(crate) const WALL_US: usize = ERRORS + ERROR_KINDS;
    pub(crate) const FUEL: usize = WALL_US + 1;
    pub(crate) const CPU_US: usize = FUEL + 1;
    pub(crate) const BYTES_IN: usize = CPU_US + 1;
    pub(crate) const BYTES_OUT: usize = BYTES_IN + 1;
    pub(crate) const COLD_STARTS: usize = BYTES_OUT + 1;
}
const _: () = assert!(at::COLD_STARTS + 1 == FIELDS);

/// One tenant's place in the file.
#[repr(C)]
struct Slot {
    /// 1 while a tenant owns it.
    used: AtomicU64,
    /// `year * 100 + month` of the newest counts.
    period: AtomicU64,
    name_len: AtomicU64,
    name: [AtomicU64; 8],
    /// The flush whose batch `inflight` belongs to.
    inflight_seq: AtomicU64,
    live: Additive,
    committed: Additive,
    inflight: Additive,
}

const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
const _: () = assert!(SLOT_BYTES == 600);
/// Slots per segment: 512 × 600 bytes is a whole number of 4 KiB pages.
const SEG_SLOTS: usize = 512;
const SEG_BYTES: usize = SEG_SLOTS * SLOT_BYTES;
const _: () = assert!(SEG_BYTES.is_multiple_of(4096));
const HEADER_BYTES: usize = 4096;
const MAGIC: u64 = u64::from_le_bytes(*b"CRLUSGJ1");
const VERSION: u64 = 1;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU64,
    id: [AtomicU64; 2],
    /// The sequence number of the last flush begun.
    pending: AtomicU64,
    /// The sequence number of the last flush committed and recorded here.
    done: AtomicU64,
    /// Set while this file's old counts are being handed to the sink: once
    /// the sink's mark reaches it, they are in and must not be added again.
    recovery: AtomicU64,
    segments: AtomicU64,
}

/// Why a journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The file could not be created, read, sized or mapped.
    #[error("usage journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Another live journal holds the file (internal: such files are
    /// skipped, never recovered while they are in use).
    #[error("usage journal {path} is in use")]
    InUse {
        /// The journal file.
        path: PathBuf,
    },
    /// The sink refused the recovered counts or the mark lookup; the file
    /// is left as it was, so the next open tries again.
    #[error("usage journal {path}: handing the recovered counts to the sink failed")]
    Sink {
        /// The journal file.
        path: PathBuf,
        /// What the sink said.
        #[source]
        source: SinkError,
    },
}

/// What [`Journal::open`] found in earlier journals and handed to the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// One row per tenant and month that had counts the sink never received
    /// (added to the sink's totals, not replacing them).
    pub usage: Vec<Usage>,
    /// Where unreadable files were moved aside (their counts are not used).
    pub discarded: Vec<PathBuf>,
}

impl Recovered {
    /// Requests among the recovered counts.
    pub fn requests(&self) -> u64 {
        self.usage.iter().map(|u| u.requests).sum()
    }
}

/// A journal's place in its sink: the sink stores it with a batch, in the
/// same transaction, and [`UsageSink::journal_mark`] reads it back.
///
/// ```
/// let m = corral_metering::JournalMark::new("3f2a", 7);
/// assert_eq!((m.journal(), m.seq()), ("3f2a", 7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalMark {
    journal: String,
    seq: u64,
}

impl JournalMark {
    /// The mark of flush `seq` of journal `journal`.
    pub fn new(journal: impl Into<String>, seq: u64) -> Self {
        Self {
            journal: journal.into(),
            seq,
        }
    }
    /// The journal's id (32 hex digits, made when its file was created).
    pub fn journal(&self) -> &str {
        &self.journal
    }
    /// The flush's sequence number (increasing, never reused).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// A meter's counters in a memory-mapped file: see the [module
/// docs](self). Cheap to clone; give it to [`MeterBuilder::journal`](crate::MeterBuilder::journal).
///
/// ```
/// use corral_metering::{Journal, Meter, Period, SinkError, Usage, UsageSink, JournalMark};
/// # use std::sync::Mutex;
/// # #[derive(Default)]
/// # struct Mem { rows: Mutex<Vec<Usage>>, mark: Mutex<u64> }
/// # impl UsageSink for Mem {
/// #     fn store(&self, b: &[Usage]) -> Result<(), SinkError> { self.rows.lock().unwrap().extend_from_slice(b); Ok(()) }
/// #     fn load(&self, _: Period) -> Result<Vec<Usage>, SinkError> { Ok(vec![]) }
/// #     fn store_marked(&self, b: &[Usage], m: &JournalMark) -> Result<(), SinkError> { *self.mark.lock().unwrap() = m.seq(); self.store(b) }
/// #     fn add_marked(&self, b: &[Usage], m: &JournalMark) -> Result<(), SinkError> { self.store_marked(b, m) }
/// #     fn journal_mark(&self, _: &str) -> Result<u64, SinkError> { Ok(*self.mark.lock().unwrap()) }
/// # }
/// let dir = tempfile::tempdir().unwrap();
/// let sink = Mem::default();
/// let (journal, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
/// assert!(recovered.usage.is_empty()); // nothing there before
/// let meter = Meter::builder().journal(journal).build();
/// meter.request(&"shop".parse().unwrap());
/// // The process dies here, before any flush (dropping the meter flushes
/// // nothing; it lets go of the file as a killed process does).
/// drop(meter);
/// // The next one finds the request and hands it to the sink:
/// let (_, recovered) = Journal::open(dir.path(), "usage", &sink).unwrap();
/// assert_eq!(recovered.requests(), 1);
/// ```
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// The `'static` references below point into `maps`, which `Inner` owns
/// and unmaps only when it is dropped: after every [`SlotHandle`] (each holds
/// the `Inner`) is gone, so no reference outlives its mapping.
struct Inner {
    path: PathBuf,
    file: File,
    id: String,
    header: &'static Header,
    segments: Mutex<Vec<&'static [Slot]>>,
    free: Mutex<Vec<&'static Slot>>,
    /// The last sequence number given to a flush.
    seq: AtomicU64,
    /// Declared last: dropped (unmapped) after everything pointing into it.
    maps: Mutex<Vec<Mapping>>,
}

/// A shared, writable mapping of part of a file, unmapped when dropped.
/// (Unmapping also lets the file's lock go: a mapping keeps the open file,
/// and with it the `flock`, alive.)
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory of atomics, shared by design; the
// pointer is only read to make references to `Slot`s and the `Header`.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `mmap` and are unmapped once, here;
        // nothing points into the mapping any more (see `Inner`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// Maps `len` bytes of `file` from `offset`, shared and writable.
fn map(file: &File, offset: usize, len: usize) -> io::Result<Mapping> {
    use rustix::mm::{MapFlags, ProtFlags, mmap};
    // SAFETY: a fresh mapping chosen by the kernel (no address hint) of a
    // file this process opened read-write; only `Mapping` unmaps it.
    let p = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            file,
            offset as u64,
        )
    }
    .map_err(io::Error::from)?;
    Ok(Mapping { ptr: p.cast(), len })
}

/// The slots of a segment's mapping. The caller keeps `m` alive as long as
/// it uses the slice (the `'static` is this module's promise, see `Inner`).
fn slots_at(m: &Mapping) -> &'static [Slot] {
    assert_eq!(m.len, SEG_BYTES);
    // SAFETY: a live, page-aligned mapping of `SEG_BYTES` bytes, kept alive
    // by the caller while the slice is used; `Slot` is `repr(C)` of atomics,
    // valid for any bit pattern, and atomics may be shared between threads.
    unsafe { std::slice::from_raw_parts(m.ptr.cast::<Slot>(), SEG_SLOTS) }
}

/// The header of the first page's mapping; as `slots_at`.
fn header_at(m: &Mapping) -> &'static Header {
    assert_eq!(m.len, HEADER_BYTES);
    // SAFETY: as `slots_at`, for the first page of the file.
    unsafe { &*m.ptr.cast::<Header>() }
}

/// Reserves the blocks of `[offset, offset + len)` so that writing the
/// mapping later never meets a full disk (which would be a `SIGBUS`).
fn reserve(file: &File, offset: usize, len: usize) -> io::Result<()> {
    rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::empty(),
        offset as u64,
        len as u64,
    )
    .map_err(io::Error::from)
}

/// Takes the file for this process (released when the file is closed).
fn lock(file: &File, path: &Path) -> Result<(), JournalError> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(JournalError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn new_id() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // `RandomState` is seeded from the OS's randomness, per process.
    let mut out = [0u64; 2];
    for (i, o) in out.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *o = h.finish();
    }
    out
}

fn period_code(p: Period) -> u64 {
    (p.year().max(0) as u64) * 100 + u64::from(p.month())
}

fn period_of(code: u64) -> Option<Period> {
    Period::new(
        i32::try_from(code / 100).ok()?,
        u8::try_from(code % 100).ok()?,
    )
}

impl Slot {
    fn name(&self) -> Option<TenantId> {
        let len = usize::try_from(self.name_len.load(Relaxed)).ok()?;
        let mut bytes = [0u8; 64];
        for (i, w) in self.name.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
        }
        let s = std::str::from_utf8(bytes.get(..len)?).ok()?;
        TenantId::new(s).ok()
    }

    fn set_name(&self, id: &TenantId) {
        let mut bytes = [0u8; 64];
        let s = id.as_str().as_bytes();
        let n = s.len().min(64);
        bytes[..n].copy_from_slice(&s[..n]);
        for (i, w) in self.name.iter().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            w.store(u64::from_le_bytes(b), Relaxed);
        }
        self.name_len.store(n as u64, Relaxed);
    }

    fn clear(&self) {
        let zero = [0u64; FIELDS];
        self.live.store(&zero);
        self.committed.store(&zero);
        self.inflight.store(&zero);
        self.inflight_seq.store(0, Relaxed);
        self.period.store(0, Relaxed);
        self.name_len.store(0, Relaxed);
        for w in &self.name {
            w.store(0, Relaxed);
        }
    }

    /// What the sink has of this slot's counts, given the sink's mark.
    fn in_sink(&self, mark: u64) -> Raw {
        let committed = self.committed.load();
        let seq = self.inflight_seq.load(Relaxed);
        if seq == 0 || seq > mark {
            return committed;
        }
        let inflight = self.inflight.load();
        std::array::from_fn(|i| committed[i].max(inflight[i]))
    }
}

/// `live − in_sink` as a usage row to add, or `None` when nothing is missing.
fn missing(tenant: TenantId, period: Period, live: &Raw, have: &Raw) -> Option<Usage> {
    let d: Raw = std::array::from_fn(|i| live[i].saturating_sub(have[i]));
    if d.iter().all(|&n| n == 0) {
        return None;
    }
    let mut u = Usage::zero(tenant, period);
    u.requests = d[at::REQUESTS];
    for kind in Refusal::ALL {
        let n = d[at::REFUSED + kind.index()];
        if n > 0 {
            u.refused.insert(kind, n);
        }
    }
    u.errors = d[at::ERRORS..at::ERRORS + ERROR_KINDS].iter().sum();
    u.exec_time_ms = d[at::WALL_US] / 1000;
    u.fuel = d[at::FUEL];
    u.cpu_us = d[at::CPU_US];
    u.bytes_in = d[at::BYTES_IN];
    u.bytes_out = d[at::BYTES_OUT];
    u.cold_starts = d[at::COLD_STARTS];
    Some(u)
}

impl Journal {
    /// Creates this process's journal in `dir` (a file `NAME-ID.journal`,
    /// locked for as long as the journal lives), after handing `sink` what
    /// every earlier journal of that `name` in `dir` counted but never
    /// flushed: each file no live process holds is read, its missing counts
    /// are added to the sink's totals in one transaction together with its
    /// mark, and it is deleted. Call it before the meter's
    /// [`restore`](crate::Meter::restore), so the restored totals include
    /// the recovered counts.
    ///
    /// A file another process (or another meter of this one) still holds is
    /// left alone. A file that is not a journal of this version is moved
    /// aside (`Recovered::discarded`). When the sink fails, the file is left
    /// as it was and the error returned: nothing is lost, open again later.
    pub fn open(
        dir: impl AsRef<Path>,
        name: &str,
        sink: &dyn UsageSink,
    ) -> Result<(Journal, Recovered), JournalError> {
        let dir = dir.as_ref();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| JournalError::Io { path, source }
        };
        let mut recovered = Recovered::default();
        let prefix = format!("{name}-");
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "journal")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        old.sort();
        for path in old {
            Self::recover(&path, sink, &mut recovered)?;
        }

        let id = new_id();
        let id_hex = format!("{:016x}{:016x}", id[0], id[1]);
        let path = dir.join(format!("{name}-{id_hex}.journal"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        lock(&file, &path)?;
        let setup = || -> io::Result<(Mapping, Mapping)> {
            file.set_len((HEADER_BYTES + SEG_BYTES) as u64)?;
            reserve(&file, 0, HEADER_BYTES + SEG_BYTES)?;
            Ok((
                map(&file, 0, HEADER_BYTES)?,
                map(&file, HEADER_BYTES, SEG_BYTES)?,
            ))
        };
        let (hm, sm) = setup().map_err(io_err(&path))?;
        let h = header_at(&hm);
        h.version.store(VERSION, Relaxed);
        h.id[0].store(id[0], Relaxed);
        h.id[1].store(id[1], Relaxed);
        h.segments.store(1, Relaxed);
        h.magic.store(MAGIC, Release);
        let seg = slots_at(&sm);
        let inner = Inner {
            path,
            file,
            id: id_hex,
            header: h,
            segments: Mutex::new(vec![seg]),
            free: Mutex::new(seg.iter().rev().collect()),
            seq: AtomicU64::new(0),
            maps: Mutex::new(vec![hm, sm]),
        };
        Ok((
            Journal {
                inner: Arc::new(inner),
            },
            recovered,
        ))
    }

    /// Hands the sink what the journal at `path` is missing and deletes it,
    /// unless a live journal holds it.
    fn recover(
        path: &Path,
        sink: &dyn UsageSink,
        recovered: &mut Recovered,
    ) -> Result<(), JournalError> {
        let io_err = |source: io::Error| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            // Gone meanwhile (another process recovered it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(e)),
        };
        match lock(&file, path) {
            Ok(()) => {}
            Err(JournalError::InUse { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = file.metadata().map_err(io_err)?.len() as usize;
        let mut maps = Vec::new();
        let Some((h, segs)) = Self::check(&file, len, &mut maps).map_err(io_err)? else {
            let aside = path.with_extension(format!(
                "unreadable-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ));
            std::fs::rename(path, &aside).map_err(io_err)?;
            recovered.discarded.push(aside);
            return Ok(());
        };
        let id_hex = format!(
            "{:016x}{:016x}",
            h.id[0].load(Relaxed),
            h.id[1].load(Relaxed)
        );
        let sink_err = |source| JournalError::Sink {
            path: path.to_path_buf(),
            source,
        };
        let mark = sink.journal_mark(&id_hex).map_err(sink_err)?;
        let recovery = h.recovery.load(Relaxed);
        let mut rows = Vec::new();
        // A recovery the sink already has (its answer was lost): its counts
        // are in.
        if recovery == 0 || recovery > mark {
            for seg in &segs {
                for s in seg.iter().filter(|s| s.used.load(Acquire) == 1) {
                    let (Some(name), Some(p)) = (s.name(), period_of(s.period.load(Relaxed)))
                    else {
                        continue;
                    };
                    rows.extend(missing(name, p, &s.live.load(), &s.in_sink(mark)));
                }
            }
        }
        if !rows.is_empty() {
            let seq = mark.max(h.pending.load(Relaxed)) + 1;
            h.recovery.store(seq, Release);
            sink.add_marked(&rows, &JournalMark::new(id_hex.clone(), seq))
                .map_err(sink_err)?;
        }
        recovered.usage.extend(rows);
        drop(maps);
        std::fs::remove_file(path).map_err(io_err)?;
        // The mark was only needed while the file existed (a crash before
        // this line leaves one stale row, which nothing reads).
        let _ = sink.forget_mark(&id_hex);
        Ok(())
    }

    /// The header and segments of an existing file, or `None` when it is not
    /// a journal this build can read.
    #[allow(clippy::type_complexity)]
    /// Its mappings go into `maps`, which must outlive the references.
    fn check(
        file: &File,
        len: usize,
        maps: &mut Vec<Mapping>,
    ) -> io::Result<Option<(&'static Header, Vec<&'static [Slot]>)>> {
        if len < HEADER_BYTES || !(len - HEADER_BYTES).is_multiple_of(SEG_BYTES) {
            return Ok(None);
        }
        maps.push(map(file, 0, HEADER_BYTES)?);
        let h = header_at(&maps[0]);
        let segs = (len - HEADER_BYTES) / SEG_BYTES;
        if h.magic.load(Acquire) != MAGIC
            || h.version.load(Relaxed) != VERSION
            || h.segments.load(Relaxed) != segs as u64
        {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(segs);
        for k in 0..segs {
            maps.push(map(file, HEADER_BYTES + k * SEG_BYTES, SEG_BYTES)?);
            out.push(slots_at(&maps[k + 1]));
        }
        Ok(Some((h, out)))
    }

    /// The journal's id: the key of its mark in the sink.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Tenants holding a slot now.
    pub fn tenants(&self) -> usize {
        let segs = self.inner.segments.lock().len();
        segs * SEG_SLOTS - self.inner.free.lock().len()
    }

    /// A slot for `tenant`'s counters, or `None` when the file cannot grow
    /// (the tenant is then counted on the heap, as without a journal).
    pub(crate) fn attach(&self, tenant: &TenantId, period: Period) -> Option<SlotHandle> {
        let slot = {
            let mut free = self.inner.free.lock();
            match free.pop() {
                Some(s) => s,
                None => {
                    let seg = self.grow()?;
                    free.extend(seg.iter().skip(1).rev());
                    &seg[0]
                }
            }
        };
        slot.clear();
        slot.set_name(tenant);
        slot.period.store(period_code(period), Relaxed);
        slot.used.store(1, Release);
        Some(SlotHandle {
            journal: self.inner.clone(),
            slot,
        })
    }

    fn grow(&self) -> Option<&'static [Slot]> {
        let mut segs = self.inner.segments.lock();
        let offset = HEADER_BYTES + segs.len() * SEG_BYTES;
        let f = &self.inner.file;
        let grown = f
            .set_len((offset + SEG_BYTES) as u64)
            .and_then(|()| reserve(f, offset, SEG_BYTES))
            .and_then(|()| map(f, offset, SEG_BYTES));
        match grown {
            Ok(m) => {
                let seg = slots_at(&m);
                self.inner.maps.lock().push(m);
                segs.push(seg);
                self.inner.header.segments.store(segs.len() as u64, Release);
                Some(seg)
            }
            Err(e) => {
                // Keep the file a whole number of segments.
                let _ = f.set_len(offset as u64);
                warn_cannot_grow(&self.inner.path, &e);
                None
            }
        }
    }

    /// Begins flush number `seq` (the next one): records, for each tenant in
    /// its batch, the counters the batch was computed from.
    pub(crate) fn prepare<'a>(
        &self,
        batch: impl IntoIterator<Item = (&'a SlotHandle, &'a Raw)>,
    ) -> JournalMark {
        let seq = self.inner.seq.fetch_add(1, Relaxed) + 1;
        for (h, raw) in batch {
            let s = h.slot;
            // Several rows of one tenant (a closed month and the new one):
            // the later counters include the earlier.
            let prev = if s.inflight_seq.load(Relaxed) == seq {
                s.inflight.load()
            } else {
                [0; FIELDS]
            };
            let v: Raw = std::array::from_fn(|i| prev[i].max(raw[i]));
            s.inflight.store(&v);
            s.inflight_seq.store(seq, Release);
        }
        self.inner.header.pending.store(seq, Release);
        JournalMark::new(self.inner.id.clone(), seq)
    }

    /// Ends flush `mark` after the sink committed it.
    pub(crate) fn commit<'a>(
        &self,
        mark: &JournalMark,
        batch: impl IntoIterator<Item = &'a SlotHandle>,
    ) {
        for h in batch {
            let s = h.slot;
            if s.inflight_seq.load(Relaxed) == mark.seq {
                let have = s.in_sink(mark.seq);
                s.committed.store(&have);
            }
        }
        self.inner.header.done.store(mark.seq, Release);
    }
}

impl Journal {
    /// Ends flush `mark`, found committed after its answer was lost, for
    /// every slot it was prepared for (the meter no longer has the list).
    pub(crate) fn commit_found(&self, mark: &JournalMark) {
        for seg in self.inner.segments.lock().iter() {
            for s in seg.iter() {
                if s.used.load(Acquire) != 0 && s.inflight_seq.load(Relaxed) == mark.seq {
                    let have = s.in_sink(mark.seq);
                    s.committed.store(&have);
                }
            }
        }
        self.inner.header.done.fetch_max(mark.seq, Release);
    }
}

fn warn_cannot_grow(path: &Path, e: &io::Error) {
    eprintln!(
        "corral-metering: usage journal {} cannot grow ({e}); new tenants are counted in memory only",
        path.display()
    );
}

/// A tenant's slot in a [`Journal`]; gives the slot back when dropped, once
/// everything it counted has reached the sink.
pub(crate) struct SlotHandle {
    journal: Arc<Inner>,
    slot: &'static Slot,
}

impl std::fmt::Debug for SlotHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotHandle").finish_non_exhaustive()
    }
}

impl SlotHandle {
    pub(crate) fn live(&self) -> &Additive {
        &self.slot.live
    }

    pub(crate) fn set_period(&self, p: Period) {
        self.slot.period.store(period_code(p), Relaxed);
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        // Counts still missing from the sink stay in the file for the next
        // process to hand over; only a fully flushed slot is reused.
        if self.slot.live.load() == self.slot.committed.load() {
            self.slot.used.store(0, Release);
            self.journal.free.lock().push(self.slot);
        }
    }
}
