//! `/v1/tokens` (admin only) and `/v1/audit`.

use super::{audit as record, parse_json, rfc3339, stored_host, AppState};
use crate::auth::{self, Caller};
use crate::defaults;
use crate::error::{ApiError, ApiResult};
use crate::store::TokenRecord;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use slipway_proto::api::{AuditEntry, CreateTokenRequest, CreatedToken, TokenInfo};
use std::time::SystemTime;

pub(crate) fn info(t: TokenRecord) -> ApiResult<TokenInfo> {
    Ok(TokenInfo {
        name: t.name,
        role: t.role,
        host: t.host.map(stored_host).transpose()?,
        created_at: rfc3339(t.created_at),
    })
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_admin("create tokens")?;
    let req: CreateTokenRequest = parse_json(&body)?;
    let (token, rec) = auth::create_token(
        state.store.as_ref(),
        &req.name,
        req.role,
        req.host.as_deref(),
    )
    .await?;
    record(
        &state,
        &caller.name,
        "token.create",
        &format!("token/{}", rec.name),
        &format!(
            "role {}{}",
            rec.role,
            rec.host
                .as_deref()
                .map(|h| format!(", host {h}"))
                .unwrap_or_default()
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: info(rec)?,
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    caller.require_admin("list tokens")?;
    Ok(Json(
        state
            .store
            .tokens()
            .await?
            .into_iter()
            .map(info)
            .collect::<ApiResult<_>>()?,
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin("revoke tokens")?;
    // One name space for both kinds: `slipway token revoke NAME` ends a join token too.
    if !state.store.revoke_token(&name).await? && !state.store.revoke_join_token(&name).await? {
        return Err(ApiError::NotFound(format!("no token named `{name}`")));
    }
    record(
        &state,
        &caller.name,
        "token.revoke",
        &format!("token/{name}"),
        "",
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    app: Option<String>,
    actor: Option<String>,
    /// `2h`, `7d` (that long ago) or an RFC 3339 time.
    since: Option<String>,
}

/// `since=`: a duration back from now, or an RFC 3339 time.
fn parse_since(s: &str) -> ApiResult<SystemTime> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        ApiError::BadRequest(format!(
            "since `{s}` is neither a duration (2h, 7d) nor an RFC 3339 time"
        ))
    })
}

pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    caller.require_operator("read the audit log")?;
    if let Some(app) = &q.app {
        app.parse::<slipway_proto::AppName>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let filter = crate::store::AuditFilter {
        app: q.app,
        actor: q.actor,
        since: q.since.as_deref().map(parse_since).transpose()?,
    };
    let rows = state
        .store
        .audit_find(&filter, q.limit.unwrap_or(defaults::AUDIT_LIMIT))
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|a| AuditEntry {
                id: a.id,
                at: rfc3339(a.at),
                actor: a.actor,
                action: a.action,
                object: a.object,
                detail: a.detail,
            })
            .collect(),
    ))
}
