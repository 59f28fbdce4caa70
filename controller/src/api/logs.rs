//! Remote logs (see [`crate::logs`]): operators read an app's output through
//! `GET /v1/apps/{app}/logs`; agents take requests from `GET /v1/hosts/{host}/log-requests`
//! and stream the lines to `POST /v1/hosts/{host}/logs/{id}`.

use super::{rfc3339, AppState};
use crate::auth::Caller;
use crate::defaults;
use crate::error::{ApiError, ApiResult};
use crate::logs::{request_id, FrameSender, RequestError};
use crate::store::HostRecord;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use slipway_proto::api::logs::{LogFrame, LogRequest, LogRequests};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only this host (else every host that reported the app).
    host: Option<String>,
    /// Keep streaming new output.
    #[serde(default)]
    follow: bool,
    /// A duration back from now (`10m`) or an RFC 3339 time.
    since: Option<String>,
    /// The last N lines of each stream.
    tail: Option<u64>,
}

/// `GET /v1/apps/{app}/logs[?host=&follow=true&since=10m&tail=N]`: NDJSON [`LogFrame`]s, each
/// tagged with its host. A host that is down, not listening or silent gets one `error`
/// frame and the others go on; the stream ends when every host's upload has.
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    caller.require_operator("read logs")?;
    let since = q.since.as_deref().map(parse_since).transpose()?;
    if state.store.app(&app).await?.is_none() {
        return Err(ApiError::NotFound(format!("no app `{app}`")));
    }
    let hosts = hosts_of(&state, &app, q.host.as_deref()).await?;
    let (tx, rx) = mpsc::channel(defaults::LOG_BUFFER_FRAMES);
    let mut first = VecDeque::new();
    let now = SystemTime::now();
    let silent_after = state.rollouts.cfg.silent_after;
    for h in hosts {
        let seen = now.duration_since(h.last_seen).unwrap_or_default();
        let last_seen = format!("last seen {} ago, at {}", ago(seen), rfc3339(h.last_seen));
        let says = |error: String| LogFrame {
            host: Some(h.host.clone()),
            ..LogFrame::error(error)
        };
        if seen > silent_after {
            first.push_back(says(format!("host {} is down: {last_seen}", h.host)));
            continue;
        }
        let req = LogRequest {
            id: request_id(),
            app: app.clone(),
            since: since.clone(),
            tail: q.tail,
            follow: q.follow,
        };
        let id = req.id.clone();
        match state.log_relay.request(&h.host, req, tx.clone()) {
            Ok(started) => {
                let relay = state.log_relay.clone();
                let tx = tx.clone();
                let frame = says(format!(
                    "host {} did not answer the log request within {} ({last_seen})",
                    h.host,
                    ago(defaults::LOG_ANSWER_TIMEOUT)
                ));
                tokio::spawn(async move {
                    let answered =
                        tokio::time::timeout(defaults::LOG_ANSWER_TIMEOUT, started).await;
                    if answered.is_err() && relay.withdraw(&id) {
                        let _ = tx.send(frame).await;
                    }
                });
            }
            Err(RequestError::NotListening) => first.push_back(says(format!(
                "host {} is up ({last_seen}) but its agent is not listening for log requests \
                 on this controller: an agent without remote logs, or one that polls another \
                 controller replica",
                h.host
            ))),
            Err(RequestError::Busy) => first.push_back(says(format!(
                "host {} already streams {} logs; end some `slipway logs -f` first",
                h.host,
                defaults::LOG_REQUESTS_PER_HOST
            ))),
        }
    }
    drop(tx);
    tracing::info!(app, by = %caller.name, follow = q.follow, "logs requested");
    let body = Body::from_stream(relay_stream(first, rx, state.shutdown.clone()));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The hosts to ask: `only`, or every registered host that reported `app`.
async fn hosts_of(state: &AppState, app: &str, only: Option<&str>) -> ApiResult<Vec<HostRecord>> {
    if let Some(h) = only {
        return match state.store.host(h).await? {
            Some(rec) => Ok(vec![rec]),
            None => Err(ApiError::NotFound(format!(
                "no host `{h}` is registered (slipway hosts lists them)"
            ))),
        };
    }
    let mut names: Vec<String> = state
        .store
        .statuses(Some(app))
        .await?
        .into_iter()
        .map(|s| s.host)
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for n in names {
        if let Some(rec) = state.store.host(&n).await? {
            out.push(rec);
        }
    }
    if out.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no host runs app `{app}`: none has reported a release of it (slipway status {app})"
        )));
    }
    Ok(out)
}

/// `10m` (back from now) or an RFC 3339 time, as RFC 3339.
fn parse_since(s: &str) -> ApiResult<String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(rfc3339(SystemTime::now() - d));
    }
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => Ok(rfc3339(t)),
        Err(_) => Err(ApiError::BadRequest(format!(
            "since `{s}`: give a duration back from now (`10m`, `2h`) or an RFC 3339 time \
             (`2026-01-02T15:04:05Z`)"
        ))),
    }
}

