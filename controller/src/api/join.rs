//! Join tokens: `POST|GET /v1/join-tokens` (admin) make and list them; `GET /v1/join` (no
//! token) tells a joining agent the release key and TLS CA to check its join token against;
//! `POST /v1/join` (the join token's secret in the body) registers the host with the labels
//! the join token grants and answers the host's own agent token.

use super::{audit, parse_json, rfc3339, AppState};
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::store::{JoinTokenRecord, TokenRecord};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use slipway_proto::api::Role;
use slipway_proto::join::{
    CreateJoinTokenRequest, CreatedJoinToken, JoinAnswer, JoinInfo, JoinRequest, JoinTokenInfo,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The controller's TLS CA as a joining agent pins it: the last certificate of its chain.
#[derive(Debug, Clone)]
pub struct TlsCa {
    pub pem: String,
    /// Lowercase hex sha256 of its DER.
    pub sha256: String,
}

/// A join token lives at most this long: a leaked one should not open the fleet for good.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedJoinToken>)> {
    caller.require_admin("create join tokens")?;
    let req: CreateJoinTokenRequest = parse_json(&body)?;
    let ttl = humantime::parse_duration(&req.ttl)
        .map_err(|e| ApiError::BadRequest(format!("ttl `{}`: {e}", req.ttl)))?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(ApiError::BadRequest(format!(
            "ttl `{}` must be above zero and at most 365d",
            req.ttl
        )));
    }
    if req.uses == 0 {
        return Err(ApiError::BadRequest(
            "uses must be at least 1 (how many hosts may join with the token)".into(),
        ));
    }
    for (k, v) in &req.labels {
        if k.is_empty() || k.contains(['=', ',']) || v.contains(',') {
            return Err(ApiError::BadRequest(format!(
                "label `{k}={v}`: keys must be non-empty without `=` or `,`; values without `,`"
            )));
        }
    }
    let secret = auth::generate();
    let name = req
        .name
        .unwrap_or_else(|| format!("join-{}", &auth::hash(&secret)[..8]));
    let now = SystemTime::now();
    let rec = JoinTokenRecord {
        name: name.clone(),
        hash: auth::hash(&secret),
        labels: req.labels,
        uses: req.uses,
        used: 0,
        expires_at: now + ttl,
        created_by: caller.name.clone(),
        created_at: now,
    };
    state.store.create_join_token(&rec).await?;
    let labels = serde_json::to_string(&rec.labels).expect("labels serialize");
    let detail = format!("labels {labels}, uses {}, ttl {}", rec.uses, req.ttl);
    audit(
        &state,
        &caller.name,
        "join-token.create",
        &format!("token/{name}"),
        &detail,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedJoinToken {
            name,
            secret,
            key_id: state.signer.key.public_key().id().to_string(),
            ca_sha256: state.tls_ca.as_ref().map(|c| c.sha256.clone()),
            expires_at: rfc3339(rec.expires_at),
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<JoinTokenInfo>>> {
    caller.require_admin("list join tokens")?;
    Ok(Json(
        state
            .store
            .join_tokens()
            .await?
            .into_iter()
            .map(|t| JoinTokenInfo {
                name: t.name,
                labels: t.labels,
                uses: t.uses,
                used: t.used,
                expires_at: rfc3339(t.expires_at),
                created_by: t.created_by,
            })
            .collect(),
    ))
}

/// `GET /v1/join`: public facts only (the release public key, the TLS CA).
pub async fn info(State(state): State<AppState>) -> Json<JoinInfo> {
    let pk = state.signer.key.public_key();
    Json(JoinInfo {
        public_key: pk.to_pem(),
        key_id: pk.id().to_string(),
        key_set_version: state.signer.key_set_version,
        ca_pem: state.tls_ca.as_ref().map(|c| c.pem.clone()),
    })
}

/// `POST /v1/join`: registers the host the join token lets in. Every refusal changes nothing.
pub async fn join(
    State(state): State<AppState>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<JoinAnswer>)> {
    let req: JoinRequest = parse_json(&body)?;
    let host = req.host.clone();
    host.parse::<slipway_proto::HostId>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = SystemTime::now();
    let Some(t) = state
        .store
        .join_token_by_hash(&auth::hash(&req.secret))
        .await?
    else {
        return Err(ApiError::Unauthorized(
            "unknown or revoked join token: this controller never issued it (a join token for \
             another controller?) or it was revoked; nothing changed"
                .into(),
        ));
    };
    if t.expires_at <= now {
        return Err(ApiError::Unauthorized(format!(
            "join token `{}` expired at {}: ask for a new one (`slipway token create --role \
             join`); nothing changed",
            t.name,
            rfc3339(t.expires_at)
        )));
    }
    if t.used >= t.uses {
        return Err(ApiError::Unauthorized(format!(
            "join token `{}` is used up ({} of {} hosts joined); nothing changed",
            t.name, t.used, t.uses
        )));
    }
    if let Some((k, v)) = req
        .labels
        .iter()
        .find(|(k, v)| t.labels.get(*k) != Some(*v))
    {
        return Err(ApiError::Forbidden(format!(
            "join token `{}` does not grant label `{k}={v}` (it grants {}); an admin relabels \
             hosts with `slipway hosts label`; nothing changed",
            t.name,
            label_list(&t.labels)
        )));
    }
    if let Some(v) = &req.agent_version {
        super::hosts::check_skew(&host, v)?;
    }
    if state.store.host(&host).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "host `{host}` is registered already: pick another host id, or remove it first \
             (`slipway hosts remove {host}`); nothing changed"
        )));
    }
    let secret = auth::generate();
    let token = TokenRecord {
        name: format!("agent-{host}"),
        role: Role::Agent,
        host: Some(host.clone()),
        hash: auth::hash(&secret),
        created_at: now,
    };
    let joined = state
        .store
        .join_host(
            &t.name,
            &host,
            &t.labels,
            req.agent_version.as_deref(),
            &token,
            now,
        )
        .await?;
    if !joined {
        return Err(ApiError::Unauthorized(format!(
            "join token `{}` expired or was used up just now; nothing changed",
            t.name
        )));
    }
    if let Some(key) = &req.secret_key {
        state
            .store
            .set_host_secret_key(&host, &key.to_base64(), now)
            .await?;
    }
    let detail = format!("join token {}, labels {}", t.name, label_list(&t.labels));
    audit(
        &state,
        &format!("join:{}", t.name),
        "host.join",
        &format!("host/{host}"),
        &detail,
    )
    .await?;
    crate::events::emit(
        &state,
        "host.joined",
        None,
        serde_json::json!({"host": host, "labels": t.labels, "join_token": t.name}),
    )
    .await;
    tracing::info!(host, join_token = t.name, "host joined");
    Ok((
        StatusCode::CREATED,
        Json(JoinAnswer {
            host,
            agent_token: secret,
            token_name: token.name,
            labels: t.labels,
        }),
    ))
}

/// `k=v,k2=v2`, or `no labels`.
pub(super) fn label_list(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "no labels".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
