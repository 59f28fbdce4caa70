//! Reports each app's deploy phase to the controller whenever it changes, including when its
//! live release turns stale (signature expired) and when a fresh signature clears that.

use crate::agent::Agent;
use crate::expiry;
use crate::source::controller::ControllerSource;
use crate::state::{AppState, DeployPhase, PhaseReport};
use slipway_proto::api::{HostStatus, Phase as WirePhase};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the state is compared with what was last reported when nothing signals a
/// change (a signature turning stale, a failed post to retry).
pub const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// What the controller should hear about an app at `now`: the release in question, its phase
/// and, when it is live past its signature's expiry, that expiry (stale).
pub fn status_of(app: &str, s: &AppState, now: SystemTime) -> Option<HostStatus> {
    let seq = s.accepted_seq;
    if seq == 0 {
        return None;
    }
    let last = s.history.iter().find(|h| h.seq == seq);
    let reason = || {
        last.and_then(|h| h.error.clone())
            .or_else(|| s.last_error.clone())
            .unwrap_or_default()
    };
    let phase = if s.failed_seq == Some(seq) {
        let failed = match last.map(|h| h.outcome) {
            Some(DeployPhase::RolledBack) => DeployPhase::RolledBack,
            _ => DeployPhase::Failed,
        };
        Option::<WirePhase>::from(PhaseReport::new(failed, reason()))?
    } else {
        match s.phase? {
            // Live is reported only once this very seq is the live one.
            DeployPhase::Live if s.live_seq != Some(seq) => return None,
            p @ (DeployPhase::Failed | DeployPhase::RolledBack) => {
                Option::<WirePhase>::from(PhaseReport::new(p, reason()))?
            }
            p => Option::<WirePhase>::from(PhaseReport::new(p, String::new()))?,
        }
    };
    let image = s.releases.get(&seq).map(|r| r.image.clone());
    let expired_at = match phase {
        WirePhase::Live => {
            expiry::expired_at(s, now).map(|t| humantime::format_rfc3339_seconds(t).to_string())
        }
        _ => None,
    };
    Some(HostStatus {
        app: app.to_string(),
        seq,
        image,
        phase,
        expired_at,
    })
}

/// Runs until the process ends: every change of an app's (seq, phase) is posted once, as
/// soon as the state changes (so the controller's next wave need not wait for a poll); a
/// failed post is retried at the next interval.
pub async fn run(agent: Arc<Agent>, source: ControllerSource) {
    let mut sent: BTreeMap<String, HostStatus> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = agent.changed.notified() => {}
            _ = tokio::time::sleep(REPORT_INTERVAL) => {}
        }
        let now: Vec<HostStatus> = {
            let at = SystemTime::now();
            let st = agent.state.lock().expect("state lock");
            st.apps
                .iter()
                .filter_map(|(app, s)| status_of(app, s, at))
                .collect()
        };
        for status in now {
            if sent.get(&status.app) == Some(&status) {
                continue;
            }
            match source.report(&status).await {
                Ok(()) => {
                    tracing::debug!(app = status.app, seq = status.seq, phase = %status.phase, stale = status.expired_at.is_some(), "reported to the controller");
                    sent.insert(status.app.clone(), status);
                }
                Err(e) => {
                    tracing::debug!(app = status.app, error = %e, "status report failed; will retry")
                }
            }
        }
    }
}
