//! The expansion hook: tells the operator's automation that this node is
//! filling up, by an HTTP POST of a JSON event or by running a command with
//! the JSON on stdin. Delivery runs on its own thread with retries and
//! backoff; firing never blocks the caller.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{HostEvent, Probe};

/// Where the hook delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookTarget {
    /// POST the JSON to this `http://` URL (no TLS: keep it on a private network).
    Webhook {
        /// The URL.
        url: String,
    },
    /// Run `program args…` with the JSON on stdin; exit status 0 is success.
    Command {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// How the hook delivers and retries.
///
/// ```
/// use std::time::Duration;
/// use corral_metering::HookConfig;
/// let cfg = HookConfig::webhook("http://10.0.0.1:9000/expand").attempts(3).backoff(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(cfg.attempts, 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[non_exhaustive]
pub struct HookConfig {
    /// Where to deliver.
    pub target: HookTarget,
    /// Attempts per event, first one included. Default: 5.
    pub attempts: u32,
    /// Wait after the first failure, doubled after each. Default: 1 s.
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default: 60 s.
    pub max_backoff: Duration,
    /// Time limit of one attempt. Default: 10 s.
    pub timeout: Duration,
    /// Events waiting for delivery before new ones are dropped. Default: 64.
    pub queue: usize,
}

impl HookConfig {
    fn with(target: HookTarget) -> Self {
        Self {
            target,
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            queue: 64,
        }
    }

    /// POST to `url` (`http://` only).
    pub fn webhook(url: impl Into<String>) -> Self {
        Self::with(HookTarget::Webhook { url: url.into() })
    }

    /// Run `program` with `args`, the JSON on stdin.
    pub fn command(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with(HookTarget::Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        })
    }

    /// Attempts per event (at least 1). Default: 5.
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// First and longest wait between attempts. Default: 1 s and 60 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Time limit of one attempt. Default: 10 s.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Queue length (at least 1). Default: 64.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }
}

/// The JSON the hook delivers: the event's fields, then the node, the time
/// and the probe reading.
///
/// ```
/// use corral_metering::{HookPayload, HostEvent, Probe, Resource};
/// let p = HookPayload::new(
///     HostEvent::ThresholdCrossed { resource: Resource::Disk, value: 0.9, threshold: 0.8 },
///     "node-1", 1_000, Probe::default());
/// let v: serde_json::Value = serde_json::to_value(&p).unwrap();
/// assert_eq!(v["event"], "threshold_crossed");
/// assert_eq!(v["resource"], "disk");
/// assert_eq!(v["node"], "node-1");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct HookPayload {
    /// What happened.
    #[serde(flatten)]
    pub event: HostEvent,
    /// Which node.
    pub node: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: i64,
    /// The reading that triggered it.
    pub probe: Probe,
}

impl HookPayload {
    /// A payload.
    pub fn new(event: HostEvent, node: impl Into<String>, at_unix_ms: i64, probe: Probe) -> Self {
        Self {
            event,
            node: node.into(),
            at_unix_ms,
            probe,
        }
    }
}

