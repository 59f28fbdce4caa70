//! Wire types of the controller's HTTP API (`/v1/...`), shared by the controller, the agent
//! and the `slipway` CLI. Pure serde types. Every struct accepts fields it does not know
//! (and ignores them), so a controller, agent or CLI one version apart can read what the
//! other sends; the signed release body (`crate::release::Release`, with its `AppSpec`) is
//! the exception and stays strict, because a signature covers it.

pub mod logs;

use crate::envelope::Envelope;
use crate::id::HostId;
use crate::spec::AppSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Body of every error answer: what failed and why, ready to show to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

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
}

/// One secret version sealed to one host (see [`crate::seal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSecret {
    pub version: u64,
    pub sealed: crate::seal::SealedSecret,
}

/// `GET /v1/apps/{app}/secrets`: one secret's newest version; never its value. Who set it
/// and when are shown to admins only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_at: Option<String>,
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

/// A row of `GET /v1/status`: the last phase a host reported for an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRow {
    pub host: HostId,
    pub app: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub phase: Phase,
    /// RFC 3339; set while the host serves this release past its signature's expiry (stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
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

/// `GET /v1/apps/{app}` and the answer to `POST /v1/apps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    /// Spec version: 1 for the first apply, +1 for each apply that changed it.
    pub version: u64,
    pub spec: AppSpec,
    /// RFC 3339.
    pub updated_at: String,
}

/// `POST /v1/apps/{app}/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateReleaseRequest {
    /// `REPOSITORY:TAG`, `REPOSITORY` (tag `latest`) or `REPOSITORY@sha256:...`.
    pub image: String,
    /// Provenance (git commit, ticket ...), copied into the signed release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `POST /v1/apps/{app}/rollback`: a new release of an older release's digest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Release to go back to; when absent, the newest earlier release whose image differs
    /// from the latest one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// Go out to every host in one wave, with no canary and no pause.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

/// A stored release, as listed by `GET /v1/apps/{app}/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub app: String,
    pub seq: u64,
    /// `repository@sha256:...`, as signed.
    pub image: String,
    /// What the operator asked for, e.g. `repo:v2`.
    pub requested: String,
    /// Spec version the release was built from.
    pub spec_version: u64,
    /// Set when this release is a rollback to that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// Token name that created it.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 expiry of the current signature (re-signed before it passes).
    pub expires: String,
    /// The current signed envelope.
    pub envelope: Envelope,
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, including tokens.
    Admin,
    /// Every `GET` but the agents' desired sets.
    ReadOnly,
    /// One host: register, read its desired set, write its status.
    Agent,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
            Role::Agent => "agent",
        }
    }
}

/// A role name that is none of `admin`, `read-only`, `agent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected admin, read-only or agent")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "admin" => Ok(Role::Admin),
            "read-only" => Ok(Role::ReadOnly),
            "agent" => Ok(Role::Agent),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTokenRequest {
    /// Unique name, recorded as the actor in the audit log.
    pub name: String,
    pub role: Role,
    /// Required for (and only for) `agent` tokens: the host it speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostId>,
}

/// A token as listed (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostId>,
    /// RFC 3339.
    pub created_at: String,
}

/// The answer to `POST /v1/tokens`: the secret, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// A row of `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    /// Token name.
    pub actor: String,
    /// e.g. `app.apply`, `release.create`, `release.rollback`, `token.create`.
    pub action: String,
    /// e.g. `app/web`, `release/web/3`, `host/h1`.
    pub object: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

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
    /// as in [`StatusRow::expired_at`].
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
