//! The blue-green swap of one app on this host: pull -> start beside the old -> health ->
//! switch the proxy -> drain the old -> bake with the old alive but unrouted -> discard the old.
//! A failure before the switch discards the new container; a failure during bake switches
//! back at once. A newer release arriving mid-deploy supersedes the one in flight.

use crate::agent::Agent;
use crate::defaults;
use crate::health::{self, Target};
use crate::state::{DeployPhase, DeployRecord};
use slipway_proto::{ImageRef, Release};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// What an app's task is asked to do.
#[derive(Debug)]
pub enum Cmd {
    /// Run this verified release (image already checked to be a digest reference).
    Deploy(Box<Release>),
    /// The app left the desired set: unroute it and discard its containers.
    Remove,
}

/// The routed container of an app before a swap, to drain, revert to, or discard.
struct Old {
    id: slipway_proto::ContainerId,
    addr: SocketAddr,
    seq: Option<u64>,
    grace: Duration,
}

/// Deploys `rel`. Returns the command that superseded it, if one arrived mid-deploy.
pub async fn deploy(agent: &Agent, rel: Release, rx: &mut mpsc::Receiver<Cmd>) -> Option<Cmd> {
    let app = rel.app.to_string();
    let seq = rel.seq;
    let image: ImageRef = match rel.image_ref() {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(app, seq, error = %e, "release refused");
            return None;
        }
    };
    let id = slipway_proto::ContainerId::for_release(&rel.app, seq, &image.digest);
    let st = agent.app_state(&app);
    if st.failed_seq == Some(seq) {
        tracing::debug!(app, seq, "release failed before; waiting for a newer one");
        return None;
    }
    if st.live_seq == Some(seq) && container_running(agent, &id).await {
        set_phase(agent, &app, DeployPhase::Live);
        return None;
    }
    let t0 = Instant::now();
    let mut rec = DeployRecord {
        seq,
        image: image.to_string(),
        container: id.clone(),
        started: SystemTime::now(),
        finished: None,
        outcome: DeployPhase::Pulling,
        error: None,
        swap_ms: None,
    };
    tracing::info!(app, seq, image = %image, container = %id, "deploy started");

    set_phase(agent, &app, DeployPhase::Pulling);
    let cached = agent.store.load(&image).ok().flatten();
    let pulled = match cached {
        Some(p) => Ok(p),
        None => agent.puller.pull(&image).await,
    };
    let pulled = match pulled {
        Ok(p) => p,
        Err(e) => {
            return fail(
                agent,
                rec,
                DeployPhase::Failed,
                format!("pull of {image} failed: {e}"),
            )
        }
    };

    set_phase(agent, &app, DeployPhase::Starting);
    let info = match agent
        .runtime
        .list()
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|c| c.id == id))
    {
        Some(c) if c.status == slipway_runtime::ContainerStatus::Running => {
            tracing::info!(app, seq, container = %id, "resuming with the container already running");
            c
        }
        leftover => {
            if leftover.is_some() {
                let _ = agent.runtime.discard(&id, Duration::ZERO).await;
            }
            let spec = slipway_runtime::ContainerSpec {
                id: id.clone(),
                release: &rel,
                image_config: &pulled.config,
                layer_dirs: &pulled.layer_dirs,
            };
            match agent.runtime.start(spec).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = agent.runtime.discard(&id, Duration::ZERO).await;
                    return fail(
                        agent,
                        rec,
                        DeployPhase::Failed,
                        format!("container {id} did not start: {e}"),
                    );
                }
            }
        }
    };
    let addr = SocketAddr::new(info.address, rel.spec.container_port);

    set_phase(agent, &app, DeployPhase::HealthChecking);
    let target = Target {
        container_id: &id,
        addr,
        runtime: &agent.runtime,
    };
    let health = tokio::select! {
        r = health::wait_healthy(&rel.spec.health, &target) => r,
        cmd = rx.recv() => {
            tracing::info!(app, seq, "superseded while health-checking; discarding {id}");
            discard(agent, &id, Duration::ZERO).await;
            finish(agent, rec, DeployPhase::Superseded, Some("superseded by a newer release".into()));
            return Some(cmd.unwrap_or(Cmd::Remove));
        }
    };
    if let Err(why) = health {
        discard(agent, &id, Duration::ZERO).await;
        return fail(
            agent,
            rec,
            DeployPhase::Failed,
            format!("container {id} unhealthy: {why}"),
        );
    }

    set_phase(agent, &app, DeployPhase::Switching);
    let old = old_upstream(agent, &app).await;
    let upstream = slipway_proxy::Upstream {
        id: id.clone(),
        addr,
    };
    if let Err(e) = switch(agent, &rel, upstream).await {
        discard(agent, &id, Duration::ZERO).await;
        return fail(
            agent,
            rec,
            DeployPhase::Failed,
            format!("proxy did not switch {app} to {id}: {e}"),
        );
    }
    let swap_ms = t0.elapsed().as_millis() as u64;
    rec.swap_ms = Some(swap_ms);
    agent.update(&app, |s| {
        s.live_seq = Some(seq);
        s.live_container = Some(id.clone());
        s.live_image = Some(image.to_string());
        s.last_error = None;
    });
    tracing::info!(app, seq, container = %id, swap_ms, "traffic switched to the new container");

    let old = old.filter(|o| o.id != id);
    if let Some(o) = &old {
        set_phase(agent, &app, DeployPhase::Draining);
        match agent
            .proxy
            .drain(&app, &o.id, rel.spec.swap.drain_timeout)
            .await
        {
            Ok(r) if r.drained => {
                tracing::info!(app, container = %o.id, waited_ms = r.waited.as_millis() as u64, "old container drained")
            }
            Ok(r) => {
                tracing::warn!(app, container = %o.id, cut = r.cut, "drain timed out; in-flight work was cut")
            }
            Err(e) => tracing::warn!(app, container = %o.id, error = %e, "drain failed"),
        }
    }

    set_phase(agent, &app, DeployPhase::Baking);
    match bake(agent, &rel, &target, rx).await {
        Bake::Passed => {}
        Bake::Superseded(cmd) => {
            tracing::info!(
                app,
                seq,
                "bake ended early by a newer release; keeping {id} live"
            );
            if let Some(o) = &old {
                discard(agent, &o.id, o.grace).await;
            }
            finish(agent, rec, DeployPhase::Live, None);
            return Some(cmd);
        }
        Bake::Failed(why) => {
            let Some(o) = old else {
                tracing::error!(
                    app,
                    seq,
                    "new container failing during bake and there is nothing to revert to: {why}"
                );
                let why = format!("failing during bake, no previous container to revert to: {why}");
                agent.update(&app, |s| s.last_error = Some(why.clone()));
                finish(agent, rec, DeployPhase::Live, Some(why));
                return None;
            };
            let back = slipway_proxy::Upstream {
                id: o.id.clone(),
                addr: o.addr,
            };
            if let Err(e) = switch(agent, &rel, back).await {
                tracing::error!(app, error = %e, "could not switch back to {}", o.id);
            }
            agent.update(&app, |s| {
                s.live_seq = o.seq;
                s.live_container = Some(o.id.clone());
                s.live_image = o
                    .seq
                    .and_then(|q| s.releases.get(&q))
                    .map(|r| r.image.clone());
            });
            let _ = agent
                .proxy
                .drain(&app, &id, rel.spec.swap.drain_timeout)
                .await;
            discard(agent, &id, rel.spec.stop_grace).await;
            return fail(
                agent,
                rec,
                DeployPhase::RolledBack,
                format!("rolled back to {}: {why}", o.id),
            );
        }
    }
    // Live once the bake passed: the old container is unrouted and drained, so the controller
    // may move on while it gets its stop grace period.
    finish(agent, rec, DeployPhase::Live, None);
    tracing::info!(app, seq, container = %id, total_ms = t0.elapsed().as_millis() as u64, "deploy live");
    if let Some(o) = &old {
        discard(agent, &o.id, o.grace).await;
    }
    gc(agent).await;
    None
}

