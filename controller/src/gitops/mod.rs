//! GitOps: the desired state of apps lives in a git repository ([`desired`]); the controller
//! mirrors one branch of it ([`repo`]) on an interval and whenever a valid webhook arrives
//! ([`webhook`], `api/webhooks.rs`), and turns every app whose spec or image changed into a
//! signed release made exactly like `POST /v1/apps/{app}/releases` ([`sync`]). The commit and
//! its author are recorded in the release's annotations.

pub mod config;
pub mod defaults;
pub mod desired;
pub mod repo;
pub mod status;
pub mod sync;
pub mod webhook;

pub use config::GitopsConfig;
pub use status::{AppSync, AppSyncState, SyncStatus};

use crate::api::AppState;
use repo::Repo;
use ring::hmac;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::sync::{watch, Notify};
use webhook::Deliveries;

/// Release annotations written by a git sync.
pub mod annotations {
    /// Repository URL the release was read from.
    pub const REPO: &str = "slipway.git.repo";
    pub const BRANCH: &str = "slipway.git.branch";
    /// Commit the desired state was read at (the branch head when synced).
    pub const COMMIT: &str = "slipway.git.commit";
    /// Newest commit at or before it that changed this app's directory ...
    pub const CHANGE: &str = "slipway.git.change";
    /// ... and its author, `Name <email>`: who released this.
    pub const AUTHOR: &str = "slipway.git.author";
    /// sha256 of the spec and image: equal means "already released".
    pub const FINGERPRINT: &str = "slipway.gitops.fingerprint";
}

#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("[gitops] {key}: {reason}")]
    Secret {
        key: &'static str,
        reason: webhook::SecretError,
    },
    #[error("creating {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Event kind of a webhook push; the lead syncs on each one, whichever replica took it.
pub const SYNC_REQUESTED: &str = "gitops.sync-requested";

/// The newest event id now (0 when none), read page by page.
async fn last_event_id(state: &AppState) -> u64 {
    let mut last = 0;
    loop {
        match state.store.events_since(last, None, PAGE).await {
            Ok(page) => {
                let full = page.len() == PAGE as usize;
                last = page.last().map_or(last, |e| e.id);
                if !full {
                    return last;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading events failed");
                return last;
            }
        }
    }
}

const PAGE: u32 = 1000;

/// Whether a webhook push was recorded after `seen`; moves `seen` on.
async fn sync_requested(state: &AppState, seen: &mut u64) -> bool {
    let mut asked = false;
    loop {
        let page = match state.store.events_since(*seen, None, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading events failed");
                return asked;
            }
        };
        asked |= page.iter().any(|e| e.kind == SYNC_REQUESTED);
        *seen = page.last().map_or(*seen, |e| e.id);
        if page.len() < PAGE as usize {
            return asked;
        }
    }
}

/// The running GitOps sync: its repository, webhook secrets and last outcome.
pub struct GitOps {
    pub cfg: GitopsConfig,
    repo: Repo,
    pub(crate) github_key: Option<hmac::Key>,
    pub(crate) gitlab_token: Option<Vec<u8>>,
    pub(crate) deliveries: Deliveries,
    wake: Notify,
    status: RwLock<SyncStatus>,
}

