//! One sync: fetch the branch, read every app's files at that commit, and release the apps
//! whose spec or image differ from what their newest git release carries. An app whose files
//! are invalid gets an error and nothing else; the other apps proceed.

use super::desired::{self, DesiredApp};
use super::repo::GitError;
use super::status::{AppSync, AppSyncState};
use super::{annotations as ann, defaults, GitOps};
use crate::api::AppState;
use crate::publish::release_body;
use crate::release::{self, ReleaseError};
use crate::store::StoreError;
use slipway_proto::Envelope;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// Who git releases are recorded as, in the audit log and `slipway.released-by`.
pub const ACTOR: &str = "gitops";

/// Why one app's git release failed (it is tried again on the next sync).
#[derive(Debug, thiserror::Error)]
pub enum GitReleaseError {
    #[error("storing spec of app {app}: {source}")]
    StoreSpec { app: String, source: StoreError },
    #[error("reading releases of app {app}: {source}")]
    ReadReleases { app: String, source: StoreError },
    #[error("stored release {app} seq {seq}: {reason}")]
    StoredRelease {
        app: String,
        seq: u64,
        reason: String,
    },
    #[error("recording the spec of app {app} in the audit log: {source}")]
    Audit { app: String, source: StoreError },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// Reads the repository and releases what changed; returns the per-app outcome.
/// Fails only when the repository itself cannot be read: then nothing is released.
pub(super) async fn sync_once(
    g: &GitOps,
    state: &AppState,
) -> Result<(String, Vec<AppSync>), GitError> {
    let commit = g.repo.fetch().await?;
    let dir = g.cfg.apps_dir();
    let entries = g.repo.tree(&commit, &dir).await?;
    let by_app = desired::files_by_app(&dir, &entries);
    let mut oids: Vec<&str> = by_app
        .values()
        .flatten()
        .filter(|(f, e)| {
            (f == defaults::APP_FILE || f == defaults::IMAGE_FILE)
                && e.size.is_some_and(|s| s <= defaults::MAX_FILE)
        })
        .map(|(_, e)| e.oid.as_str())
        .collect();
    oids.sort_unstable();
    oids.dedup();
    let blobs: HashMap<String, Vec<u8>> = oids
        .iter()
        .map(|o| o.to_string())
        .zip(g.repo.blobs(&oids).await?)
        .collect();
    let read = |oid: &str| blobs.get(oid).cloned();

    let previous = g.status();
    let prev_apps: BTreeMap<&str, &AppSync> =
        previous.apps.iter().map(|a| (a.app.as_str(), a)).collect();
    let same_commit = previous.commit.as_deref() == Some(commit.as_str());
    let mut out = Vec::new();
    for (app, files) in &by_app {
        // Same commit: only failed releases are worth another try.
        if let Some(p) = prev_apps
            .get(app.as_str())
            .filter(|p| same_commit && p.state != AppSyncState::Failed)
        {
            out.push((*p).clone());
            continue;
        }
        let outcome = match desired::parse_app(&dir, app, files, &read) {
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(app = %app, commit = %commit, %reason, "invalid desired state: nothing released for this app");
                AppSync {
                    app: app.clone(),
                    state: AppSyncState::Invalid,
                    seq: None,
                    commit: commit.clone(),
                    error: Some(reason),
                }
            }
            Ok(d) => match release_app(g, state, &commit, app, &d).await {
                Ok((st, seq)) => AppSync {
                    app: app.clone(),
                    state: st,
                    seq: Some(seq),
                    commit: commit.clone(),
                    error: None,
                },
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(app = %app, commit = %commit, %reason, "git release failed; will retry");
                    AppSync {
                        app: app.clone(),
                        state: AppSyncState::Failed,
                        seq: None,
                        commit: commit.clone(),
                        error: Some(reason),
                    }
                }
            },
        };
        out.push(outcome);
    }
    for gone in prev_apps.keys().filter(|a| !by_app.contains_key(**a)) {
        tracing::info!(app = %gone, commit = %commit, "app no longer in the repository; its releases stay as they are");
    }
    Ok((commit, out))
}

/// Releases `d` unless the app's newest git release already carries the same fingerprint.
async fn release_app(
    g: &GitOps,
    state: &AppState,
    commit: &str,
    app: &str,
    d: &DesiredApp,
) -> Result<(AppSyncState, u64), GitReleaseError> {
    if let Some(seq) = current_git_release(state, app, &d.fingerprint).await? {
        return Ok((AppSyncState::Unchanged, seq));
    }
    let (rec, changed) = state
        .store
        .apply_app(&d.spec, SystemTime::now())
        .await
        .map_err(|source| GitReleaseError::StoreSpec {
            app: app.into(),
            source,
        })?;
    if changed {
        state
            .store
            .audit(
                ACTOR,
                "app.apply",
                &format!("app/{app}"),
                &format!("spec version {} from commit {commit}", rec.version),
                SystemTime::now(),
            )
            .await
            .map_err(|source| GitReleaseError::Audit {
                app: app.into(),
                source,
            })?;
    }
    let app_dir = match g.cfg.apps_dir().as_str() {
        "" => app.to_string(),
        dir => format!("{dir}/{app}"),
    };
    let change = g.repo.last_change(commit, &app_dir).await?;
    let annotations = BTreeMap::from([
        (ann::REPO.to_string(), g.cfg.url.clone()),
        (ann::BRANCH.to_string(), g.cfg.branch.clone()),
        (ann::COMMIT.to_string(), commit.to_string()),
        (ann::CHANGE.to_string(), change.id.clone()),
        (ann::AUTHOR.to_string(), change.author.clone()),
        (ann::FINGERPRINT.to_string(), d.fingerprint.clone()),
    ]);
    let rec = release::create(state, ACTOR, app, &d.image, annotations).await?;
    tracing::info!(app, seq = rec.seq, image = %rec.image, commit, change = %change.id, author = %change.author, "git release published");
    Ok((AppSyncState::Released, rec.seq))
}

/// The seq of the app's newest release made by GitOps, when it has `fingerprint`. Releases
/// made by hand since then do not count: git only overrides them when the repository changes.
async fn current_git_release(
    state: &AppState,
    app: &str,
    fingerprint: &str,
) -> Result<Option<u64>, GitReleaseError> {
    let releases =
        state
            .store
            .releases(app)
            .await
            .map_err(|source| GitReleaseError::ReadReleases {
                app: app.into(),
                source,
            })?;
    for rec in releases.iter().rev() {
        let body = Envelope::from_json(rec.envelope.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|env| release_body(&env).map_err(|e| e.to_string()))
            .map_err(|reason| GitReleaseError::StoredRelease {
                app: app.into(),
                seq: rec.seq,
                reason,
            })?;
        if let Some(f) = body.annotations.get(ann::FINGERPRINT) {
            return Ok((f == fingerprint).then_some(rec.seq));
        }
    }
    Ok(None)
}
