//! Why a deploy failed, with what the clean-up afterwards did.

use crate::health::{AliveError, HealthError};
use slipway_image::ImageError;
use slipway_proto::{AppName, ContainerId, ImageRef};
use slipway_proxy::ProxyError;
use slipway_runtime::RuntimeError;
use std::fmt;

/// A deploy that did not go live, by phase. Before the switch the new container is discarded
/// and the old one keeps serving; during bake traffic goes back to the old one.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("pull of {image} failed: {source}")]
    Pull { image: ImageRef, source: ImageError },
    /// A secret could not be opened (missing, tampered, wrong version or digest): the new
    /// container is not made.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    #[error("container {id} did not start: {source}{cleanup}")]
    Start {
        id: ContainerId,
        source: RuntimeError,
        cleanup: Cleanup,
    },
    #[error("container {id} unhealthy: {source}{cleanup}")]
    Unhealthy {
        id: ContainerId,
        source: HealthError,
        cleanup: Cleanup,
    },
    #[error("proxy did not switch {app} to {id}: {source}{cleanup}")]
    Switch {
        app: AppName,
        id: ContainerId,
        source: ProxyError,
        cleanup: Cleanup,
    },
    #[error("{reverted}: {why}{cleanup}")]
    Bake {
        why: BakeFailure,
        reverted: Reverted,
        cleanup: Cleanup,
    },
}

/// What the new container did wrong during bake.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BakeFailure {
    #[error(transparent)]
    Died(#[from] AliveError),
    #[error("health check failing during bake: {0}")]
    Unhealthy(String),
    #[error("{errors} of {requests} requests answered 5xx during bake, over the {:.1}% limit", max_error_rate * 100.0)]
    Errors {
        errors: u64,
        requests: u64,
        max_error_rate: f64,
    },
}

/// What became of the new container after a failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cleanup {
    /// Not cleaned up yet (the phase just failed).
    #[default]
    Pending,
    Discarded,
    /// Discarding failed; it is retried at the next start.
    DiscardFailed(String),
    /// Kept: it is live and there was nothing to revert to.
    Kept,
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cleanup::DiscardFailed(e) => write!(f, "; discarding it failed too: {e}"),
            _ => Ok(()),
        }
    }
}

/// Where traffic went when the new container failed during bake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reverted {
    /// Not decided yet (the bake just failed).
    #[default]
    Pending,
    /// Back to the old container, which serves again.
    To(ContainerId),
    /// Switching back to the old container failed; the new one may still be routed.
    SwitchBackFailed { old: ContainerId, error: String },
    /// Nothing ran before: the new container stays live.
    NothingToRevertTo,
}

impl fmt::Display for Reverted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reverted::To(old) => write!(f, "rolled back to {old}"),
            Reverted::SwitchBackFailed { old, error } => {
                write!(f, "could not switch back to {old} ({error})")
            }
            Reverted::NothingToRevertTo | Reverted::Pending => {
                write!(f, "failing during bake, no previous container to revert to")
            }
        }
    }
}

impl DeployError {
    /// Records what the clean-up did to the new container.
    pub fn set_cleanup(&mut self, done: Cleanup) {
        match self {
            DeployError::Pull { .. } | DeployError::Secrets(_) => {}
            DeployError::Start { cleanup, .. }
            | DeployError::Unhealthy { cleanup, .. }
            | DeployError::Switch { cleanup, .. }
            | DeployError::Bake { cleanup, .. } => *cleanup = done,
        }
    }
}
