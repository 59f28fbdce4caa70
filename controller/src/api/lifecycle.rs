//! `/v1/hosts/{host}/{cordon,uncordon,drain}` and `DELETE /v1/hosts/{host}`: an operator takes
//! a host out of new rollouts (cordon), empties it (drain), lets it back in (uncordon) or
//! forgets it (remove: its agent tokens and secret-key registration go with it).

use super::hosts::info;
use super::{audit, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rollout::parse;
use crate::store::HostRecord;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use slipway_proto::api::{HostInfo, HostLifecycle};
use std::time::SystemTime;

/// What `DELETE /v1/hosts/{host}` answers.
#[derive(Debug, Serialize)]
pub struct Removed {
    pub host: String,
    /// The agent tokens revoked with it.
    pub revoked_tokens: Vec<String>,
}

/// `POST /v1/hosts/{host}/{action}`: `cordon`, `uncordon` or `drain`.
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((host, action)): Path<(String, String)>,
) -> ApiResult<Json<HostInfo>> {
    caller.require_admin("cordon, drain or uncordon hosts")?;
    let to = match action.as_str() {
        "cordon" => HostLifecycle::Cordoned,
        "drain" => HostLifecycle::Drained,
        "uncordon" => HostLifecycle::Active,
        _ => {
            return Err(ApiError::NotFound(format!(
                "unknown host action `{action}`: expected cordon, uncordon or drain \
                 (remove is DELETE /v1/hosts/{host})"
            )))
        }
    };
    let rec = known(&state, &host).await?;
    if rec.lifecycle == to {
        return Ok(Json(info(rec, Vec::new(), false)?));
    }
    if to != HostLifecycle::Active {
        refuse_only_canary(&state, &host, &action).await?;
    }
    state.store.set_host_lifecycle(&host, to).await?;
    let object = format!("host/{host}");
    let kind = match to {
        HostLifecycle::Active => "host.uncordoned",
        HostLifecycle::Cordoned => "host.cordoned",
        HostLifecycle::Drained => "host.drained",
    };
    let detail = format!("{} -> {to}", rec.lifecycle);
    audit(&state, &caller.name, kind, &object, &detail).await?;
    crate::events::emit(
        &state,
        kind,
        None,
        serde_json::json!({"host": host, "from": rec.lifecycle, "to": to}),
    )
    .await;
    tracing::info!(host, from = %rec.lifecycle, to = %to, by = caller.name, "host lifecycle changed");
    state.rollouts.changed(&state).await;
    let rec = known(&state, &host).await?;
    let down = state.rollouts.is_down(rec.last_seen, SystemTime::now());
    Ok(Json(info(rec, Vec::new(), down)?))
}

/// `DELETE /v1/hosts/{host}`: forgets the host, revokes its agent tokens and deletes its
/// secret-key registration, so nothing issued after is sealed to it.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<Json<Removed>> {
    caller.require_admin("remove hosts")?;
    known(&state, &host).await?;
    refuse_only_canary(&state, &host, "remove").await?;
    let tokens = state
        .store
        .remove_host(&host)
        .await?
        .ok_or_else(|| unknown(&host))?;
    let object = format!("host/{host}");
    let detail = format!("revoked tokens: {}", tokens.join(", "));
    audit(&state, &caller.name, "host.removed", &object, &detail).await?;
    crate::events::emit(
        &state,
        "host.removed",
        None,
        serde_json::json!({"host": host, "revoked_tokens": tokens}),
    )
    .await;
    tracing::info!(
        host,
        by = caller.name,
        ?tokens,
        "host removed; its agent tokens revoked"
    );
    state.rollouts.changed(&state).await;
    Ok(Json(Removed {
        host,
        revoked_tokens: tokens,
    }))
}

async fn known(state: &AppState, host: &str) -> ApiResult<HostRecord> {
    state.store.host(host).await?.ok_or_else(|| unknown(host))
}

fn unknown(host: &str) -> ApiError {
    ApiError::NotFound(format!(
        "host `{host}` is not registered (see `slipway hosts`); nothing changed"
    ))
}

/// Refuses to take away the last canary of a rollout in progress that is not live yet: the
/// release would then reach the next waves with no canary having run it.
async fn refuse_only_canary(state: &AppState, host: &str, action: &str) -> ApiResult<()> {
    for app in state.store.apps().await? {
        let Some(rec) = state.store.latest_rollout(&app.name).await? else {
            continue;
        };
        let doc =
            parse(&rec.app, rec.seq, &rec.doc).map_err(|e| ApiError::Internal(e.to_string()))?;
        let Some(canary) = doc.waves.first().filter(|_| doc.canary && doc.is_active()) else {
            continue;
        };
        let others = canary
            .iter()
            .filter(|h| *h != host && !doc.left_out.contains_key(*h))
            .count();
        if canary.iter().any(|h| h == host) && !doc.live.contains(host) && others == 0 {
            return Err(ApiError::Conflict(format!(
                "host `{host}` is the only canary of app `{}`'s rollout of seq {} ({}), which \
                 is not live on it yet: {action} would send the release on with no canary; \
                 wait for the canary, abort the rollout (`slipway rollout abort {}`), or label \
                 another host `slipway.canary=true` and release again; nothing changed",
                doc.app, doc.seq, doc.state, doc.app
            )));
        }
    }
    Ok(())
}

/// `PUT /v1/hosts/{host}/labels` `{"labels": {...}}`: replaces a host's labels; from then on
/// its agent may not change them (as for a host that joined with a join token).
pub async fn label(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<HostInfo>> {
    caller.require_admin("relabel hosts")?;
    let req: slipway_proto::api::LabelsRequest = super::parse_json(&body)?;
    let before = known(&state, &host).await?;
    state.store.set_host_labels(&host, &req.labels).await?;
    let detail = format!(
        "{} -> {}",
        super::join::label_list(&before.labels),
        super::join::label_list(&req.labels)
    );
    audit(
        &state,
        &caller.name,
        "host.label",
        &format!("host/{host}"),
        &detail,
    )
    .await?;
    state.rollouts.changed(&state).await;
    let rec = known(&state, &host).await?;
    let down = state.rollouts.is_down(rec.last_seen, SystemTime::now());
    Ok(Json(info(rec, Vec::new(), down)?))
}
