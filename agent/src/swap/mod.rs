//! The blue-green swap of one app on this host: pull -> start beside the old -> health ->
//! switch the proxy -> drain the old -> bake with the old alive but unrouted -> discard the old.
//! A failure before the switch discards the new container; a failure during bake switches
//! back at once. A newer release arriving mid-deploy supersedes the one in flight. The phases
//! are in [`phases`]; the result is recorded and cleaned up after in one place, [`conclude`].

mod error;
mod phases;
#[cfg(test)]
mod tests;

pub use error::{BakeFailure, Cleanup, DeployError, Reverted};

use crate::agent::Agent;
use crate::defaults;
use crate::health;
use crate::secrets::Sealed;
use crate::state::{AppState, DeployPhase, DeployRecord};
use phases::{Deploy, Ended, Old};
use slipway_proto::{ContainerId, Release};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// What an app's task is asked to do.
#[derive(Debug)]
pub enum Cmd {
    /// Run this verified release (image already checked to be a digest reference), with
    /// what the desired set delivered of its secrets (sealed to this host).
    Deploy(Box<Release>, Sealed),
    /// The app left the desired set: unroute it and discard its containers.
    Remove,
}

/// Deploys `rel`, opening its `sealed` secrets only to start its container, and discards
/// the container it replaced. Returns the command that superseded it, if one arrived
/// mid-deploy.
pub async fn deploy(
    agent: &Agent,
    rel: Release,
    sealed: Sealed,
    rx: &mut mpsc::Receiver<Cmd>,
) -> Option<Cmd> {
    let (next, retire) = deploy_leaving_old(agent, rel, sealed, rx).await;
    if let Some(r) = retire {
        r.run(agent).await;
    }
    next
}

/// The container a live deploy replaced: unrouted and drained, waiting out its stop grace
/// before it is discarded. The app's task discards it beside its next command, so a newer
/// release never waits for an old container's grace period.
#[derive(Debug)]
pub struct Retire {
    id: ContainerId,
    grace: Duration,
}

impl Retire {
    /// Stops (within its grace) and discards the container.
    pub async fn run(self, agent: &Agent) {
        discard(agent, &self.id, self.grace).await;
    }
}

impl Old {
    fn retire(self) -> Retire {
        Retire {
            id: self.id,
            grace: self.grace,
        }
    }
}

/// [`deploy`], handing back the replaced container instead of discarding it.
pub async fn deploy_leaving_old(
    agent: &Agent,
    rel: Release,
    sealed: Sealed,
    rx: &mut mpsc::Receiver<Cmd>,
) -> (Option<Cmd>, Option<Retire>) {
    let (image, id) = match rel.image_ref().and_then(|i| Ok((i, rel.container_id()?))) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(app = %rel.app, seq = rel.seq, error = %e, "release refused");
            return (None, None);
        }
    };
    let st = agent.app_state(&rel.app);
    if st.failed_seq == Some(rel.seq) {
        tracing::debug!(app = %rel.app, seq = rel.seq, "release failed before; waiting for a newer one");
        return (None, None);
    }
    if st.live_seq == Some(rel.seq) && health::check_alive(&*agent.parts, &id).await.is_ok() {
        agent.update(&rel.app, |s| s.phase = Some(DeployPhase::Live));
        return (None, None);
    }
    let d = Deploy {
        agent,
        rel: &rel,
        sealed: &sealed,
        image,
        id,
    };
    let mut rec = DeployRecord {
        seq: rel.seq,
        image: d.image.to_string(),
        container: d.id.clone(),
        started: SystemTime::now(),
        finished: None,
        outcome: DeployPhase::Pulling,
        error: None,
        swap_ms: None,
    };
    tracing::info!(app = %rel.app, seq = rel.seq, image = %d.image, container = %d.id, "deploy started");
    let old = old_container(agent, &st, &d.id);
    let t0 = Instant::now();
    let result = run(&d, old.as_ref(), rx, &mut rec, t0).await;
    conclude(&d, result, old, rec, t0).await
}

