//! Controller metrics, served at `/metrics` (Prometheus text format, `slipway_controller_`
//! prefix, base units): releases, re-signs, phase reports, long-polls open, notifications,
//! store query latency, and — read from the store at each scrape — rollout state per app
//! and hosts by state.

use crate::api::AppState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use slipway_proto::api::RolloutState;
use std::future::Future;
use std::time::{Instant, SystemTime};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppStateLabels {
    pub app: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

fn store_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

/// Every state a rollout can be in, so each app has one series per state (1 for the current).
const ROLLOUT_STATES: &[RolloutState] = &[
    RolloutState::Running,
    RolloutState::Paused,
    RolloutState::AwaitingPromotion,
    RolloutState::Halted,
    RolloutState::Done,
    RolloutState::Superseded,
];

/// Controller metrics, served at `/metrics`.
pub struct Metrics {
    pub registry: Registry,
    pub releases: Counter,
    pub resigns: Counter,
    pub status_reports: Counter,
    pub long_polls: Gauge,
    pub notify_sent: Counter,
    pub notify_retries: Counter,
    pub notify_failed: Counter,
    pub notify_dropped: Counter,
    pub rollout_state: Family<AppStateLabels, Gauge>,
    pub hosts: Family<StateLabel, Gauge>,
    pub store_query: Family<OpLabel, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("slipway_controller");
        let m = Metrics {
            releases: Counter::default(),
            resigns: Counter::default(),
            status_reports: Counter::default(),
            long_polls: Gauge::default(),
            notify_sent: Counter::default(),
            notify_retries: Counter::default(),
            notify_failed: Counter::default(),
            notify_dropped: Counter::default(),
            rollout_state: Family::default(),
            hosts: Family::default(),
            store_query: Family::new_with_constructor(store_histogram),
            registry: Registry::default(),
        };
        r.register(
            "releases",
            "Releases created (including rollbacks)",
            m.releases.clone(),
        );
        r.register(
            "resigns",
            "Releases re-signed before expiry",
            m.resigns.clone(),
        );
        r.register(
            "status_reports",
            "Phase reports received from agents",
            m.status_reports.clone(),
        );
        r.register("long_polls", "Long-polls waiting now", m.long_polls.clone());
        r.register(
            "notifications_sent",
            "Notifications a receiver accepted",
            m.notify_sent.clone(),
        );
        r.register(
            "notification_retries",
            "Notification attempts that failed and were retried",
            m.notify_retries.clone(),
        );
        r.register(
            "notifications_failed",
            "Notifications given up after every attempt",
            m.notify_failed.clone(),
        );
        r.register(
            "notifications_dropped",
            "Notifications dropped because a target's queue was full",
            m.notify_dropped.clone(),
        );
        r.register(
            "rollout_state",
            "1 for the state of each app's latest rollout, 0 for the others",
            m.rollout_state.clone(),
        );
        r.register(
            "hosts",
            "Registered hosts by state (up: seen within rollout.silent_after; down)",
            m.hosts.clone(),
        );
        r.register(
            "store_query_duration_seconds",
            "Store query latency by operation",
            m.store_query.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

impl Metrics {
    /// Runs a store query and records how long it took under `op`.
    pub async fn time<T>(&self, op: &str, query: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = query.await;
        self.store_query
            .get_or_create(&OpLabel { op: op.into() })
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

/// Reads rollout states and hosts from the store into the gauges (before each scrape).
pub async fn refresh(state: &AppState) -> Result<(), crate::store::StoreError> {
    let m = &state.metrics;
    let apps = m.time("apps", state.store.apps()).await?;
    for a in &apps {
        let rec = m
            .time("latest_rollout", state.store.latest_rollout(&a.name))
            .await?;
        let Some(rec) = rec else { continue };
        let Ok(doc) = crate::rollout::parse(&rec.app, rec.seq, &rec.doc) else {
            continue;
        };
        for s in ROLLOUT_STATES {
            m.rollout_state
                .get_or_create(&AppStateLabels {
                    app: a.name.clone(),
                    state: s.as_str().into(),
                })
                .set(i64::from(*s == doc.state));
        }
    }
    let hosts = m.time("hosts", state.store.hosts()).await?;
    let now = SystemTime::now();
    let silent = state.rollouts.cfg.silent_after;
    let down = hosts
        .iter()
        .filter(|h| now.duration_since(h.last_seen).unwrap_or_default() > silent)
        .count() as i64;
    for (s, n) in [("up", hosts.len() as i64 - down), ("down", down)] {
        m.hosts
            .get_or_create(&StateLabel { state: s.into() })
            .set(n);
    }
    Ok(())
}
