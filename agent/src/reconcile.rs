//! The reconcile loop: read the desired set, verify every release before anything else,
//! enforce strictly increasing seq per app, and hand each app's work to its own task.
//! Every release is judged on its own: one that fails verification or has expired is refused
//! for its app only (which keeps running what it runs), and the rest of the set goes ahead.

use crate::agent::Agent;
use crate::defaults;
use crate::source::controller::ControllerSource;
use crate::source::dir::{DirSource, DirWatch};
use crate::source::Desired;
use crate::swap::{self, Cmd};
use slipway_proto::{Digest, Envelope, Release, VerifyError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Why a release in the desired set was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RefusedRelease {
    #[error("release for app `{app}` refused: {source}")]
    Verify {
        app: String,
        source: slipway_proto::VerifyError,
    },
    #[error("release file for app `{file_app}` holds a release of app `{body_app}`")]
    WrongApp { file_app: String, body_app: String },
    #[error(transparent)]
    Replay(#[from] slipway_proto::ReplayError),
    #[error("release {app} seq {seq} was already accepted with different content (replay of a reused seq)")]
    Conflict { app: String, seq: u64 },
}

/// What to do with a desired entry that was not refused.
#[derive(Debug)]
pub enum Accepted {
    /// Deploy this release (a no-op when it is already live).
    Deploy(Box<Release>),
    /// The very release already accepted and live, its signature now expired: it keeps
    /// serving (stale, see [`crate::expiry`]) and nothing changes until a freshly signed one
    /// arrives. Not an error: the controller could not re-sign it, or is down.
    Stale { seq: u64, expired_at: String },
}

/// Verifies one desired entry and checks it against the app's accepted seq.
pub fn accept(agent: &Agent, app: &str, bytes: &[u8]) -> Result<Accepted, RefusedRelease> {
    let hash = Digest::of(bytes).to_string();
    let st = agent.app_state(app);
    let verified = match Envelope::from_json(bytes)
        .and_then(|env| env.verify_release(&agent.trust, SystemTime::now()))
    {
        Ok(v) => v,
        // Expiry is checked after the signatures: these bytes were accepted before.
        Err(VerifyError::Expired {
            seq, expired_at, ..
        }) if st.accepted_envelope == hash
            && st.accepted_seq == seq
            && st.live_seq == Some(seq) =>
        {
            return Ok(Accepted::Stale { seq, expired_at });
        }
        Err(source) => {
            return Err(RefusedRelease::Verify {
                app: app.to_string(),
                source,
            })
        }
    };
    let rel = verified.release;
    if rel.app != app {
        return Err(RefusedRelease::WrongApp {
            file_app: app.to_string(),
            body_app: rel.app.to_string(),
        });
    }
    if rel.seq == st.accepted_seq && st.accepted_seq > 0 {
        if st.accepted_envelope == hash {
            return Ok(Accepted::Deploy(Box::new(rel)));
        }
        // The same release re-signed with a later expiry: keep the fresh signature, same deploy.
        let same = st.releases.get(&rel.seq).is_some_and(|old| {
            old.image == rel.image && old.spec == rel.spec && old.expires <= rel.expires
        });
        if !same {
            return Err(RefusedRelease::Conflict {
                app: app.to_string(),
                seq: rel.seq,
            });
        }
        agent.update(app, |s| {
            s.accepted_envelope = hash;
            s.releases.insert(rel.seq, rel.clone());
        });
        tracing::info!(app, seq = rel.seq, expires = %humantime::format_rfc3339_seconds(rel.expires), "release re-signed; signature refreshed");
        return Ok(Accepted::Deploy(Box::new(rel)));
    }
    slipway_proto::check_seq(
        app,
        rel.seq,
        (st.accepted_seq > 0).then_some(st.accepted_seq),
    )?;
    let keep = agent.cfg.keep_releases;
    agent.update(app, |s| {
        s.accepted_seq = rel.seq;
        s.accepted_envelope = hash;
        s.releases.insert(rel.seq, rel.clone());
        s.prune_releases(keep);
    });
    tracing::info!(app, seq = rel.seq, image = %rel.image, signers = verified.signers.len(), "release accepted");
    Ok(Accepted::Deploy(Box::new(rel)))
}

/// Per-app tasks, created on first use.
struct Apps {
    agent: Arc<Agent>,
    tasks: BTreeMap<String, mpsc::Sender<Cmd>>,
}

impl Apps {
    /// The app's task, started (and so recovered after a restart) on first use.
    fn task(&mut self, app: &str) -> &mpsc::Sender<Cmd> {
        let agent = self.agent.clone();
        self.tasks.entry(app.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(app_task(agent, app.to_string(), rx));
            tx
        })
    }

    async fn send(&mut self, app: &str, cmd: Cmd) {
        if self.task(app).send(cmd).await.is_err() {
            tracing::error!(app, "app task ended unexpectedly");
        }
    }
}

/// One app's task: recover what a previous agent left, then run commands one at a time; a
/// newer command that arrives mid-deploy supersedes the deploy in flight. The containers
/// live deploys replaced are stopped and discarded beside the next commands (see
/// [`swap::Retire`]); a removal waits for them first.
async fn app_task(agent: Arc<Agent>, app: String, mut rx: mpsc::Receiver<Cmd>) {
    crate::recover::recover_app(&agent, &app).await;
    let mut next: Option<Cmd> = None;
    let mut retiring: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let mut cmd = match next.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => c,
                None => return,
            },
        };
        while let Ok(newer) = rx.try_recv() {
            cmd = newer;
        }
        retiring.retain(|t| !t.is_finished());
        next = match cmd {
            Cmd::Deploy(rel, sealed) => {
                let (next, retire) = swap::deploy_leaving_old(&agent, *rel, sealed, &mut rx).await;
                if let Some(r) = retire {
                    let agent = agent.clone();
                    retiring.push(tokio::spawn(async move { r.run(&agent).await }));
                }
                next
            }
            Cmd::Remove => {
                for t in retiring.drain(..) {
                    let _ = t.await;
                }
                swap::remove(&agent, &app).await;
                None
            }
        };
    }
}

