//! Thresholds with hysteresis over probe readings.

use std::time::{Duration, Instant};

use crate::Probe;

/// A resource watched by the [`ThresholdTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resource {
    /// RAM in use over RAM total.
    Ram,
    /// Data disk in use over its size.
    Disk,
    /// CPU use, sustained over [`Thresholds::cpu_window`].
    Cpu,
}

impl Resource {
    /// `"ram"`, `"disk"` or `"cpu"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Ram => "ram",
            Resource::Disk => "disk",
            Resource::Cpu => "cpu",
        }
    }
}

/// Where a resource counts as over (`fire`), and where it is re-armed (`rearm`,
/// below `fire`: the hysteresis band).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    /// Fraction at or above which the resource is over.
    pub fire: f64,
    /// Fraction below which it is back under, and may fire again.
    pub rearm: f64,
}

impl Level {
    /// A level firing at `fire` and re-arming below `rearm`.
    pub fn new(fire: f64, rearm: f64) -> Self {
        Self { fire, rearm }
    }
}

/// The thresholds, all configurable.
///
/// ```
/// use corral_metering::Thresholds;
/// let t = Thresholds::default();
/// assert_eq!((t.ram.fire, t.ram.rearm, t.disk.fire, t.cpu.fire), (0.80, 0.75, 0.80, 0.70));
/// assert_eq!(t.db_ram_ratio, 100.0);
/// assert!(t.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// RAM: default fires at 80%, re-arms below 75%.
    pub ram: Level,
    /// Disk: default fires at 80%, re-arms below 75%.
    pub disk: Level,
    /// CPU: default fires at 70% held for `cpu_window`, re-arms below 65%.
    pub cpu: Level,
    /// How long CPU must stay at or over `cpu.fire`. Default: 60 s.
    #[serde(with = "humantime_serde")]
    pub cpu_window: Duration,
    /// Database size over RAM size at which maintenance is required. Default: 100.
    pub db_ram_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            ram: Level::new(0.80, 0.75),
            disk: Level::new(0.80, 0.75),
            cpu: Level::new(0.70, 0.65),
            cpu_window: Duration::from_secs(60),
            db_ram_ratio: 100.0,
        }
    }
}

/// A threshold configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    /// `rearm` must be at most `fire`, and both in (0, 1].
    #[error("{resource:?}: rearm {rearm} must be ≤ fire {fire}, both in (0, 1]")]
    BadLevel {
        /// Which level.
        resource: Resource,
        /// Its fire fraction.
        fire: f64,
        /// Its re-arm fraction.
        rearm: f64,
    },
    /// The database/RAM ratio limit must be positive.
    #[error("db/ram ratio limit {0} must be positive")]
    BadRatio(f64),
}

impl Thresholds {
    /// Checks every level.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        for (resource, l) in [
            (Resource::Ram, self.ram),
            (Resource::Disk, self.disk),
            (Resource::Cpu, self.cpu),
        ] {
            let ok = l.fire > 0.0 && l.fire <= 1.0 && l.rearm > 0.0 && l.rearm <= l.fire;
            if !ok {
                return Err(ThresholdError::BadLevel {
                    resource,
                    fire: l.fire,
                    rearm: l.rearm,
                });
            }
        }
        if self.db_ram_ratio.is_nan() || self.db_ram_ratio <= 0.0 {
            return Err(ThresholdError::BadRatio(self.db_ram_ratio));
        }
        Ok(())
    }
}

/// What changed at one observation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostEvent {
    /// A resource went over its threshold (the expansion hook fires).
    ThresholdCrossed {
        /// Which.
        resource: Resource,
        /// Its reading, 0–1.
        value: f64,
        /// The threshold crossed.
        threshold: f64,
    },
    /// A resource went back under its re-arm level.
    ThresholdCleared {
        /// Which.
        resource: Resource,
        /// Its reading, 0–1.
        value: f64,
        /// The re-arm level.
        rearm: f64,
    },
    /// The database outgrew RAM by more than the limit: maintenance required.
    MaintenanceRequired {
        /// Database size over RAM size.
        ratio: f64,
        /// The limit.
        limit: f64,
    },
    /// The database/RAM ratio is back under the limit.
    MaintenanceCleared {
        /// Database size over RAM size.
        ratio: f64,
        /// The limit.
        limit: f64,
    },
}

