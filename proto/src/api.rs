//! Wire types of the controller's HTTP API (`/v1/...`), shared by the controller, the agent
//! and the `slipway` CLI. Pure serde types. Every struct accepts fields it does not know
//! (and ignores them), so a controller, agent or CLI one version apart can read what the
//! other sends; the signed release body (`crate::release::Release`, with its `AppSpec`) is
//! the exception and stays strict, because a signature covers it.

mod host;
pub mod logs;
mod rollout;

pub use host::{
    DesiredSetBody, HostInfo, HostLifecycle, HostStatus, LabelsRequest, Phase, RegisterRequest,
    StaleRelease, StatusRow, UnknownLifecycle,
};
pub use rollout::{RolloutAction, RolloutHost, RolloutInfo, RolloutState};

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
