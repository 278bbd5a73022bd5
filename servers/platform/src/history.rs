//! Per-app usage history at hourly resolution for 30 days, for the console's
//! usage charts: requests and errors per hour, kept in memory, sampled from
//! the meter once a minute and stored in the store's config table when an
//! hour ends and at shutdown, so the charts have data after a restart.
//!
//! Bounded: at most [`MAX_APPS`] apps × [`HOURS`] buckets of three numbers
//! (24 bytes each: about 8 MiB in memory and some 10 MB of JSON in the store
//! at the worst, written once an hour); an app past the cap has no history
//! until one is removed or its buckets age out. Only the operator and account tokens make apps, within their
//! tiers' `max_apps`, so no tenant request can grow it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use corral::TenantId;
use corral::platform::Platform;
use serde::{Deserialize, Serialize};

/// Hours kept per app: 30 days.
pub const HOURS: usize = 30 * 24;

/// Apps with a history at most.
pub const MAX_APPS: usize = 500;

/// The store's config key holding the history.
const KEY: &str = "console_usage_history";

/// One hour of one app: `(hour since the Unix epoch, requests, errors)`.
pub type Bucket = (i64, u64, u64);

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Hourly buckets, oldest first.
    apps: BTreeMap<TenantId, VecDeque<Bucket>>,
    /// The meter's month-to-date `(requests, errors)` at the last sample.
    #[serde(skip)]
    seen: BTreeMap<TenantId, (u64, u64)>,
    /// The hour of the last sample.
    #[serde(skip)]
    hour: i64,
}

/// The history of every app (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct UsageHistory {
    state: Mutex<State>,
}

fn now_hour() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 3600).unwrap_or(0)
}

impl UsageHistory {
    /// The history stored by an earlier run, or an empty one.
    pub fn load(p: &Platform) -> Self {
        let mut state: State = p.store().config_get(KEY).ok().flatten().unwrap_or_default();
        state.hour = now_hour();
        // Counted from now on: the meter restored its month, which the
        // stored buckets already hold.
        for u in p.meter().usages() {
            state.seen.insert(u.tenant.clone(), (u.requests, u.errors));
        }
        Self {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds what the meter counted since the last sample to this hour's
    /// buckets; returns true when an hour ended (time to [`save`](Self::save)).
    pub fn sample(&self, p: &Platform) -> bool {
        let hour = now_hour();
        let usages = p.meter().usages();
        let mut s = self.lock();
        let s = &mut *s;
        for u in usages {
            if p.app_tier(&u.tenant).is_none() {
                continue;
            }
            let (req, err) = (u.requests, u.errors);
            let (last_req, last_err) = s.seen.get(&u.tenant).copied().unwrap_or((0, 0));
            // A new month starts the meter from zero.
            let dr = if req >= last_req { req - last_req } else { req };
            let de = if err >= last_err { err - last_err } else { err };
            s.seen.insert(u.tenant.clone(), (req, err));
            if dr == 0 && de == 0 {
                continue;
            }
            if !s.apps.contains_key(&u.tenant) && s.apps.len() >= MAX_APPS {
                continue;
            }
            let ring = s.apps.entry(u.tenant.clone()).or_default();
            match ring.back_mut() {
                Some(b) if b.0 == hour => {
                    b.1 += dr;
                    b.2 += de;
                }
                _ => ring.push_back((hour, dr, de)),
            }
        }
        // Forget removed apps and hours past the window.
        s.apps.retain(|app, ring| {
            while ring.front().is_some_and(|b| b.0 <= hour - HOURS as i64) {
                ring.pop_front();
            }
            !ring.is_empty() && p.app_tier(app).is_some()
        });
        let ended = hour != s.hour;
        s.hour = hour;
        ended
    }

    /// Stores the history (one write to the store's config table).
    pub fn save(&self, p: &Platform) -> Result<(), corral::storage::StorageError> {
        let json = serde_json::to_value(&*self.lock()).unwrap_or_default();
        p.store().config_set(KEY, &json)
    }

    /// The app's hourly buckets, oldest first (hours with nothing counted
    /// are absent).
    pub fn of(&self, app: &TenantId) -> Vec<Bucket> {
        self.lock()
            .apps
            .get(app)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_serialises_compactly() {
        let mut s = State::default();
        let app: TenantId = "shop".parse().unwrap();
        s.apps.insert(app, VecDeque::from([(490_000, 12, 1)]));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"apps":{"shop":[[490000,12,1]]}}"#);
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back.apps.len(), 1);
    }
}
