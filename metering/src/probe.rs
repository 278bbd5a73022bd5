//! What the host has: RAM, CPUs, load, the data dir's disk, this process's RSS.

use std::path::{Path, PathBuf};

use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading of the host. Plain data, so tests build fake machines with
/// `Probe { ram_total: 4 << 30, cpus: 2, ..Probe::default() }`.
///
/// ```
/// use corral_metering::Probe;
/// let p = Probe { ram_total: 1000, ram_available: 150, disk_total: 100, disk_available: 50, ..Probe::default() };
/// assert_eq!(p.ram_used_ratio(), 0.85);
/// assert_eq!(p.disk_used_ratio(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// Physical RAM, bytes.
    pub ram_total: u64,
    /// RAM available to new allocations (free + reclaimable), bytes.
    pub ram_available: u64,
    /// Logical CPUs.
    pub cpus: u32,
    /// Load average over 1 minute.
    pub load_1: f64,
    /// Load average over 5 minutes.
    pub load_5: f64,
    /// Load average over 15 minutes.
    pub load_15: f64,
    /// CPU use across all CPUs since the previous probe, 0.0–1.0, less the
    /// node's own work for its operator (`operator_cpu_usage`): what the CPU
    /// threshold reads, so that deploying many apps does not make the node
    /// refuse apps.
    pub cpu_usage: f64,
    /// The part of the host's CPU use since the previous probe that was the
    /// node compiling deploys for its operator, 0.0–1.0 (already taken out
    /// of `cpu_usage`).
    pub operator_cpu_usage: f64,
    /// Size of the disk holding the data dir, bytes.
    pub disk_total: u64,
    /// Free space on that disk for this user, bytes.
    pub disk_available: u64,
    /// Space in use on that disk (total − free), bytes, as `df` counts it;
    /// 0 when unknown.
    pub disk_used: u64,
    /// This process's resident set, bytes.
    pub process_rss: u64,
    /// Size of the database (file plus WAL), bytes; 0 when not configured.
    pub db_bytes: u64,
}

fn ratio(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 / total as f64
    }
}

impl Probe {
    /// Fraction of RAM in use, 0.0–1.0 (0 when the total is unknown).
    pub fn ram_used_ratio(&self) -> f64 {
        ratio(
            self.ram_total.saturating_sub(self.ram_available),
            self.ram_total,
        )
    }

    /// Fraction of the data disk in use, 0.0–1.0 (0 when unknown): `df`'s
    /// Use%, `used / (used + available)`, when `disk_used` is known, so
    /// blocks reserved for root or held back by a thin-provisioned volume do
    /// not count as in use; else `(total − available) / total`.
    ///
    /// ```
    /// use corral_metering::Probe;
    /// let df = Probe { disk_total: 250, disk_used: 50, disk_available: 50, ..Probe::default() };
    /// assert_eq!(df.disk_used_ratio(), 0.5);
    /// ```
    pub fn disk_used_ratio(&self) -> f64 {
        if self.disk_used > 0 {
            return ratio(self.disk_used, self.disk_used + self.disk_available);
        }
        ratio(
            self.disk_total.saturating_sub(self.disk_available),
            self.disk_total,
        )
    }

    /// Database size over RAM size (0 when RAM is unknown).
    ///
    /// ```
    /// let p = corral_metering::Probe { ram_total: 10, db_bytes: 2000, ..Default::default() };
    /// assert_eq!(p.db_ram_ratio(), 200.0);
    /// ```
    pub fn db_ram_ratio(&self) -> f64 {
        ratio(self.db_bytes, self.ram_total)
    }
}

/// A source of [`Probe`] readings: [`SysinfoProbe`] on a real host, any
/// `FnMut() -> Probe` closure in tests.
///
/// ```
/// use corral_metering::{HostProbe, Probe};
/// let mut ram = 0;
/// let mut fake = move || { ram += 100; Probe { ram_total: ram, ..Probe::default() } };
/// assert_eq!(fake.probe().ram_total, 100);
/// assert_eq!(fake.probe().ram_total, 200);
/// ```
pub trait HostProbe: Send + 'static {
    /// Reads the host now.
    fn probe(&mut self) -> Probe;
}

impl<F: FnMut() -> Probe + Send + 'static> HostProbe for F {
    fn probe(&mut self) -> Probe {
        self()
    }
}

/// The real probe over `sysinfo`.
///
/// CPU use is measured between two calls, so the first reading reports 0.
///
/// ```
/// use corral_metering::{HostProbe, SysinfoProbe};
/// let mut probe = SysinfoProbe::new(std::env::temp_dir());
/// let p = probe.probe();
/// assert!(p.ram_total > 0 && p.cpus > 0);
/// assert!(p.ram_available <= p.ram_total);
/// ```
pub struct SysinfoProbe {
    sys: System,
    disks: Disks,
    data_dir: PathBuf,
    db_file: Option<PathBuf>,
    pid: Option<Pid>,
    operator: Option<OperatorCpu>,
}

/// CPU time to take out of the host's CPU use: a running total and where it
/// stood at the previous probe.
struct OperatorCpu {
    total: Box<dyn Fn() -> std::time::Duration + Send>,
    last: Option<(std::time::Instant, std::time::Duration)>,
}

impl std::fmt::Debug for SysinfoProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysinfoProbe")
            .field("data_dir", &self.data_dir)
            .field("db_file", &self.db_file)
            .field("pid", &self.pid)
            .field("operator_cpu", &self.operator.is_some())
            .finish_non_exhaustive()
    }
}

