//! `GET /v1/events?app=&since=`: the event log. JSON (oldest first) by default; with
//! `Accept: text/event-stream` a Server-Sent Events stream: the stored events after `since`
//! (or the `Last-Event-ID` header), then new ones as they happen, each with its `id`.

use super::AppState;
use crate::auth::Caller;
use crate::defaults;
use crate::error::ApiResult;
use crate::store::{EventRecord, Store};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this app's events (fleet events such as `host.joined` have no app).
    pub app: Option<String>,
    /// Only events after this id.
    pub since: Option<u64>,
    /// JSON answers: at most this many [default and max: `EVENTS_PAGE`].
    pub limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    caller.require_operator("read events")?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let since = q.since.or(last_event_id).unwrap_or(0);
    let sse = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !sse {
        let limit = q
            .limit
            .unwrap_or(defaults::EVENTS_PAGE)
            .min(defaults::EVENTS_PAGE);
        let events = state
            .store
            .events_since(since, q.app.as_deref(), limit)
            .await?;
        return Ok(Json(events).into_response());
    }
    // Subscribe before reading the backlog, so nothing falls between the two.
    let follow = Follow {
        live: state.events.subscribe(),
        store: state.store.clone(),
        app: q.app,
        last: since,
        backlog: VecDeque::new(),
        backlog_read: false,
        shutdown: state.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let ev = f.next().await?;
        let data = serde_json::to_string(&ev).expect("event serializes");
        let sse = Event::default()
            .id(ev.id.to_string())
            .event(ev.kind.clone())
            .data(data);
        Some((Ok::<_, Infallible>(sse), f))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One SSE subscriber: stored events first, then live ones, each once and in id order.
struct Follow {
    live: broadcast::Receiver<EventRecord>,
    store: Arc<dyn Store>,
    app: Option<String>,
    last: u64,
    backlog: VecDeque<EventRecord>,
    backlog_read: bool,
    shutdown: watch::Receiver<bool>,
}

impl Follow {
    /// The next event; `None` ends the stream (controller shutting down, store failing).
    async fn next(&mut self) -> Option<EventRecord> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                self.last = ev.id;
                return Some(ev);
            }
            if !self.backlog_read {
                if !self.read_backlog().await {
                    return None;
                }
                continue;
            }
            let got = tokio::select! {
                _ = self.shutdown.wait_for(|s| *s) => return None,
                r = self.live.recv() => r,
            };
            match got {
                Ok(ev) if ev.id > self.last && self.wanted(&ev) => {
                    self.last = ev.id;
                    return Some(ev);
                }
                Ok(_) => {}
                // Fell behind the buffer: what was missed is in the store.
                Err(broadcast::error::RecvError::Lagged(_)) => self.backlog_read = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn wanted(&self, ev: &EventRecord) -> bool {
        self.app.is_none() || ev.app == self.app
    }

    /// Reads stored events after `last` in pages; false when the store fails.
    async fn read_backlog(&mut self) -> bool {
        match self
            .store
            .events_since(self.last, self.app.as_deref(), defaults::EVENTS_PAGE)
            .await
        {
            Ok(page) => {
                self.backlog_read = (page.len() as u32) < defaults::EVENTS_PAGE;
                self.backlog.extend(page);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading events for a stream failed; ending it");
                false
            }
        }
    }
}