/// Where desired state comes from.
pub enum Source {
    Dir(DirSource),
    Controller(Box<ControllerSource>),
}

/// Why no desired set could be read this time (nothing changes).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the release directory {}: {source}", dir.display())]
    Dir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no desired set from the controller: {0:#}")]
    Controller(anyhow::Error),
}

impl Source {
    async fn next(&mut self) -> Result<Desired, SourceError> {
        match self {
            Source::Dir(d) => d.read().map_err(|source| SourceError::Dir {
                dir: d.dir().to_path_buf(),
                source,
            }),
            Source::Controller(c) => c
                .next()
                .await
                .map(|set| Desired {
                    releases: set.releases,
                    secrets: set.secrets,
                    upcoming: set.upcoming,
                })
                .map_err(SourceError::Controller),
        }
    }
}

/// Runs the reconcile loop until `shutdown` resolves. Containers and the proxy are left
/// running on shutdown: the data plane outlives the agent.
pub async fn run(
    agent: Arc<Agent>,
    mut source: Source,
    shutdown: impl std::future::Future<Output = ()>,
) {
    crate::recover::adopt(&agent).await;
    let mut apps = Apps {
        agent: agent.clone(),
        tasks: BTreeMap::new(),
    };
    let mut seen: BTreeMap<String, Digest> = BTreeMap::new();
    // Apps that were live before the restart but are no longer desired get removed.
    let known: Vec<String> = agent
        .state
        .lock()
        .expect("state lock")
        .apps
        .iter()
        .filter(|(_, s)| s.live_seq.is_some())
        .map(|(a, _)| a.clone())
        .collect();
    let mut first = true;
    // Set up before the first read, so no change after that read goes unnoticed.
    let mut watch = match &source {
        Source::Dir(d) => DirWatch::new(d.dir())
            .inspect_err(|e| {
                tracing::warn!(dir = %d.dir().display(), error = %e, "cannot watch the release directory; polling it only")
            })
            .ok(),
        Source::Controller(_) => None,
    };
    tokio::pin!(shutdown);
    loop {
        let desired = tokio::select! {
            _ = &mut shutdown => break,
            d = source.next() => d,
        };
        match desired {
            Ok(desired) => {
                apply(
                    &agent,
                    &mut apps,
                    &mut seen,
                    &desired,
                    first.then_some(&known[..]),
                )
                .await;
                agent.metrics.reconciled();
                first = false;
            }
            Err(e) => tracing::error!("{e}; changing nothing"),
        }
        if matches!(source, Source::Dir(_)) {
            let changed = async {
                match &mut watch {
                    // A watch that stopped (logged by its thread) leaves the poll alone.
                    Some(w) => {
                        if w.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = changed => tracing::debug!("release directory changed"),
                _ = tokio::time::sleep(defaults::DIR_POLL) => {}
            }
        }
    }
    tracing::info!("agent stopping; containers and proxy keep serving");
}

/// Applies one reading of the desired set: new or changed entries are verified and sent to
/// their app; apps that disappeared are removed.
async fn apply(
    agent: &Agent,
    apps: &mut Apps,
    seen: &mut BTreeMap<String, Digest>,
    desired: &Desired,
    known: Option<&[String]>,
) {
    for (app, bytes) in &desired.releases {
        let hash = Digest::of(bytes);
        if seen.get(app) == Some(&hash) {
            continue;
        }
        seen.insert(app.clone(), hash);
        match accept(agent, app, bytes) {
            Ok(Accepted::Deploy(rel)) => {
                let sealed = desired.secrets.get(app).cloned().unwrap_or_default();
                apps.send(app, Cmd::Deploy(rel, sealed)).await
            }
            Ok(Accepted::Stale { seq, expired_at }) => {
                tracing::info!(app, seq, expired_at, "live release's signature expired; keeping it (stale) until a freshly signed release arrives");
                apps.task(app);
            }
            Err(e) => {
                // The app keeps what it runs; its task still starts, so a restarted agent
                // recovers its containers as for any other app.
                let live = agent.app_state(app).live_seq;
                let keeping = match live {
                    Some(seq) => format!("keeping seq {seq}"),
                    None => "no release of it runs here".to_string(),
                };
                tracing::error!(app, live_seq = live, "{e}; nothing changes ({keeping})");
                agent.update(app, |s| s.last_error = Some(e.to_string()));
                apps.task(app);
            }
        }
    }
    crate::prefetch::apply(&apps.agent, &desired.upcoming);
    let gone: Vec<String> = seen
        .keys()
        .filter(|a| !desired.releases.contains_key(*a))
        .cloned()
        .collect();
    for app in gone {
        seen.remove(&app);
        tracing::info!(app, "release file removed; removing the app");
        apps.send(&app, Cmd::Remove).await;
    }
    for app in known.unwrap_or_default() {
        if !desired.releases.contains_key(app) {
            tracing::info!(app, "app no longer desired; removing it");
            apps.send(app, Cmd::Remove).await;
        }
    }
}