impl SysinfoProbe {
    /// Probes the host, and the disk that holds `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
        let mut sys = System::new();
        sys.refresh_cpu_usage();
        Self {
            sys,
            disks: Disks::new_with_refreshed_list(),
            data_dir,
            db_file: None,
            pid: sysinfo::get_current_pid().ok(),
            operator: None,
        }
    }

    /// Takes the CPU time `total` reports (a running total, such as
    /// [`corral::Registry`]'s compile time) out of `cpu_usage`, and reports
    /// it as `operator_cpu_usage`: work the operator asked for is not load.
    ///
    /// ```
    /// use std::time::Duration;
    /// use corral_metering::{HostProbe, SysinfoProbe};
    /// let mut probe = SysinfoProbe::new(std::env::temp_dir())
    ///     .with_operator_cpu(|| Duration::from_secs(3600));
    /// let _ = probe.probe();
    /// let p = probe.probe();
    /// assert_eq!(p.operator_cpu_usage, 0.0, "the total did not move");
    /// assert!((0.0..=1.0).contains(&p.cpu_usage));
    /// ```
    ///
    /// [`corral::Registry`]: https://docs.rs/corral
    #[must_use]
    pub fn with_operator_cpu(
        mut self,
        total: impl Fn() -> std::time::Duration + Send + 'static,
    ) -> Self {
        self.operator = Some(OperatorCpu {
            total: Box::new(total),
            last: None,
        });
        self
    }

    /// Also measures the SQLite database at `path` (the file plus its `-wal`).
    #[must_use]
    pub fn with_db_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.db_file = Some(path.into());
        self
    }

    /// (total, available, used) of the disk holding the data dir: `statvfs`
    /// of the data dir (or its nearest existing parent) where there is one,
    /// else sysinfo's list of mounts (which knows no "used").
    fn disk_of(&self) -> (u64, u64, u64) {
        if let Some(d) = statvfs_of(&self.data_dir) {
            return d;
        }
        let dir = std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        self.disks
            .list()
            .iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map_or((0, 0, 0), |d| (d.total_space(), d.available_space(), 0))
    }
}

#[cfg(unix)]
fn statvfs_of(dir: &Path) -> Option<(u64, u64, u64)> {
    // The data dir may not exist yet (first start): ask about its parent.
    let abs = std::path::absolute(dir).ok()?;
    let st = abs.ancestors().find_map(|p| rustix::fs::statvfs(p).ok())?;
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let total = st.f_blocks.saturating_mul(unit);
    let free = st.f_bfree.saturating_mul(unit);
    let available = st.f_bavail.saturating_mul(unit);
    (total > 0).then(|| (total, available, total.saturating_sub(free)))
}

#[cfg(not(unix))]
fn statvfs_of(_dir: &Path) -> Option<(u64, u64, u64)> {
    None
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

impl HostProbe for SysinfoProbe {
    fn probe(&mut self) -> Probe {
        self.sys.refresh_memory();
        self.sys.refresh_cpu_usage();
        self.disks.refresh(true);
        let load = System::load_average();
        let process_rss = self.pid.map_or(0, |pid| {
            self.sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_memory(),
            );
            self.sys.process(pid).map_or(0, |p| p.memory())
        });
        let (disk_total, disk_available, disk_used) = self.disk_of();
        let db_bytes = self.db_file.as_deref().map_or(0, |db| {
            let mut wal = db.as_os_str().to_owned();
            wal.push("-wal");
            file_len(db) + file_len(Path::new(&wal))
        });
        let cpus = match self.sys.cpus().len() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let host_cpu = f64::from(self.sys.global_cpu_usage() / 100.0).clamp(0.0, 1.0);
        let operator_cpu = self
            .operator
            .as_mut()
            .map_or(0.0, |o| o.usage_since_last(cpus))
            .min(host_cpu);
        Probe {
            ram_total: self.sys.total_memory(),
            ram_available: self.sys.available_memory(),
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            load_1: load.one,
            load_5: load.five,
            load_15: load.fifteen,
            cpu_usage: host_cpu - operator_cpu,
            operator_cpu_usage: operator_cpu,
            disk_total,
            disk_available,
            disk_used,
            process_rss,
            db_bytes,
        }
    }
}

impl OperatorCpu {
    /// The total's growth since the previous call over the wall time since
    /// then times the CPUs, 0.0–1.0; 0 at the first call.
    fn usage_since_last(&mut self, cpus: usize) -> f64 {
        let now = std::time::Instant::now();
        let total = (self.total)();
        let usage = self.last.map_or(0.0, |(at, before)| {
            let wall = now.saturating_duration_since(at).as_secs_f64() * cpus.max(1) as f64;
            if wall <= 0.0 {
                0.0
            } else {
                (total.saturating_sub(before).as_secs_f64() / wall).clamp(0.0, 1.0)
            }
        });
        self.last = Some((now, total));
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_cpu_is_its_growth_over_wall_time_and_cpus() {
        let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t = total.clone();
        let mut o = OperatorCpu {
            total: Box::new(move || {
                std::time::Duration::from_millis(t.load(std::sync::atomic::Ordering::Relaxed))
            }),
            last: None,
        };
        assert_eq!(o.usage_since_last(2), 0.0, "no previous reading");
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // A whole CPU of compiling for as long as the sleep, on a 2-CPU box.
        let slept = start.elapsed().as_millis() as u64;
        total.store(slept, std::sync::atomic::Ordering::Relaxed);
        let u = o.usage_since_last(2);
        assert!((0.4..=0.5).contains(&u), "{u}");
        // More than the wall time allows is clamped to all of it.
        total.fetch_add(100_000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(o.usage_since_last(2), 1.0);
    }
}
