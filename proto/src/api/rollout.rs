//! Rollout wire types: where a rollout stands, its plan host by host, and operator actions.

use super::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a rollout stands (`GET /v1/apps/{app}/rollout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Waves start as the previous ones go live.
    Running,
    /// Operator paused: no new wave starts; started hosts carry on.
    Paused,
    /// The canary is live; the next wave waits for `slipway rollout promote`.
    AwaitingPromotion,
    /// Too many hosts failed (or an operator aborted): no further host gets the release.
    Halted,
    /// Every wave is live.
    Done,
    /// A newer release took over before this one finished.
    Superseded,
}

impl RolloutState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::AwaitingPromotion => "awaiting-promotion",
            RolloutState::Halted => "halted",
            RolloutState::Done => "done",
            RolloutState::Superseded => "superseded",
        }
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host of a rollout plan and what it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutHost {
    pub host: String,
    /// Index into `waves` (0 is the canary when the spec has one).
    pub wave: usize,
    /// Seq this host is told to run now for the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_seq: Option<u64>,
    /// Last phase the host reported for the app, with its seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// RFC 3339; set while the host serves `reported_seq` past its signature's expiry (stale),
    /// as in [`HostStatus::expired_at`](super::HostStatus::expired_at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
    /// Set when the rollout counted this host as failed, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// `GET /v1/apps/{app}/rollout`: the plan of the newest release and each host's phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutInfo {
    pub app: String,
    pub seq: u64,
    /// `release` for an ordinary release, `rollback` for the automatic rollback of a halt.
    pub kind: String,
    pub state: RolloutState,
    /// Waves: host ids in order; wave 0 is the canary when the spec has one.
    pub waves: Vec<Vec<String>>,
    /// Waves started so far.
    pub started: usize,
    /// Hosts counted as failed / tolerated.
    pub failures: u32,
    pub max_failures: u32,
    /// Why it halted, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The release hosts outside the started waves keep, and new hosts get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_seq: Option<u64>,
    /// The automatic rollback release made when it halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_seq: Option<u64>,
    pub hosts: Vec<RolloutHost>,
    /// RFC 3339.
    pub updated_at: String,
    /// Hosts of the app left out of this rollout (`cordoned`, `drained`, `down`, `removed`):
    /// no failure, and no new release from it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub left_out: BTreeMap<String, String>,
}

/// `POST /v1/apps/{app}/rollout/{action}`: promote, pause, resume or abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutAction {
    /// Start the next wave now: past a manual-promotion gate or a pause.
    Promote,
    Pause,
    Resume,
    /// Halt and roll the hosts that got the release back to the last good one.
    Abort,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_host_stale_mark_is_optional_on_the_wire() {
        let row = r#"{"host":"h1","wave":0,"desired_seq":4,"reported_seq":4,"phase":"live"}"#;
        let h: RolloutHost = serde_json::from_str(row).unwrap();
        assert_eq!(h.expired_at, None);
        assert_eq!(serde_json::to_string(&h).unwrap(), row);
        let stale = RolloutHost {
            expired_at: Some("2030-01-02T03:04:05Z".into()),
            ..h
        };
        let j = serde_json::to_string(&stale).unwrap();
        assert!(j.contains(r#""expired_at":"2030-01-02T03:04:05Z""#), "{j}");
        assert_eq!(serde_json::from_str::<RolloutHost>(&j).unwrap(), stale);
    }
}