/// The phases in order, up to the first failure.
async fn run(
    d: &Deploy<'_>,
    old: Option<&Old>,
    rx: &mut mpsc::Receiver<Cmd>,
    rec: &mut DeployRecord,
    t0: Instant,
) -> Result<(Ended, SocketAddr), DeployError> {
    let m = &d.agent.metrics;
    d.set_phase(DeployPhase::Pulling);
    let t = Instant::now();
    let pulled = d.pull().await?;
    m.phase("pull", t.elapsed());
    d.set_phase(DeployPhase::Starting);
    let t = Instant::now();
    let addr = d.start(&pulled).await?;
    m.phase("start", t.elapsed());
    d.set_phase(DeployPhase::HealthChecking);
    let t = Instant::now();
    tokio::select! {
        r = d.health(addr) => r?,
        cmd = rx.recv() => return Ok((Ended::Superseded(cmd.unwrap_or(Cmd::Remove)), addr)),
    }
    m.phase("health", t.elapsed());
    d.set_phase(DeployPhase::Switching);
    let t = Instant::now();
    d.switch(addr).await?;
    m.phase("switch", t.elapsed());
    let swap_ms = t0.elapsed().as_millis() as u64;
    rec.swap_ms = Some(swap_ms);
    tracing::info!(app = %d.rel.app, seq = d.rel.seq, container = %d.id, swap_ms, "traffic switched to the new container");
    if let Some(o) = old {
        d.set_phase(DeployPhase::Draining);
        let t = Instant::now();
        d.drain(&o.id).await;
        m.phase("drain", t.elapsed());
    }
    d.set_phase(DeployPhase::Baking);
    let t = Instant::now();
    let ended = d.bake(addr, rx).await?;
    m.phase("bake", t.elapsed());
    Ok((ended, addr))
}

/// Records how the deploy ended and cleans up after it: the one place that discards, reverts
/// and writes the outcome. Returns the command that superseded the deploy, if any, and the
/// container a live deploy replaced.
async fn conclude(
    d: &Deploy<'_>,
    result: Result<(Ended, SocketAddr), DeployError>,
    old: Option<Old>,
    rec: DeployRecord,
    t0: Instant,
) -> (Option<Cmd>, Option<Retire>) {
    let agent = d.agent;
    let (app, seq) = (&d.rel.app, d.rel.seq);
    match result {
        Ok((Ended::Live, _)) => {
            // Live once the bake passed: the old container is unrouted and drained, so the
            // controller may move on while it gets its stop grace period.
            finish(agent, app, rec, DeployPhase::Live, None);
            tracing::info!(app = %app, seq, container = %d.id, total_ms = t0.elapsed().as_millis() as u64, "deploy live");
            // Images are kept by release, not by container: the replaced container's image
            // stays while its release is among those kept.
            gc(agent).await;
            (None, old.map(Old::retire))
        }
        Ok((Ended::LiveEarly(cmd), _)) => {
            tracing::info!(app = %app, seq, "bake ended early by a newer release; keeping {} live", d.id);
            finish(agent, app, rec, DeployPhase::Live, None);
            (Some(cmd), old.map(Old::retire))
        }
        Ok((Ended::Superseded(cmd), _)) => {
            tracing::info!(app = %app, seq, "superseded while health-checking; discarding {}", d.id);
            discard(agent, &d.id, Duration::ZERO).await;
            let why = "superseded by a newer release".to_string();
            finish(agent, app, rec, DeployPhase::Superseded, Some(why));
            (Some(cmd), None)
        }
        Err(mut e) => {
            let cleanup = match &mut e {
                // Nothing was made: no container to discard.
                DeployError::Pull { .. } | DeployError::Secrets(_) => Cleanup::Pending,
                DeployError::Bake { reverted, .. } => {
                    let (to, cleanup) = revert(d, old.as_ref()).await;
                    *reverted = to;
                    cleanup
                }
                _ => try_discard(agent, &d.id, Duration::ZERO).await,
            };
            e.set_cleanup(cleanup);
            let why = e.to_string();
            match &e {
                DeployError::Bake {
                    reverted: Reverted::NothingToRevertTo,
                    ..
                } => {
                    // Nothing to go back to: the new container keeps serving, flagged.
                    tracing::error!(app = %app, seq, "new container failing during bake and there is nothing to revert to: {why}");
                    agent.update(app, |s| s.last_error = Some(why.clone()));
                    finish(agent, app, rec, DeployPhase::Live, Some(why));
                }
                DeployError::Bake { .. } => fail(agent, app, rec, DeployPhase::RolledBack, why),
                _ => fail(agent, app, rec, DeployPhase::Failed, why),
            }
            (None, None)
        }
    }
}

