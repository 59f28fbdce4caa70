//! `/v1/hosts`: agents register, long-poll their desired set and report phases.

use super::{audit, parse_json, rfc3339, stored_host, AppState};
use crate::auth::Caller;
use crate::defaults;
use crate::error::{ApiError, ApiResult};
use crate::store::{HostRecord, StatusRecord};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use slipway_proto::api::{HostInfo, HostStatus, Phase, RegisterRequest, StaleRelease, StatusRow};
use slipway_proto::version;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// A host as `GET /v1/hosts` shows it; `down`: silent past `host_down_after`.
pub(super) fn info(h: HostRecord, stale: Vec<StaleRelease>, down: bool) -> ApiResult<HostInfo> {
    let skew = h
        .agent_version
        .as_deref()
        .and_then(|v| version::skew(version::VERSION, v).ok())
        .filter(|s| *s != version::Skew::Same)
        .map(|s| s.to_string());
    Ok(HostInfo {
        skew,
        host: stored_host(h.host)?,
        labels: h.labels,
        agent_version: h.agent_version,
        registered_at: rfc3339(h.registered_at),
        last_seen: rfc3339(h.last_seen),
        stale,
        lifecycle: h.lifecycle,
        down,
    })
}

/// Per host, the releases it last reported serving live past their signature's expiry.
fn stale_by_host(rows: Vec<StatusRecord>) -> BTreeMap<String, Vec<StaleRelease>> {
    let mut out: BTreeMap<String, Vec<StaleRelease>> = BTreeMap::new();
    for s in rows {
        if let (Phase::Live, Some(at)) = (&s.phase, s.expired_at) {
            out.entry(s.host).or_default().push(StaleRelease {
                app: s.app,
                seq: s.seq,
                expired_at: rfc3339(at),
            });
        }
    }
    out
}

/// Refuses an agent more than one minor version from this controller, before it registers
/// and is sent releases it may not understand.
pub(super) fn check_skew(host: &str, agent: &str) -> ApiResult<()> {
    let ours = version::VERSION;
    let refuse = |why: String| {
        ApiError::Conflict(format!(
            "agent on host {host} is version {agent}, controller is {ours}: {why}; the \
             controller serves agents one minor version older or newer: upgrade one side first"
        ))
    };
    match version::skew(ours, agent) {
        Ok(s) if s.supported() => Ok(()),
        Ok(s) => Err(refuse(format!("{s} apart"))),
        Err(e) => Err(refuse(e.to_string())),
    }
}

pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> ApiResult<Json<HostInfo>> {
    host.parse::<slipway_proto::HostId>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    caller.require_host(&host, "register as")?;
    let req: RegisterRequest = parse_json(&body)?;
    if let Some(v) = &req.agent_version {
        check_skew(&host, v)?;
    }
    let before = state.store.host(&host).await?;
    if let Some(b) = before.as_ref().filter(|b| b.labels_managed) {
        if let Some((k, v)) = req
            .labels
            .iter()
            .find(|(k, v)| b.labels.get(*k) != Some(*v))
        {
            return Err(ApiError::Forbidden(format!(
                "host `{host}` may not set label `{k}={v}`: its labels ({}) are set by the \
                 controller (join token or `slipway hosts label`); leave `labels` out of its \
                 agent.toml; nothing changed",
                super::join::label_list(&b.labels)
            )));
        }
    }
    let rec = state
        .store
        .register_host(
            &host,
            &req.labels,
            req.agent_version.as_deref(),
            SystemTime::now(),
        )
        .await?;
    if let Some(key) = &req.secret_key {
        state
            .store
            .set_host_secret_key(&host, &key.to_base64(), SystemTime::now())
            .await?;
    }
    if before.as_ref().map(|b| &b.labels) != Some(&rec.labels) {
        let labels = serde_json::to_string(&rec.labels).expect("labels serialize");
        audit(
            &state,
            &caller.name,
            "host.register",
            &format!("host/{host}"),
            &labels,
        )
        .await?;
    }
    if before.is_none() {
        crate::events::emit(
            &state,
            "host.joined",
            None,
            serde_json::json!({"host": host, "labels": rec.labels}),
        )
        .await;
    }
    tracing::info!(host, "host registered");
    if before.as_ref().is_some_and(|b| b.down_at.is_some()) {
        came_back(&state, &host).await;
    }
    Ok(Json(info(rec, Vec::new(), false)?))
}

/// Unknown parameters are ignored: a newer agent may send more.
#[derive(Deserialize)]
pub struct DesiredQuery {
    /// The version the agent holds; the answer waits while it is still current.
    version: Option<String>,
    /// How long to wait, e.g. `30s` (capped).
    wait: Option<String>,
}

