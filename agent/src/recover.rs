//! After a restart: adopt the containers a previous agent left, trust the proxy for what is
//! routed, and clean up everything else. A healthy routed container is never stopped because
//! the agent restarted.

use crate::agent::Agent;
use crate::swap;
use std::time::Duration;

/// Runtime-level adoption at start: containers of known releases are kept, half-made ones are
/// cleaned up by the runtime.
pub async fn adopt(agent: &Agent) {
    let known: Vec<(String, u64)> = {
        let st = agent.state.lock().expect("state lock");
        st.apps
            .iter()
            .flat_map(|(app, s)| s.releases.keys().map(move |seq| (app.clone(), *seq)))
            .collect()
    };
    let is_known =
        |c: &slipway_runtime::ContainerInfo| known.iter().any(|(a, s)| *a == c.app && *s == c.seq);
    match agent.parts.adopt(&is_known).await {
        Ok(report) => tracing::info!(?report, "adopted containers from the previous run"),
        Err(e) => tracing::error!(error = %e, "adoption failed"),
    }
}

/// Per-app recovery: the proxy's route says which container is live; a container of the
/// accepted (newer) release is kept so its deploy can resume; everything else is discarded.
pub async fn recover_app(agent: &Agent, app: &str) {
    let routed = match agent.parts.routes().await {
        Ok(routes) => routes
            .into_iter()
            .find(|r| r.app == app)
            .and_then(|r| r.upstream)
            .map(|u| u.id),
        Err(e) => {
            tracing::warn!(app, error = %e, "proxy unreachable during recovery; leaving containers alone");
            return;
        }
    };
    let Ok(list) = agent.parts.containers().await else {
        return;
    };
    let st = agent.app_state(app);
    let mut live = None;
    for c in list.into_iter().filter(|c| c.app == app) {
        let running = c.status == slipway_runtime::ContainerStatus::Running;
        if Some(&c.id) == routed.as_ref() && running {
            live = Some((c.seq, c.id.clone(), c.image.clone()));
        } else if running
            && c.seq == st.accepted_seq
            && Some(c.seq) > st.live_seq
            && st.failed_seq != Some(c.seq)
        {
            tracing::info!(app, container = %c.id, "keeping the container of the release in flight; its deploy resumes");
        } else if c.status == slipway_runtime::ContainerStatus::Created
            && c.seq >= st.accepted_seq
            && Some(c.seq) > st.live_seq
            && st.failed_seq != Some(c.seq)
        {
            // Made ahead of this host's wave: its deploy starts it, or `prefetch` discards it
            // when its release stops being upcoming.
            tracing::debug!(app, container = %c.id, "keeping the container made ahead of the wave");
        } else {
            let grace = st
                .releases
                .get(&c.seq)
                .map(|r| r.spec.stop_grace)
                .unwrap_or(Duration::ZERO);
            tracing::info!(app, container = %c.id, "discarding a container left unrouted by the previous run");
            swap::discard(agent, &c.id, grace).await;
        }
    }
    if let Some((seq, id, image)) = live {
        agent.update(app, |s| {
            s.live_seq = Some(seq);
            s.live_container = Some(id);
            s.live_image = Some(image);
        });
    }
}
