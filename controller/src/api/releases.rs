//! `/v1/apps/{app}/releases` and `/rollback`.

use super::{parse_json, rfc3339, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::release;
use crate::store::ReleaseRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use slipway_proto::api::{CreateReleaseRequest, ReleaseInfo, RollbackRequest};
use slipway_proto::Envelope;

pub(crate) fn info(r: ReleaseRecord) -> ApiResult<ReleaseInfo> {
    let envelope = Envelope::from_json(r.envelope.as_bytes()).map_err(|e| {
        ApiError::Internal(format!("stored envelope of {} seq {}: {e}", r.app, r.seq))
    })?;
    Ok(ReleaseInfo {
        app: r.app,
        seq: r.seq,
        image: r.image,
        requested: r.requested,
        spec_version: r.spec_version,
        rollback_of: r.rollback_of,
        created_by: r.created_by,
        created_at: rfc3339(r.created_at),
        expires: rfc3339(r.expires),
        envelope,
    })
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ReleaseInfo>)> {
    caller.require_admin("create releases")?;
    let req: CreateReleaseRequest = parse_json(&body)?;
    let rec = release::create(&state, &caller.name, &app, &req.image, req.annotations).await?;
    Ok((StatusCode::CREATED, Json(info(rec)?)))
}

pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ReleaseInfo>)> {
    caller.require_admin("roll back releases")?;
    let req: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        parse_json(&body)?
    };
    let rec = release::rollback(&state, &caller.name, &app, req.to_seq, req.now).await?;
    Ok((StatusCode::CREATED, Json(info(rec)?)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<ReleaseInfo>>> {
    caller.require_operator("list releases")?;
    if state.store.app(&app).await?.is_none() {
        return Err(ApiError::NotFound(format!("unknown app `{app}`")));
    }
    let rows = state.store.releases(&app).await?;
    Ok(Json(rows.into_iter().map(info).collect::<ApiResult<_>>()?))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, seq)): Path<(String, u64)>,
) -> ApiResult<Json<ReleaseInfo>> {
    caller.require_operator("read releases")?;
    let rec = state
        .store
        .release(&app, seq)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("app `{app}` has no release seq {seq}")))?;
    Ok(Json(info(rec)?))
}