enum Bake {
    Passed,
    Superseded(Cmd),
    Failed(String),
}

/// Watches the new container for the bake window: health probes, liveness and the 5xx rate of
/// its upstream in the proxy.
async fn bake(
    agent: &Agent,
    rel: &Release,
    target: &Target<'_>,
    rx: &mut mpsc::Receiver<Cmd>,
) -> Bake {
    let end = tokio::time::Instant::now() + rel.spec.swap.bake;
    let base = upstream_counts(agent, &rel.app, target.container_id)
        .await
        .unwrap_or_default();
    let mut failing = 0;
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = tokio::time::sleep(defaults::BAKE_CHECK_INTERVAL.min(end - tokio::time::Instant::now())) => {}
            cmd = rx.recv() => return Bake::Superseded(cmd.unwrap_or(Cmd::Remove)),
        }
        if let Err(why) = health::check_alive(&agent.runtime, target.container_id).await {
            return Bake::Failed(why);
        }
        let p = health::probe(&rel.spec.health, target).await;
        failing = if p.healthy { 0 } else { failing + 1 };
        if failing >= defaults::BAKE_UNHEALTHY_THRESHOLD {
            return Bake::Failed(format!("health check failing during bake: {}", p.output));
        }
        if let Some(now) = upstream_counts(agent, &rel.app, target.container_id).await {
            let requests = now.0.saturating_sub(base.0);
            let errors = now.1.saturating_sub(base.1);
            if requests >= defaults::BAKE_MIN_REQUESTS
                && errors as f64 > rel.spec.swap.max_error_rate * requests as f64
            {
                return Bake::Failed(format!(
                    "{errors} of {requests} requests answered 5xx during bake, over the {:.1}% limit",
                    rel.spec.swap.max_error_rate * 100.0
                ));
            }
        }
    }
    Bake::Passed
}