/// A duration to the second, as `2m 3s`.
fn ago(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

/// The reader's response: the frames known at once, then the uploads' frames as they come,
/// a keep-alive when idle; ends when every upload has (or the controller shuts down).
fn relay_stream(
    first: VecDeque<LogFrame>,
    rx: mpsc::Receiver<LogFrame>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::unfold(
        (first, rx, shutdown),
        |(mut first, mut rx, mut shutdown)| async move {
            if let Some(f) = first.pop_front() {
                return Some((Ok(Bytes::from(f.to_ndjson())), (first, rx, shutdown)));
            }
            let frame = tokio::select! {
                f = rx.recv() => f?,
                _ = tokio::time::sleep(defaults::LOG_KEEP_ALIVE) => LogFrame::default(),
                _ = shutdown.wait_for(|s| *s) => return None,
            };
            Some((Ok(Bytes::from(frame.to_ndjson())), (first, rx, shutdown)))
        },
    )
}

#[derive(Deserialize)]
pub struct PollQuery {
    /// How long to wait, e.g. `25s` (capped).
    wait: Option<String>,
}

/// `GET /v1/hosts/{host}/log-requests[?wait=25s]`: the log requests waiting for this host,
/// at once or as soon as one comes; an empty list after `wait`.
pub async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    Query(q): Query<PollQuery>,
) -> ApiResult<Json<LogRequests>> {
    caller.require_host(&host, "read the log requests")?;
    let wait = match q.wait.as_deref() {
        None => defaults::LOG_POLL_WAIT,
        Some(w) => humantime::parse_duration(w)
            .map_err(|e| ApiError::BadRequest(format!("wait `{w}`: {e}")))?,
    }
    .min(state.rollouts.long_poll_max_wait);
    if state.store.host(&host).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "host `{host}` is not registered: the agent registers first"
        )));
    }
    let guard = state.log_relay.poll(&host);
    let mut shutdown = state.shutdown.clone();
    let deadline = tokio::time::Instant::now() + wait;
    let requests = tokio::select! {
        r = guard.next(deadline) => r,
        _ = shutdown.wait_for(|s| *s) => Vec::new(),
    };
    Ok(Json(LogRequests { requests }))
}

/// `POST /v1/hosts/{host}/logs/{id}`: the agent's upload for request `id`, NDJSON frames,
/// relayed to the reader until the body ends or the reader leaves (then `410`).
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    caller.require_host(&host, "upload the logs")?;
    let Some(up) = state.log_relay.start_upload(&host, &id) else {
        return Err(ApiError::NotFound(format!(
            "no log request `{id}` waits for host `{host}`: it timed out or its reader left"
        )));
    };
    let deadline = (!up.follow).then(|| tokio::time::Instant::now() + defaults::LOG_UPLOAD_MAX);
    let gone = || {
        (
            StatusCode::GONE,
            Json(serde_json::json!({"error": "the reader of these logs left"})),
        )
            .into_response()
    };
    match relay_upload(&host, body, &up.frames, deadline).await {
        Relayed::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        Relayed::ReaderGone => Ok(gone()),
        Relayed::Failed(why) => {
            let _ = up.frames.send(frame_for(&host, why.clone())).await;
            Err(ApiError::BadRequest(why))
        }
    }
}

enum Relayed {
    Done,
    ReaderGone,
    Failed(String),
}

fn frame_for(host: &str, error: String) -> LogFrame {
    LogFrame {
        host: Some(host.to_string()),
        ..LogFrame::error(error)
    }
}

/// Splits the upload into frames, tags them with `host` and sends them on.
async fn relay_upload(
    host: &str,
    body: Body,
    frames: &FrameSender,
    deadline: Option<tokio::time::Instant>,
) -> Relayed {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let cut = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(cut);
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            _ = frames.closed() => return Relayed::ReaderGone,
            _ = &mut cut => return Relayed::Failed(format!(
                "host {host}: the upload took longer than {}; cut",
                ago(defaults::LOG_UPLOAD_MAX)
            )),
        };
        let bytes = match chunk {
            None => return Relayed::Done,
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                return Relayed::Failed(format!("host {host}: the upload broke off: {e}"))
            }
        };
        buf.extend_from_slice(&bytes);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let mut frame: LogFrame = match serde_json::from_slice(&line) {
                Ok(f) => f,
                Err(e) => {
                    return Relayed::Failed(format!(
                        "host {host}: a frame of the upload is not a log frame: {e}"
                    ))
                }
            };
            if frame.is_keep_alive() {
                continue;
            }
            frame.host = Some(host.to_string());
            if frames.send(frame).await.is_err() {
                return Relayed::ReaderGone;
            }
        }
        if buf.len() > defaults::LOG_FRAME_MAX {
            return Relayed::Failed(format!(
                "host {host}: a frame of the upload is longer than {} bytes",
                defaults::LOG_FRAME_MAX
            ));
        }
    }
}