impl HostEvent {
    /// Whether this event fires the expansion hook (crossings and
    /// maintenance, not recoveries).
    pub fn fires_hook(&self) -> bool {
        matches!(
            self,
            HostEvent::ThresholdCrossed { .. } | HostEvent::MaintenanceRequired { .. }
        )
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    over: bool,
    /// CPU: since when every reading was at or over `fire`.
    since: Option<Instant>,
}

/// The hysteresis state machine: feed it readings, it says what crossed.
///
/// ```
/// use std::time::Instant;
/// use corral_metering::{HostEvent, Probe, Resource, ThresholdTracker, Thresholds};
///
/// let mut t = ThresholdTracker::new(Thresholds::default()).unwrap();
/// let ram = |used: u64| Probe { ram_total: 100, ram_available: 100 - used, ..Probe::default() };
/// let now = Instant::now();
/// assert!(t.observe(&ram(70), now).is_empty());
/// assert!(matches!(t.observe(&ram(85), now)[..], [HostEvent::ThresholdCrossed { resource: Resource::Ram, .. }]));
/// assert!(!t.accepting_new_tenants());
/// assert!(t.observe(&ram(90), now).is_empty()); // already over: no second event
/// assert!(t.observe(&ram(77), now).is_empty()); // inside the band: still over
/// assert!(matches!(t.observe(&ram(60), now)[..], [HostEvent::ThresholdCleared { .. }]));
/// assert!(t.accepting_new_tenants());
/// ```
#[derive(Debug, Clone)]
pub struct ThresholdTracker {
    cfg: Thresholds,
    ram: State,
    disk: State,
    cpu: State,
    maintenance: bool,
}

impl ThresholdTracker {
    /// A tracker with everything under.
    pub fn new(cfg: Thresholds) -> Result<Self, ThresholdError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            ram: State::default(),
            disk: State::default(),
            cpu: State::default(),
            maintenance: false,
        })
    }

    /// The configuration.
    pub fn thresholds(&self) -> &Thresholds {
        &self.cfg
    }

    /// Takes one reading made at `at`; returns the crossings and recoveries.
    pub fn observe(&mut self, probe: &Probe, at: Instant) -> Vec<HostEvent> {
        let mut out = Vec::new();
        level(
            &mut self.ram,
            Resource::Ram,
            self.cfg.ram,
            probe.ram_used_ratio(),
            None,
            at,
            &mut out,
        );
        level(
            &mut self.disk,
            Resource::Disk,
            self.cfg.disk,
            probe.disk_used_ratio(),
            None,
            at,
            &mut out,
        );
        level(
            &mut self.cpu,
            Resource::Cpu,
            self.cfg.cpu,
            probe.cpu_usage,
            Some(self.cfg.cpu_window),
            at,
            &mut out,
        );
        let ratio = probe.db_ram_ratio();
        let limit = self.cfg.db_ram_ratio;
        if !self.maintenance && ratio > limit {
            self.maintenance = true;
            out.push(HostEvent::MaintenanceRequired { ratio, limit });
        } else if self.maintenance && ratio <= limit {
            self.maintenance = false;
            out.push(HostEvent::MaintenanceCleared { ratio, limit });
        }
        out
    }

    /// False while any resource is over.
    pub fn accepting_new_tenants(&self) -> bool {
        !(self.ram.over || self.disk.over || self.cpu.over)
    }

    /// Whether `resource` is over now.
    pub fn is_over(&self, resource: Resource) -> bool {
        match resource {
            Resource::Ram => self.ram.over,
            Resource::Disk => self.disk.over,
            Resource::Cpu => self.cpu.over,
        }
    }

    /// True while the database/RAM ratio is over its limit.
    pub fn maintenance_required(&self) -> bool {
        self.maintenance
    }
}

fn level(
    s: &mut State,
    resource: Resource,
    l: Level,
    value: f64,
    window: Option<Duration>,
    at: Instant,
    out: &mut Vec<HostEvent>,
) {
    if s.over {
        if value < l.rearm {
            *s = State::default();
            out.push(HostEvent::ThresholdCleared {
                resource,
                value,
                rearm: l.rearm,
            });
        }
        return;
    }
    if value < l.fire {
        s.since = None;
        return;
    }
    let since = *s.since.get_or_insert(at);
    let sustained = window.is_none_or(|w| at.saturating_duration_since(since) >= w);
    if sustained {
        s.over = true;
        out.push(HostEvent::ThresholdCrossed {
            resource,
            value,
            threshold: l.fire,
        });
    }
}