/// (requests, 5xx answers) seen by the proxy for one upstream of an app.
async fn upstream_counts(agent: &Agent, app: &str, upstream: &str) -> Option<(u64, u64)> {
    let stats = agent.proxy.stats(app).await.ok()?;
    let u = stats.upstreams.into_iter().find(|u| u.id == upstream)?;
    Some((u.requests.total(), u.requests.server_error))
}

async fn switch(
    agent: &Agent,
    rel: &Release,
    upstream: slipway_proxy::Upstream,
) -> Result<(), String> {
    let protocol = rel.spec.protocol;
    let mut last = String::new();
    for attempt in 0..5 {
        match agent
            .proxy
            .set_upstream(&rel.app, rel.spec.listen, protocol, upstream.clone())
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                tracing::warn!(app = %rel.app, attempt, error = %e, "proxy did not take the new upstream; retrying");
                tokio::time::sleep(defaults::RETRY_DELAY).await;
            }
        }
    }
    Err(last)
}

/// The upstream the proxy routes the app to now, with what is needed to revert or discard it.
async fn old_upstream(agent: &Agent, app: &str) -> Option<Old> {
    let routes = agent.proxy.routes().await.ok()?;
    let r = routes.into_iter().find(|r| r.app == app)?;
    let up = r.upstream?;
    let seq = seq_of(app, &up.id);
    let grace = seq
        .and_then(|s| {
            agent
                .app_state(app)
                .releases
                .get(&s)
                .map(|r| r.spec.stop_grace)
        })
        .unwrap_or(slipway_proto::spec::defaults::STOP_GRACE);
    Some(Old {
        id: up.id,
        addr: up.addr,
        seq,
        grace,
    })
}

/// The seq in a container id `<app>-<seq>-<short digest>`.
pub fn seq_of(app: &str, id: &str) -> Option<u64> {
    id.strip_prefix(app)?
        .strip_prefix('-')?
        .split('-')
        .next()?
        .parse()
        .ok()
}

async fn container_running(agent: &Agent, id: &str) -> bool {
    health::check_alive(&agent.runtime, id).await.is_ok()
}

pub async fn discard(agent: &Agent, id: &str, grace: Duration) {
    if let Err(e) = agent.runtime.discard(id, grace).await {
        tracing::error!(container = %id, error = %e, "discard failed; it will be retried at the next start");
    } else {
        tracing::info!(container = %id, "container discarded");
    }
}

fn set_phase(agent: &Agent, app: &str, phase: DeployPhase) {
    tracing::debug!(app, %phase, "phase");
    agent.update(app, |s| s.phase = Some(phase));
}

fn finish(agent: &Agent, mut rec: DeployRecord, outcome: DeployPhase, error: Option<String>) {
    rec.finished = Some(SystemTime::now());
    rec.outcome = outcome;
    rec.error = error;
    let app = app_of(&rec.container).to_string();
    agent.update(&app, |s| {
        s.phase = Some(if s.live_seq.is_some() {
            DeployPhase::Live
        } else {
            outcome
        });
        s.record(rec, defaults::HISTORY);
    });
}

/// The app in a container id `<app>-<seq>-<short digest>`.
fn app_of(id: &str) -> &str {
    id.rsplitn(3, '-').nth(2).unwrap_or_default()
}

/// Records a failed deploy: the release is not retried, the old container keeps serving.
fn fail(agent: &Agent, rec: DeployRecord, outcome: DeployPhase, why: String) -> Option<Cmd> {
    tracing::error!(container = %rec.container, seq = rec.seq, "deploy failed: {why}");
    let seq = rec.seq;
    agent.update(app_of(&rec.container), |s| {
        s.failed_seq = Some(seq);
        s.last_error = Some(why.clone());
    });
    finish(agent, rec, outcome, Some(why));
    None
}

/// Removes an app: unroute it, discard its containers, forget what is live (the accepted seq
/// stays, so an old release cannot come back).
pub async fn remove(agent: &Agent, app: &str) {
    set_phase(agent, app, DeployPhase::Removing);
    if let Err(e) = agent.proxy.remove_app(app).await {
        tracing::warn!(app, error = %e, "proxy did not remove the app");
    }
    if let Ok(list) = agent.runtime.list().await {
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
    let keep: Vec<slipway_proto::Digest> = {
        let st = agent.state.lock().expect("state lock");
        st.apps
            .values()
            .flat_map(|a| a.releases.values())
            .filter_map(|r| r.image_ref().ok().map(|i| i.digest))
            .collect()
    };
    match agent.store.gc(&keep) {
        Ok(r) => tracing::debug!(?r, "image gc"),
        Err(e) => tracing::warn!(error = %e, "image gc failed"),
    }
}