/// Why firing or delivering failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The URL is not `http://` (TLS is not built in).
    #[error("unsupported hook URL {url:?}: only http:// is supported")]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// The delivery queue is full; this event was dropped.
    #[error("hook queue is full; event dropped")]
    QueueFull,
    /// The delivery thread is gone.
    #[error("hook delivery thread has stopped")]
    Stopped,
    /// The webhook answered with a non-2xx status.
    #[error("webhook answered HTTP {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The webhook could not be reached.
    #[error("webhook request failed")]
    Http(#[source] ureq::Error),
    /// The command could not be started or fed.
    #[error("hook command could not run")]
    Spawn(#[source] std::io::Error),
    /// The command exited unsuccessfully.
    #[error("hook command exited with {status}")]
    Exit {
        /// Its exit status.
        status: ExitStatus,
    },
    /// The command ran past the timeout and was killed.
    #[error("hook command timed out")]
    Timeout,
    /// The payload could not be encoded.
    #[error("could not encode hook payload")]
    Json(#[source] serde_json::Error),
}

/// Delivery counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookStats {
    /// Events accepted by [`ExpansionHook::fire`].
    pub fired: u64,
    /// Delivery attempts made.
    pub attempts: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Events abandoned after the last attempt.
    pub given_up: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    fired: AtomicU64,
    attempts: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
}

/// The running hook. Clones share the delivery thread, which ends once every
/// clone is dropped and the queue is drained.
///
/// ```no_run
/// use corral_metering::{ExpansionHook, HookConfig, HookPayload, HostEvent, Probe, Resource};
/// let hook = ExpansionHook::start(HookConfig::webhook("http://127.0.0.1:9000/expand")).unwrap();
/// let ev = HostEvent::ThresholdCrossed { resource: Resource::Ram, value: 0.82, threshold: 0.8 };
/// hook.fire(HookPayload::new(ev, "node-1", 0, Probe::default())).unwrap(); // returns at once
/// ```
#[derive(Debug, Clone)]
pub struct ExpansionHook {
    tx: SyncSender<HookPayload>,
    counters: Arc<Counters>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl ExpansionHook {
    /// Validates `cfg` and starts the delivery thread.
    pub fn start(cfg: HookConfig) -> Result<Self, HookError> {
        if let HookTarget::Webhook { url } = &cfg.target
            && !url.starts_with("http://")
        {
            return Err(HookError::UnsupportedUrl { url: url.clone() });
        }
        let (tx, rx) = mpsc::sync_channel::<HookPayload>(cfg.queue);
        let counters = Arc::new(Counters::default());
        let last_error = Arc::new(Mutex::new(None));
        let (c, le) = (counters.clone(), last_error.clone());
        std::thread::Builder::new()
            .name("corral-expansion-hook".into())
            .spawn(move || worker(cfg, rx, c, le))
            .map_err(HookError::Spawn)?;
        Ok(Self {
            tx,
            counters,
            last_error,
        })
    }

    /// Queues `payload` for delivery and returns at once; a full queue drops
    /// the event ([`HookError::QueueFull`]) rather than wait.
    pub fn fire(&self, payload: HookPayload) -> Result<(), HookError> {
        match self.tx.try_send(payload) {
            Ok(()) => {
                self.counters.fired.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Relaxed);
                Err(HookError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(HookError::Stopped),
        }
    }

    /// The delivery counters.
    pub fn stats(&self) -> HookStats {
        let c = &self.counters;
        HookStats {
            fired: c.fired.load(Relaxed),
            attempts: c.attempts.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            failed_attempts: c.failed_attempts.load(Relaxed),
            given_up: c.given_up.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
        }
    }

    /// The last delivery error, as text (for the admin page).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }
}

fn worker(
    cfg: HookConfig,
    rx: mpsc::Receiver<HookPayload>,
    c: Arc<Counters>,
    last_error: Arc<Mutex<Option<String>>>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .build()
        .into();
    for payload in rx {
        let body = match serde_json::to_vec(&payload) {
            Ok(b) => b,
            Err(e) => {
                *last_error.lock() = Some(HookError::Json(e).to_string());
                c.given_up.fetch_add(1, Relaxed);
                continue;
            }
        };
        let mut backoff = cfg.initial_backoff;
        for attempt in 1..=cfg.attempts {
            c.attempts.fetch_add(1, Relaxed);
            match deliver(&cfg, &agent, &body) {
                Ok(()) => {
                    c.delivered.fetch_add(1, Relaxed);
                    break;
                }
                Err(e) => {
                    c.failed_attempts.fetch_add(1, Relaxed);
                    *last_error.lock() = Some(error_chain(&e));
                    if attempt == cfg.attempts {
                        c.given_up.fetch_add(1, Relaxed);
                    } else {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(cfg.max_backoff);
                    }
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn deliver(cfg: &HookConfig, agent: &ureq::Agent, body: &[u8]) -> Result<(), HookError> {
    match &cfg.target {
        HookTarget::Webhook { url } => match agent
            .post(url)
            .header("content-type", "application/json")
            .send(body)
        {
            Ok(_) => Ok(()),
            Err(ureq::Error::StatusCode(status)) => Err(HookError::Status { status }),
            Err(e) => Err(HookError::Http(e)),
        },
        HookTarget::Command { program, args } => {
            let mut child = Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(HookError::Spawn)?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that exits without reading is judged by its exit status.
                let _ = stdin.write_all(body);
            }
            let deadline = Instant::now() + cfg.timeout;
            loop {
                match child.try_wait().map_err(HookError::Spawn)? {
                    Some(status) if status.success() => return Ok(()),
                    Some(status) => return Err(HookError::Exit { status }),
                    None if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(HookError::Timeout);
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}
