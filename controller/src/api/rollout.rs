//! `/v1/apps/{app}/rollout`: the plan of the newest release with each host's phase, and the
//! operator's `promote`, `pause`, `resume`, `abort`.

use super::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::rollout::actions;
use axum::extract::{Path, State};
use axum::Json;
use slipway_proto::api::{RolloutAction, RolloutInfo};

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<RolloutInfo>> {
    caller.require_operator("read rollouts")?;
    Ok(Json(actions::info(&state, &app).await?))
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
