//! `/v1/apps/{app}/rollout`: the plan of the newest release with each host's phase, and the
//! operator's `promote`, `pause`, `resume`, `abort`.

use super::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rollout::actions;
use axum::extract::{Path, Query, State};
use axum::Json;
use slipway_proto::api::{RolloutAction, RolloutInfo};

/// `?seq=N`: the rollout of release N instead of the newest (how `--wait` sees how the
/// release it follows ended once a rollback or a newer release took over).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    pub seq: Option<u64>,
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(q): Query<ShowQuery>,
) -> ApiResult<Json<RolloutInfo>> {
    caller.require_operator("read rollouts")?;
    Ok(Json(actions::info_of(&state, &app, q.seq).await?))
}

pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, action)): Path<(String, String)>,
) -> ApiResult<Json<RolloutInfo>> {
    caller.require_admin("steer rollouts")?;
    let action: RolloutAction = serde_json::from_value(serde_json::Value::String(action.clone()))
        .map_err(|_| {
        ApiError::NotFound(format!(
            "unknown rollout action `{action}`: expected promote, pause, resume or abort"
        ))
    })?;
    Ok(Json(
        actions::apply(&state, &caller.name, &app, action).await?,
    ))
}
