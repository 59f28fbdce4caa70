//! The event log: release created, wave started, host phase, promoted, paused, halted,
//! rolled back, host joined. Each event is stored (with an id, so `GET /v1/events?since=`
//! resumes) and broadcast to this controller's SSE streams; old ones are pruned.
//! Recording an event never fails what caused it: an error is logged and the action stands.

use crate::api::AppState;
use crate::defaults;
use crate::store::EventRecord;
use serde_json::Value;
use std::time::SystemTime;
use tokio::sync::{broadcast, watch};

/// Live delivery on this controller. (With several controllers on PostgreSQL a stream sees
/// the events of its own replica live and every replica's on resume from the store.)
pub struct Events {
    tx: broadcast::Sender<EventRecord>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(defaults::EVENTS_BUFFER).0,
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }
}

/// Stores and broadcasts one event.
pub async fn emit(state: &AppState, kind: &str, app: Option<&str>, detail: Value) {
    let add = state.store.add_event(kind, app, &detail, SystemTime::now());
    match state.metrics.time("add_event", add).await {
        Ok(ev) => {
            let _ = state.events.tx.send(ev);
        }
        Err(e) => tracing::warn!(kind, app, error = %e, "could not record event"),
    }
}

/// Prunes events past the retention until `shutdown`.
pub async fn prune(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let before = SystemTime::now() - defaults::EVENTS_KEEP_FOR;
        match state
            .store
            .prune_events(before, defaults::EVENTS_KEEP_ROWS)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old events pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning events failed; retrying later"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(defaults::EVENTS_PRUNE_INTERVAL) => {}
        }
    }
}
