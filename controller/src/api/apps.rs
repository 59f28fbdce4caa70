//! `/v1/apps`: apply and read app specs.

use super::{audit, parse_json, rfc3339, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::store::AppRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use slipway_proto::api::AppInfo;
use slipway_proto::AppSpec;
use std::time::SystemTime;

pub(crate) fn info(a: AppRecord) -> AppInfo {
    AppInfo {
        name: a.name,
        version: a.version,
        spec: a.spec,
        updated_at: rfc3339(a.updated_at),
    }
}

/// `POST /v1/apps`: body is `app.toml` (`Content-Type: application/toml`) or the spec as JSON.
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<AppInfo>> {
    caller.require_admin("apply app specs")?;
    let is_toml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let spec: AppSpec = if is_toml {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::BadRequest("app spec is not UTF-8".into()))?;
        AppSpec::from_toml(text).map_err(|e| ApiError::Unprocessable(e.to_string()))?
    } else {
        parse_json(&body)?
    };
    spec.validate()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let (rec, changed) = state.store.apply_app(&spec, SystemTime::now()).await?;
    if changed {
        audit(
            &state,
            &caller.name,
            "app.apply",
            &format!("app/{}", rec.name),
            &format!("spec version {}", rec.version),
        )
        .await?;
    }
    Ok(Json(info(rec)))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<AppInfo>>> {
    caller.require_operator("list apps")?;
    Ok(Json(
        state.store.apps().await?.into_iter().map(info).collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<AppInfo>> {
    caller.require_operator("read apps")?;
    let rec = state
        .store
        .app(&app)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown app `{app}`")))?;
    Ok(Json(info(rec)))
}