/// After a failed bake: traffic back to the old container, the new one drained and discarded.
async fn revert(d: &Deploy<'_>, old: Option<&Old>) -> (Reverted, Cleanup) {
    let agent = d.agent;
    let Some((o, addr)) = old.and_then(|o| Some((o, o.addr?))) else {
        return (Reverted::NothingToRevertTo, Cleanup::Kept);
    };
    let back = slipway_proxy::Upstream {
        id: o.id.clone(),
        addr,
    };
    if let Err(e) = d.route(back).await {
        tracing::error!(app = %d.rel.app, error = %e, "could not switch back to {}", o.id);
        let failed = Reverted::SwitchBackFailed {
            old: o.id.clone(),
            error: e.to_string(),
        };
        return (failed, Cleanup::Kept);
    }
    agent.update(&d.rel.app, |s| {
        s.live_seq = o.seq;
        s.live_container = Some(o.id.clone());
        s.live_image = o
            .seq
            .and_then(|q| s.releases.get(&q))
            .map(|r| r.image.clone());
    });
    d.drain(&d.id).await;
    let cleanup = try_discard(agent, &d.id, d.rel.spec.stop_grace).await;
    (Reverted::To(o.id.clone()), cleanup)
}

/// The container live before this deploy, as the agent's state records it (not the proxy).
fn old_container(agent: &Agent, st: &AppState, new: &ContainerId) -> Option<Old> {
    let id = st.live_container.clone().filter(|id| id != new)?;
    let rel = st.live_seq.and_then(|s| st.releases.get(&s));
    // From the runtime's record: no runc process on the way to the new container.
    let addr = rel.and_then(|r| {
        let ip = agent.parts.address(&id)?;
        Some(SocketAddr::new(ip, r.spec.container_port))
    });
    Some(Old {
        id,
        addr,
        seq: st.live_seq,
        grace: rel
            .map(|r| r.spec.stop_grace)
            .unwrap_or(slipway_proto::spec::defaults::STOP_GRACE),
    })
}

async fn try_discard(agent: &Agent, id: &ContainerId, grace: Duration) -> Cleanup {
    match agent.parts.discard(id, grace).await {
        Ok(()) => {
            tracing::info!(container = %id, "container discarded");
            Cleanup::Discarded
        }
        Err(e) => {
            tracing::error!(container = %id, error = %e, "discard failed; it will be retried at the next start");
            Cleanup::DiscardFailed(e.to_string())
        }
    }
}

/// Discards a container; a failure is logged (and retried at the next start).
pub async fn discard(agent: &Agent, id: &ContainerId, grace: Duration) {
    try_discard(agent, id, grace).await;
}

fn finish(
    agent: &Agent,
    app: &str,
    mut rec: DeployRecord,
    outcome: DeployPhase,
    error: Option<String>,
) {
    rec.finished = Some(SystemTime::now());
    rec.outcome = outcome;
    agent.metrics.deploy(outcome);
    rec.error = error;
    agent.update(app, |s| {
        s.phase = Some(if s.live_seq.is_some() {
            DeployPhase::Live
        } else {
            outcome
        });
        s.record(rec, defaults::HISTORY);
    });
}

/// Records a failed deploy: the release is not retried, the old container keeps serving.
fn fail(agent: &Agent, app: &str, rec: DeployRecord, outcome: DeployPhase, why: String) {
    tracing::error!(container = %rec.container, seq = rec.seq, "deploy failed: {why}");
    let seq = rec.seq;
    agent.update(app, |s| {
        s.failed_seq = Some(seq);
        s.last_error = Some(why.clone());
    });
    finish(agent, app, rec, outcome, Some(why));
}

/// Removes an app: unroute it, discard its containers, forget what is live (the accepted seq
/// stays, so an old release cannot come back).
pub async fn remove(agent: &Agent, app: &str) {
    agent.update(app, |s| s.phase = Some(DeployPhase::Removing));
    if let Err(e) = agent.parts.remove_app(app).await {
        tracing::warn!(app, error = %e, "proxy did not remove the app");
    }
    if let Ok(list) = agent.parts.containers().await {
        for c in list.into_iter().filter(|c| c.app == app) {
            let grace = agent
                .app_state(app)
                .releases
                .get(&c.seq)
                .map(|r| r.spec.stop_grace)
                .unwrap_or_default();
            discard(agent, &c.id, grace).await;
        }
    }
    agent.update(app, |s| {
        s.live_seq = None;
        s.live_container = None;
        s.live_image = None;
        s.phase = None;
    });
    tracing::info!(app, "app removed");
}

/// Drops images no longer referenced by the kept releases of any app.
pub async fn gc(agent: &Agent) {
    let mut keep: Vec<slipway_proto::Digest> = {
        let st = agent.state.lock().expect("state lock");
        st.apps
            .values()
            .flat_map(|a| a.releases.values())
            .filter_map(|r| r.image_ref().ok().map(|i| i.digest))
            .collect()
    };
    // Images pulled ahead for a later wave stay too.
    keep.extend(agent.prefetch.keep());
    match agent.parts.gc_images(&keep) {
        Ok(r) => tracing::debug!(?r, "image gc"),
        Err(e) => tracing::warn!(error = %e, "image gc failed"),
    }
}
