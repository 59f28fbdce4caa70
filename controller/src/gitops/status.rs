//! What `GET /v1/gitops` answers and `slipway status` shows: the last sync and, per app,
//! what it did or why it could not.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub url: String,
    pub branch: String,
    pub path: String,
    /// Commit of the last successful read of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When that read finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<String>,
    /// Sync attempts since the controller started (polls and webhooks).
    pub attempts: u64,
    /// Why the last attempt could not read the repository (unreachable, no such branch ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts in a row that failed that way.
    pub failures: u32,
    pub apps: Vec<AppSync>,
    /// Whether this controller leads and so is the one that syncs; another replica's status
    /// (commit, attempts, apps) is the lead's as of when it last led, or empty.
    #[serde(default)]
    pub leading: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSync {
    pub app: String,
    pub state: AppSyncState,
    /// The release this app's desired state is in (new or earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Commit the app was last looked at in.
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppSyncState {
    /// A new release was made from this commit.
    Released,
    /// The repository wants what an earlier git release already runs.
    Unchanged,
    /// The app's files are invalid at this commit; nothing released until they change.
    Invalid,
    /// Releasing failed (registry down, unknown tag ...); retried on every sync.
    Failed,
}

impl std::fmt::Display for AppSyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppSyncState::Released => "released",
            AppSyncState::Unchanged => "unchanged",
            AppSyncState::Invalid => "invalid",
            AppSyncState::Failed => "failed",
        })
    }
}
