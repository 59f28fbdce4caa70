//! Fleet rollouts: a release reaches its hosts in waves (canary, then batches), each wave only
//! once the previous one is live and past its bake window; too many failures halt it and roll
//! the hosts that got it back to the last good release.
//!
//! - [`plan`]: the stored rollout document and the pure rules that move it on.
//! - [`view`]: which release each host is told to run, rebuilt whenever a release or rollout
//!   changes; long-polls answer from it.
//! - [`driver`]: the loop (on the one replica holding the lead) that reads host phases,
//!   advances waves, halts and makes the rollback release.
//! - [`actions`]: `promote`, `pause`, `resume`, `abort`, and the plan as operators see it.

pub mod actions;
pub mod canary;
pub mod driver;
pub mod ensure;
pub mod isolate;
pub mod plan;
pub mod view;

pub use plan::{Kind, Rollout};
pub use view::View;

use crate::api::AppState;
use crate::defaults;
use crate::store::StoreError;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored rollout of {app} seq {seq} is corrupt: {reason}")]
    Corrupt {
        app: String,
        seq: u64,
        reason: String,
    },
    #[error("release {app} seq {seq}: {reason}")]
    Release {
        app: String,
        seq: u64,
        reason: String,
    },
}

/// `[rollout]` in `controller.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// A host of a started wave silent (no poll, no report) this long counts as failed.
    #[serde(default = "d_silent", with = "humantime_serde")]
    pub silent_after: Duration,
    /// Extra time over health deadline + drain + bake before a host that is not live fails.
    #[serde(default = "d_margin", with = "humantime_serde")]
    pub deploy_margin: Duration,
    /// How often the driving replica evaluates rollouts.
    #[serde(default = "d_tick", with = "humantime_serde")]
    pub tick: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            silent_after: d_silent(),
            deploy_margin: d_margin(),
            tick: d_tick(),
        }
    }
}

fn d_silent() -> Duration {
    defaults::ROLLOUT_SILENT_AFTER
}
fn d_margin() -> Duration {
    defaults::ROLLOUT_DEPLOY_MARGIN
}
fn d_tick() -> Duration {
    defaults::ROLLOUT_TICK
}

/// Shared by the API, the view builder and the driver.
pub struct Rollouts {
    pub cfg: RolloutConfig,
    /// Longest long-poll wait (from the config).
    pub long_poll_max_wait: Duration,
    /// A host silent this long is down (`host_down_after` in the config).
    pub host_down_after: Duration,
    view: watch::Sender<Arc<View>>,
    poke: Notify,
    /// A host reported a phase: the driver looks at once instead of at its next tick.
    report: Notify,
    /// Whether this replica holds the lead (set by the driver): only the lead drives
    /// rollouts, re-signs and syncs GitOps.
    lead: watch::Sender<bool>,
    /// Apps skipped because of their own errors (logged once each).
    pub errors: isolate::AppErrors,
}

impl Rollouts {
    pub fn new(
        cfg: RolloutConfig,
        long_poll_max_wait: Duration,
        host_down_after: Duration,
    ) -> Self {
        let (view, _) = watch::channel(Arc::new(View::default()));
        Self {
            cfg,
            long_poll_max_wait,
            host_down_after,
            view,
            poke: Notify::new(),
            report: Notify::new(),
            lead: watch::channel(false).0,
            errors: isolate::AppErrors::default(),
        }
    }

    /// Whether this replica leads now.
    pub fn leading(&self) -> bool {
        *self.lead.borrow()
    }

    /// Follows the lead: true while this replica holds it.
    pub fn lead(&self) -> watch::Receiver<bool> {
        self.lead.subscribe()
    }

    pub(crate) fn set_leading(&self, leading: bool) {
        self.lead
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// `last_seen` is rewritten at most this often: a quarter of the shorter of the silence
    /// and down deadlines, so a live host is never mistaken for a silent or down one, and
    /// never more often than needed.
    pub fn last_seen_grain(&self) -> Duration {
        (self.cfg.silent_after.min(self.host_down_after) / 4).min(defaults::LAST_SEEN_GRAIN)
    }

    /// Whether a host last heard from at `last_seen` is down at `now`.
    pub fn is_down(&self, last_seen: SystemTime, now: SystemTime) -> bool {
        now.duration_since(last_seen).unwrap_or_default() > self.host_down_after
    }

    /// A host's phase report was stored: wakes the driver (on this replica; the lead on
    /// another one sees it at its next tick).
    pub fn reported(&self) {
        self.report.notify_one();
    }

    /// A rollout changed here: rebuild the view and tell the other replicas.
    pub async fn changed(&self, state: &AppState) {
        self.poke.notify_one();
        if let Err(e) = state.store.notify_changed().await {
            tracing::warn!(error = %e, "could not notify the other controllers");
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::store::to_ms(SystemTime::now())
}

pub(crate) fn parse(app: &str, seq: u64, doc: &str) -> Result<Rollout, RolloutError> {
    serde_json::from_str(doc).map_err(|e| RolloutError::Corrupt {
        app: app.to_string(),
        seq,
        reason: e.to_string(),
    })
}

pub(crate) fn to_doc(r: &Rollout) -> String {
    serde_json::to_string(r).expect("rollout serializes")
}

/// Starts the view builder and the driver; both end when `shutdown` turns true.
pub fn spawn(
    state: AppState,
    shutdown: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    (
        tokio::spawn(view::run(state.clone(), shutdown.clone())),
        tokio::spawn(driver::run(state, shutdown)),
    )
}

/// Builds the first view before the API serves.
pub async fn init(state: &AppState) -> Result<(), RolloutError> {
    let v = View::build(state).await?;
    state.rollouts.view.send_replace(Arc::new(v));
    Ok(())
}
