//! The HTTP API (`/v1/...`): one file per resource. Every route but `/healthz` and
//! `/metrics` needs a bearer token; see [`crate::auth`] for who may do what.

mod apps;
mod events;
mod hosts;
mod join;
mod lifecycle;
mod logs;
mod releases;
mod rollout;
mod secrets;
mod tokens;
mod webhooks;

pub use crate::metrics::Metrics;
pub use join::TlsCa;
pub use webhooks::WebhookReply;

use crate::error::{ApiError, ApiResult};
use crate::publish::Publisher;
use crate::release::{AppLocks, ReleaseSigner};
use crate::resolve::Resolver;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub publisher: Arc<Publisher>,
    pub resolver: Arc<Resolver>,
    pub signer: Arc<ReleaseSigner>,
    pub locks: Arc<AppLocks>,
    pub metrics: Arc<Metrics>,
    /// Rollout plans and the per-host view long-polls answer from.
    pub rollouts: Arc<crate::rollout::Rollouts>,
    /// Turns true when the controller shuts down: long-polls answer at once.
    pub shutdown: watch::Receiver<bool>,
    /// The git sync, when `[gitops]` is configured.
    pub gitops: Option<Arc<crate::gitops::GitOps>>,
    /// Live delivery of the event log to SSE streams.
    pub events: Arc<crate::events::Events>,
    /// Dashboard sessions (`/ui/`).
    pub ui: Arc<crate::ui::Sessions>,
    /// Encrypts secret values at rest; `None` refuses secret writes.
    pub master_key: Option<Arc<slipway_proto::seal::MasterKey>>,
    /// Log requests waiting for agents and the uploads they start (`crate::logs`).
    pub log_relay: Arc<crate::logs::LogRelay>,
    /// The TLS CA joining agents pin, when the controller serves TLS.
    pub tls_ca: Option<Arc<TlsCa>>,
}

impl AppState {
    /// The master key, or a clear error when the controller runs without one.
    pub fn master_key(&self) -> Result<&slipway_proto::seal::MasterKey, ApiError> {
        self.master_key.as_deref().ok_or_else(|| {
            ApiError::Internal("secrets are unavailable: the controller has no master key".into())
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/apps", post(apps::apply).get(apps::list))
        .route("/v1/apps/{app}", get(apps::show))
        .route(
            "/v1/apps/{app}/releases",
            post(releases::create).get(releases::list),
        )
        .route("/v1/apps/{app}/releases/{seq}", get(releases::show))
        .route("/v1/apps/{app}/rollback", post(releases::rollback))
        .route("/v1/apps/{app}/rollout", get(rollout::show))
        .route("/v1/apps/{app}/rollout/{action}", post(rollout::act))
        .route("/v1/hosts", get(hosts::list))
        .route("/v1/hosts/{host}/register", post(hosts::register))
        .route("/v1/hosts/{host}/desired", get(hosts::desired))
        .route("/v1/hosts/{host}/status", post(hosts::report))
        .route("/v1/hosts/{host}", delete(lifecycle::remove))
        .route("/v1/hosts/{host}/labels", put(lifecycle::label))
        .route("/v1/join-tokens", post(join::create).get(join::list))
        .route("/v1/join", get(join::info).post(join::join))
        .route("/v1/hosts/{host}/{action}", post(lifecycle::act))
        .route("/v1/status", get(hosts::status))
        .route("/v1/apps/{app}/logs", get(logs::read))
        .route("/v1/hosts/{host}/log-requests", get(logs::poll))
        .route("/v1/hosts/{host}/logs/{id}", post(logs::upload))
        .route("/v1/audit", get(tokens::audit))
        .route("/v1/events", get(events::list))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{name}", delete(tokens::revoke))
        .route("/v1/gitops", get(webhooks::status))
        .route(
            "/v1/webhooks/github",
            post(webhooks::github).layer(DefaultBodyLimit::max(
                crate::gitops::defaults::WEBHOOK_MAX_BODY,
            )),
        )
        .route(
            "/v1/webhooks/gitlab",
            post(webhooks::gitlab).layer(DefaultBodyLimit::max(
                crate::gitops::defaults::WEBHOOK_MAX_BODY,
            )),
        )
        .merge(crate::ui::router())
        .route("/v1/apps/{app}/secrets", get(secrets::list))
        .route(
            "/v1/apps/{app}/secrets/{name}",
            axum::routing::put(secrets::set).delete(secrets::remove),
        )
        .route(
            "/v1/hosts/{host}/secret-key",
            delete(secrets::forget_host_key),
        )
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .layer(DefaultBodyLimit::max(crate::defaults::MAX_BODY))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> ApiResult<String> {
    crate::metrics::refresh(&state).await?;
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &state.metrics.registry)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(out)
}

/// Parses a JSON request body, naming the field that is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::BadRequest(format!("request body is not valid JSON: {}", e.inner()))
        } else {
            ApiError::BadRequest(format!("request body field `{path}`: {}", e.inner()))
        }
    })
}

/// A host id read back from the store, checked again as it goes on the wire.
pub(crate) fn stored_host(host: String) -> ApiResult<slipway_proto::HostId> {
    host.try_into()
        .map_err(|e| ApiError::Internal(format!("stored host: {e}")))
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    object: &str,
    detail: &str,
) -> ApiResult<()> {
    state
        .store
        .audit(actor, action, object, detail, SystemTime::now())
        .await?;
    Ok(())
}
