//! Signature expiry of what runs. A live release whose signature has passed keeps serving
//! (the data plane outlives the control plane) but is stale: no change is accepted until a
//! freshly signed release arrives. The watcher here says so in the log, once when an app
//! turns stale and again every [`defaults::STALE_WARN_EVERY`] while it stays so; the
//! reporter and `slipway-agent status` read the same [`expired_at`].

use crate::agent::Agent;
use crate::defaults;
use crate::state::AppState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The expiry of the app's live release when it has passed at `now` (the app is stale).
pub fn expired_at(s: &AppState, now: SystemTime) -> Option<SystemTime> {
    let rel = s.releases.get(&s.live_seq?)?;
    (now > rel.expires).then_some(rel.expires)
}

/// One stale app: its live seq and when that release's signature expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub seq: u64,
    pub expired_at: SystemTime,
}

/// What to log after looking at the apps once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notices {
    /// Apps to warn about: newly stale, or stale for another warning period.
    pub warn: Vec<(String, Stale)>,
    /// Apps that were stale and no longer are.
    pub cleared: Vec<(String, Stale)>,
}

/// Remembers when each stale app was last warned about, so warnings come at a low rate.
#[derive(Debug)]
pub struct StaleLog {
    every: Duration,
    warned: BTreeMap<String, (Stale, Instant)>,
}

impl StaleLog {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            warned: BTreeMap::new(),
        }
    }

    /// Takes the apps stale now; returns what to warn about and what cleared.
    pub fn observe(&mut self, stale: &BTreeMap<String, Stale>, now: Instant) -> Notices {
        let mut out = Notices::default();
        for (app, s) in stale {
            let due = match self.warned.get(app) {
                Some((prev, at)) if prev == s => now.duration_since(*at) >= self.every,
                _ => true,
            };
            if due {
                self.warned.insert(app.clone(), (*s, now));
                out.warn.push((app.clone(), *s));
            }
        }
        self.warned.retain(|app, (s, _)| {
            let still = stale.contains_key(app);
            if !still {
                out.cleared.push((app.clone(), *s));
            }
            still
        });
        out
    }
}

/// The apps stale at `now`.
pub fn stale_apps(agent: &Agent, now: SystemTime) -> BTreeMap<String, Stale> {
    let st = agent.state.lock().expect("state lock");
    st.apps
        .iter()
        .filter_map(|(app, s)| {
            let expired_at = expired_at(s, now)?;
            let seq = s.live_seq?;
            Some((app.clone(), Stale { seq, expired_at }))
        })
        .collect()
}

/// Watches every app's live release until the process ends.
pub async fn run(agent: Arc<Agent>) {
    let mut log = StaleLog::new(defaults::STALE_WARN_EVERY);
    loop {
        let stale = stale_apps(&agent, SystemTime::now());
        let notices = log.observe(&stale, Instant::now());
        for (app, s) in notices.warn {
            tracing::warn!(
                app,
                seq = s.seq,
                expired_at = %humantime::format_rfc3339_seconds(s.expired_at),
                "live release's signature expired: still serving it (stale); no change is accepted until a freshly signed release arrives"
            );
        }
        for (app, s) in notices.cleared {
            tracing::info!(
                app,
                seq = s.seq,
                "no longer serving an expired release (stale cleared)"
            );
        }
        tokio::time::sleep(defaults::STALE_CHECK_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_proto::{AppSpec, Release};

    fn app(live: Option<u64>, expires: SystemTime) -> AppState {
        let spec = AppSpec::from_toml(
            "name = \"web\"\nimage = \"reg/web\"\nlisten = 8080\ncontainer_port = 80\n",
        )
        .unwrap();
        let rel = Release {
            app: "web".parse().unwrap(),
            seq: 3,
            image: format!("reg/web@sha256:{}", "ab".repeat(32)),
            spec,
            issued_at: expires - Duration::from_secs(60),
            expires,
            key_set_version: 1,
            annotations: BTreeMap::new(),
        };
        AppState {
            accepted_seq: 3,
            live_seq: live,
            releases: BTreeMap::from([(3, rel)]),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_live_release_past_its_expiry_is_stale() {
        let now = SystemTime::now();
        let past = now - Duration::from_secs(5);
        assert_eq!(expired_at(&app(Some(3), past), now), Some(past));
        assert_eq!(
            expired_at(&app(Some(3), now + Duration::from_secs(5)), now),
            None
        );
        // Accepted but not live yet (or no longer): nothing serves it, nothing is stale.
        assert_eq!(expired_at(&app(None, past), now), None);
        assert_eq!(expired_at(&app(Some(2), past), now), None);
    }

    #[test]
    fn warns_when_turning_stale_then_at_a_low_rate_and_notes_when_it_clears() {
        let hour = Duration::from_secs(3600);
        let mut log = StaleLog::new(hour);
        let t0 = Instant::now();
        let s = Stale {
            seq: 3,
            expired_at: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
        };
        let stale = BTreeMap::from([("web".to_string(), s)]);
        let first = log.observe(&stale, t0);
        assert_eq!(first.warn, [("web".to_string(), s)]);
        assert!(log
            .observe(&stale, t0 + Duration::from_secs(1))
            .warn
            .is_empty());
        assert!(log.observe(&stale, t0 + hour / 2).warn.is_empty());
        assert_eq!(log.observe(&stale, t0 + hour).warn.len(), 1);
        assert!(log.observe(&stale, t0 + hour + hour / 2).warn.is_empty());
        // A different stale release (a newer seq that expired too) is news at once.
        let s2 = Stale { seq: 4, ..s };
        let newer = BTreeMap::from([("web".to_string(), s2)]);
        assert_eq!(
            log.observe(&newer, t0 + hour + hour / 2).warn,
            [("web".to_string(), s2)]
        );
        // Refreshed: cleared once, then quiet.
        let cleared = log.observe(&BTreeMap::new(), t0 + 2 * hour);
        assert_eq!(cleared.cleared, [("web".to_string(), s2)]);
        assert!(cleared.warn.is_empty());
        assert_eq!(
            log.observe(&BTreeMap::new(), t0 + 3 * hour),
            Notices::default()
        );
    }
}