/// `GET /v1/hosts/{host}/desired[?version=V&wait=30s]`: 200 with the desired set when it
/// differs from `V` (at once, or as soon as a release is published), 304 after `wait`.
pub async fn desired(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    Query(q): Query<DesiredQuery>,
) -> ApiResult<Response> {
    caller.require_host(&host, "read the desired state")?;
    let wait = match q.wait.as_deref() {
        None => defaults::LONG_POLL_WAIT,
        Some(w) => humantime::parse_duration(w)
            .map_err(|e| ApiError::BadRequest(format!("wait `{w}`: {e}")))?,
    }
    .min(state.rollouts.long_poll_max_wait);
    let rec = state.store.host(&host).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "host `{host}` is not registered: the agent registers first (POST /v1/hosts/{host}/register)"
        ))
    })?;
    let now = SystemTime::now();
    // Polls come every few seconds per host; `last_seen` needs no finer grain than this.
    if now.duration_since(rec.last_seen).unwrap_or_default() > state.rollouts.last_seen_grain() {
        state.store.touch_host(&host, now).await?;
        if rec.down_at.is_some() {
            came_back(&state, &host).await;
        }
    }
    let mut rx = state.rollouts.subscribe();
    let mut shutdown = state.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wait;
    let _waiting = GaugeGuard::new(&state);
    // A release just published here shows in the rollout view a moment later: wait for it.
    let published = state.publisher.current();
    let _ = tokio::time::timeout(
        defaults::ROLLOUT_VIEW_CATCH_UP,
        rx.wait_for(|v| v.from.as_ref().is_some_and(|f| Arc::ptr_eq(f, &published))),
    )
    .await;
    loop {
        let view = rx.borrow_and_update().clone();
        let set = view.select(&host, &rec.labels);
        if q.version.as_deref() != Some(set.version.as_str()) {
            return desired_answer(&state, &host, &view, &set).await;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    Ok(StatusCode::NOT_MODIFIED.into_response())
}

/// The JSON answer with `set`: sealed to `host` when its releases pin secrets, else the
/// same bytes every host holding this set gets (serialized once per view).
async fn desired_answer(
    state: &AppState,
    host: &str,
    view: &crate::rollout::View,
    set: &crate::rollout::view::Selected<'_>,
) -> ApiResult<Response> {
    let json = match view.cached_body(&set.version) {
        Some(json) if !set.sealed => json,
        _ => {
            let mut body = set.body();
            if set.sealed {
                crate::secrets::seal_for_host(state, host, &mut body).await?;
            }
            let json = axum::body::Bytes::from(
                serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            if !set.sealed {
                view.cache_body(&set.version, json.clone());
            }
            json
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

/// A host marked down was heard from again: it gets the live release (it is outside the
/// rollouts planned while it was down).
async fn came_back(state: &AppState, host: &str) {
    tracing::info!(host, "host heard from again after being down");
    crate::events::emit(state, "host.up", None, serde_json::json!({"host": host})).await;
}

/// Counts a waiting long-poll for as long as it lives.
struct GaugeGuard(AppState);

impl GaugeGuard {
    fn new(state: &AppState) -> Self {
        state.metrics.long_polls.inc();
        Self(state.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.metrics.long_polls.dec();
    }
}

pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_host(&host, "report the status")?;
    let status: HostStatus = parse_json(&body)?;
    if let Some(t) = &status.expired_at {
        humantime::parse_rfc3339_weak(t)
            .map_err(|e| ApiError::BadRequest(format!("expired_at `{t}`: {e}")))?;
    }
    if state.store.host(&host).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "host `{host}` is not registered: the agent registers first"
        )));
    }
    if state
        .store
        .release(&status.app, status.seq)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "status for unknown release {} seq {}",
            status.app, status.seq
        )));
    }
    let put = state.store.put_status(&host, &status, SystemTime::now());
    state.metrics.time("put_status", put).await?;
    // Phase reports go to the event log (the status history, pruned with it), not the audit
    // log, which keeps operator actions and rollout decisions.
    let mut detail =
        serde_json::json!({"host": host, "seq": status.seq, "phase": status.phase.to_string()});
    if let Some(t) = &status.expired_at {
        detail["expired_at"] = t.clone().into();
    }
    crate::events::emit(&state, "host.phase", Some(&status.app), detail).await;
    if status.expired_at.is_some() {
        tracing::warn!(
            host,
            app = %status.app,
            seq = status.seq,
            expired_at = status.expired_at.as_deref().unwrap_or_default(),
            "host serves a release past its signature's expiry (stale)"
        );
    }
    state.metrics.status_reports.inc();
    // The driver acts on it now rather than at its next tick.
    state.rollouts.reported();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<HostInfo>>> {
    caller.require_operator("list hosts")?;
    let mut stale = stale_by_host(state.store.statuses(None).await?);
    let now = SystemTime::now();
    Ok(Json(
        state
            .store
            .hosts()
            .await?
            .into_iter()
            .map(|h| {
                let s = stale.remove(&h.host).unwrap_or_default();
                let down = state.rollouts.is_down(h.last_seen, now);
                info(h, s, down)
            })
            .collect::<ApiResult<_>>()?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    app: Option<String>,
}

pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<Vec<StatusRow>>> {
    caller.require_operator("read status")?;
    let rows = state.store.statuses(q.app.as_deref()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|s| {
                Ok(StatusRow {
                    host: stored_host(s.host)?,
                    status: HostStatus {
                        app: s.app,
                        seq: s.seq,
                        image: s.image,
                        phase: s.phase,
                        expired_at: s.expired_at.map(rfc3339),
                    },
                    updated_at: rfc3339(s.updated_at),
                })
            })
            .collect::<ApiResult<_>>()?,
    ))
}