impl GitOps {
    /// Reads the webhook secrets and prepares `<data_dir>/gitops/` (mirror, delivery ids).
    pub fn open(cfg: &GitopsConfig, data_dir: &Path) -> Result<Self, GitopsError> {
        let dir = data_dir.join("gitops");
        std::fs::create_dir_all(&dir).map_err(|source| GitopsError::Dir {
            path: dir.clone(),
            source,
        })?;
        let secret = |key: &'static str, path: &Option<std::path::PathBuf>| {
            path.as_deref()
                .map(webhook::read_secret)
                .transpose()
                .map_err(|reason| GitopsError::Secret { key, reason })
        };
        let github_key = secret("github_secret_file", &cfg.github_secret_file)?
            .map(|s| hmac::Key::new(hmac::HMAC_SHA256, &s));
        let gitlab_token = secret("gitlab_token_file", &cfg.gitlab_token_file)?;
        Ok(GitOps {
            repo: Repo::new(
                dir.join("repo.git"),
                &cfg.url,
                &cfg.branch,
                cfg.credentials_file.clone(),
                cfg.git_timeout,
            ),
            github_key,
            gitlab_token,
            deliveries: Deliveries::load(dir.join("deliveries.json"), defaults::DELIVERIES_KEPT),
            wake: Notify::new(),
            status: RwLock::new(SyncStatus {
                url: cfg.url.clone(),
                branch: cfg.branch.clone(),
                path: cfg.apps_dir(),
                ..SyncStatus::default()
            }),
            cfg: cfg.clone(),
        })
    }

    /// Asks for a sync as soon as the current one (if any) ends.
    pub fn sync_now(&self) {
        self.wake.notify_one();
    }

    pub fn status(&self) -> SyncStatus {
        self.status.read().expect("gitops status lock").clone()
    }

    /// While this replica leads: syncs when it takes the lead, then every `poll_interval`, on
    /// every [`GitOps::sync_now`] and on every webhook another replica took
    /// ([`SYNC_REQUESTED`]), until shutdown. A repository that cannot be read, or a release that
    /// failed, is retried sooner, backing off from [`defaults::RETRY_START`] up to the poll
    /// interval; releases already made stay as they are.
    pub async fn run(self: Arc<Self>, state: AppState, mut shutdown: watch::Receiver<bool>) {
        let mut retry = defaults::RETRY_START;
        let mut lead = state.rollouts.lead();
        let mut remote = state.store.changes();
        let mut requests_seen = 0;
        loop {
            let leading = *lead.borrow_and_update();
            if !leading {
                tracing::info!("GitOps waits for this controller to lead");
                tokio::select! {
                    ok = async { lead.wait_for(|l| *l).await.is_ok() } => if !ok { return },
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                tracing::info!("GitOps syncs from this controller (it leads)");
                // Requests made before now are served by the sync about to run.
                requests_seen = last_event_id(&state).await;
            }
            let wait = if self.sync(&state).await {
                retry = defaults::RETRY_START;
                self.cfg.poll_interval
            } else {
                // The repository could not be read, or an app's release failed: retry sooner.
                let w = retry.min(self.cfg.poll_interval);
                retry = (retry * 2).min(self.cfg.poll_interval);
                w
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.wake.notified() => break,
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = async { let _ = lead.wait_for(|l| !*l).await; } => break,
                    _ = async {
                        match remote.as_mut() {
                            Some(rx) => { let _ = rx.changed().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                }
                // Something changed on another replica: a webhook it took, or anything else.
                if sync_requested(&state, &mut requests_seen).await {
                    tracing::info!("GitOps sync requested through another controller");
                    break;
                }
            }
        }
    }

    /// One sync, recorded in the status; false when the repository could not be read or an
    /// app's release failed (a registry or database hiccup), so the next try comes sooner.
    async fn sync(&self, state: &AppState) -> bool {
        let started = std::time::Instant::now();
        let result = sync::sync_once(self, state).await;
        let mut st = self.status.write().expect("gitops status lock");
        st.attempts += 1;
        match result {
            Ok((commit, apps)) => {
                if st.commit.as_deref() != Some(commit.as_str()) {
                    tracing::info!(commit = %commit, previous = ?st.commit, took = ?started.elapsed(), "synced desired state");
                }
                st.commit = Some(commit);
                st.synced_at = Some(crate::api::rfc3339(std::time::SystemTime::now()));
                st.error = None;
                st.failures = 0;
                let all_done = apps.iter().all(|a| a.state != AppSyncState::Failed);
                st.apps = apps;
                all_done
            }
            Err(e) => {
                st.failures += 1;
                tracing::warn!(url = %self.cfg.url, branch = %self.cfg.branch, failures = st.failures, error = %e, "reading the desired-state repository failed; releases stay as they are");
                st.error = Some(e.to_string());
                false
            }
        }
    }
}
