//! `POST /v1/webhooks/github`, `POST /v1/webhooks/gitlab` and `GET /v1/gitops`. A webhook
//! carries no bearer token: GitHub's is authenticated by its body signature, GitLab's by its
//! secret token. A valid push to the synced branch only means "sync now": what gets released
//! is read from the repository, never from the webhook body.

use super::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::gitops::webhook::{self, WebhookError};
use crate::gitops::{GitOps, SyncStatus};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a webhook request led to.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookReply {
    /// True when a sync was asked for.
    pub sync: bool,
    pub reason: String,
}

type Reply = ApiResult<(StatusCode, Json<WebhookReply>)>;

fn gitops(state: &AppState) -> ApiResult<&Arc<GitOps>> {
    state.gitops.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "GitOps is not configured on this controller ([gitops] in controller.toml)".into(),
        )
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn rejected(e: WebhookError) -> ApiError {
    tracing::warn!(error = %e, "webhook rejected");
    match e {
        WebhookError::Replay(_) => ApiError::Conflict(e.to_string()),
        _ => ApiError::Unauthorized(e.to_string()),
    }
}

/// The `ref` of a push event; every other field is ignored.
#[derive(Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
}

/// Asks for a sync when the push went to the synced branch: at once when this replica leads,
/// else through the store (event `gitops.sync-requested`), which the lead follows.
async fn on_push(state: &AppState, g: &GitOps, source: &str, body: &[u8]) -> Reply {
    let push: PushEvent = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "{source} push event: body has no usable `ref`: {e}"
        ))
    })?;
    let wanted = format!("refs/heads/{}", g.cfg.branch);
    if push.git_ref != wanted {
        tracing::info!(source, git_ref = %push.git_ref, "webhook push to another ref ignored");
        return ignored(format!(
            "push to {}, not the synced branch {wanted}",
            push.git_ref
        ));
    }
    let leading = state.rollouts.leading();
    tracing::info!(source, git_ref = %push.git_ref, leading, "webhook: sync now");
    crate::events::emit(
        state,
        crate::gitops::SYNC_REQUESTED,
        None,
        serde_json::json!({"source": source, "ref": push.git_ref}),
    )
    .await;
    let reason = if leading {
        g.sync_now();
        format!("push to {wanted}: sync started")
    } else {
        if let Err(e) = state.store.notify_changed().await {
            tracing::warn!(error = %e, "could not tell the lead controller to sync");
        }
        format!("push to {wanted}: sync requested from the lead controller")
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookReply { sync: true, reason }),
    ))
}

fn ignored(reason: String) -> Reply {
    Ok((
        StatusCode::OK,
        Json(WebhookReply {
            sync: false,
            reason,
        }),
    ))
}

/// `POST /v1/webhooks/github`: signature first, then the delivery id, then the event.
pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Reply {
    let g = gitops(&state)?;
    let key = g.github_key.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "GitHub webhooks are not configured: set [gitops] github_secret_file".into(),
        )
    })?;
    webhook::verify_github(key, header(&headers, "x-hub-signature-256"), &body)
        .map_err(rejected)?;
    let delivery = header(&headers, "x-github-delivery")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing X-GitHub-Delivery header".into()))?;
    g.deliveries
        .accept(&format!("github:{delivery}"))
        .map_err(rejected)?;
    match header(&headers, "x-github-event").unwrap_or_default() {
        "push" => on_push(&state, g, "github", &body).await,
        "ping" => ignored("ping: webhook reached the controller".into()),
        other => ignored(format!(
            "event `{other}` ignored: only push triggers a sync"
        )),
    }
}

/// `POST /v1/webhooks/gitlab`: token first, then the event id (when sent), then the event.
pub async fn gitlab(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Reply {
    let g = gitops(&state)?;
    let token = g.gitlab_token.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "GitLab webhooks are not configured: set [gitops] gitlab_token_file".into(),
        )
    })?;
    webhook::verify_gitlab(token, header(&headers, "x-gitlab-token")).map_err(rejected)?;
    if let Some(id) = header(&headers, "x-gitlab-event-uuid").filter(|d| !d.is_empty()) {
        g.deliveries
            .accept(&format!("gitlab:{id}"))
            .map_err(rejected)?;
    }
    match header(&headers, "x-gitlab-event").unwrap_or_default() {
        "Push Hook" => on_push(&state, g, "gitlab", &body).await,
        other => ignored(format!(
            "event `{other}` ignored: only Push Hook triggers a sync"
        )),
    }
}

/// `GET /v1/gitops`: the last sync and each app's outcome.
pub async fn status(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<SyncStatus>> {
    caller.require_operator("read the GitOps status")?;
    let mut st = gitops(&state)?.status();
    st.leading = state.rollouts.leading();
    Ok(Json(st))
}
