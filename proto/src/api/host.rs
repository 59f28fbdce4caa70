//! Host wire types: registering, desired sets, status and phases, the host list, lifecycle.

use super::HostSecret;
use crate::envelope::Envelope;
use crate::id::HostId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `POST /v1/hosts/{host}/register`: the agent announces itself and its labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Agent version, for `slipway hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The host's X25519 public key; secrets are sealed to it (none without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<crate::seal::HostPublicKey>,
}

/// `GET /v1/hosts/{host}/desired`: the signed releases aimed at a host now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DesiredSetBody {
    /// Opaque token; send it back as `?version=` to wait for a change.
    pub version: String,
    /// App name -> signed release envelope.
    pub releases: BTreeMap<String, Envelope>,
    /// App name -> secret name -> the pinned version sealed to this host alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, BTreeMap<String, HostSecret>>,
    /// App name -> the signed release a running rollout brings this host in a later wave.
    /// Not to be run: the agent verifies it and pulls its image ahead, so the wave only
    /// starts the container. Absent from older controllers (nothing is pulled ahead).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upcoming: BTreeMap<String, Envelope>,
}

/// Where one deploy of one release stands on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Pulling,
    Starting,
    HealthChecking,
    Live,
    Failed { reason: String },
    Baking,
    RolledBack { reason: String },
}

impl Phase {
    /// Short name as used on the wire for unit variants: `pulling`, `failed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pulling => "pulling",
            Phase::Starting => "starting",
            Phase::HealthChecking => "health-checking",
            Phase::Live => "live",
            Phase::Failed { .. } => "failed",
            Phase::Baking => "baking",
            Phase::RolledBack { .. } => "rolled-back",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Failed { reason } | Phase::RolledBack { reason } => {
                write!(f, "{}: {reason}", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

/// `POST /v1/hosts/{host}/status`: one phase of one deploy on the reporting host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub app: String,
    pub seq: u64,
    /// `repository@sha256:...` of the release being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub phase: Phase,
    /// RFC 3339 expiry of this release's signature, set only while the host serves it past
    /// that (stale): it keeps running and accepts no change until a freshly signed release
    /// arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
}

/// A row of `GET /v1/status`: the last phase a host reported for an app (the report's
/// fields, flat beside the host and when it came).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    pub host: HostId,
    #[serde(flatten)]
    pub status: HostStatus,
    /// RFC 3339.
    pub updated_at: String,
}

/// A release a host keeps serving past its signature's expiry: stale until a freshly signed
/// release of it (or a newer one) reaches the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaleRelease {
    pub app: String,
    pub seq: u64,
    /// RFC 3339.
    pub expired_at: String,
}

/// A row of `GET /v1/hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub host: HostId,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// RFC 3339.
    pub registered_at: String,
    /// RFC 3339 of the last register, poll or status report.
    pub last_seen: String,
    /// Releases this host reported serving past their signature's expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleRelease>,
    /// How the agent's version stands against the controller's (`+1 minor`, `-1 minor`),
    /// absent when they are the same minor version or the agent did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<String>,
    /// What an operator made of the host: active, cordoned or drained.
    #[serde(default)]
    pub lifecycle: HostLifecycle,
    /// Silent longer than the controller's `host_down_after`: left out of new rollouts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
}

/// `PUT /v1/hosts/{host}/labels` (`slipway hosts label HOST k=v...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsRequest {
    pub labels: BTreeMap<String, String>,
}

/// What an operator made of a host (`slipway hosts cordon|drain|uncordon`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostLifecycle {
    /// Gets new releases.
    #[default]
    Active,
    /// Gets no new releases; keeps what it runs.
    Cordoned,
    /// Runs nothing: its desired set is empty (and it gets no new releases).
    Drained,
}

impl HostLifecycle {
    pub fn as_str(&self) -> &'static str {
        match self {
            HostLifecycle::Active => "active",
            HostLifecycle::Cordoned => "cordoned",
            HostLifecycle::Drained => "drained",
        }
    }
}

impl fmt::Display for HostLifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle name that is none of `active`, `cordoned`, `drained`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown host lifecycle `{0}`: expected active, cordoned or drained")]
pub struct UnknownLifecycle(pub String);

impl std::str::FromStr for HostLifecycle {
    type Err = UnknownLifecycle;
    fn from_str(s: &str) -> Result<Self, UnknownLifecycle> {
        match s {
            "active" => Ok(HostLifecycle::Active),
            "cordoned" => Ok(HostLifecycle::Cordoned),
            "drained" => Ok(HostLifecycle::Drained),
            _ => Err(UnknownLifecycle(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_on_the_wire() {
        let s = HostStatus {
            app: "web".into(),
            seq: 3,
            image: None,
            phase: Phase::HealthChecking,
            expired_at: None,
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"app":"web","seq":3,"phase":"health-checking"}"#);
        let f: HostStatus = serde_json::from_str(
            r#"{"app":"web","seq":3,"phase":{"failed":{"reason":"unhealthy"}}}"#,
        )
        .unwrap();
        assert_eq!(f.phase.to_string(), "failed: unhealthy");
        // A field from a newer agent is ignored.
        assert!(serde_json::from_str::<HostStatus>(
            r#"{"app":"web","seq":3,"phase":"live","extra":1}"#
        )
        .is_ok());
        assert!(
            serde_json::from_str::<HostStatus>(r#"{"app":"web","seq":3,"phase":"nope"}"#).is_err()
        );
    }

    #[test]
    fn stale_is_sent_only_when_set_and_read_when_absent() {
        let live = r#"{"app":"web","seq":3,"phase":"live"}"#;
        let s: HostStatus = serde_json::from_str(live).unwrap();
        assert_eq!(s.expired_at, None);
        assert_eq!(serde_json::to_string(&s).unwrap(), live);
        let stale = HostStatus {
            expired_at: Some("2030-01-02T03:04:05Z".into()),
            ..s
        };
        let j = serde_json::to_string(&stale).unwrap();
        assert_eq!(
            j,
            r#"{"app":"web","seq":3,"phase":"live","expired_at":"2030-01-02T03:04:05Z"}"#
        );
        assert_eq!(serde_json::from_str::<HostStatus>(&j).unwrap(), stale);
    }
}
