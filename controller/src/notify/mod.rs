//! Notifications: every `[[notify]]` target in `controller.toml` gets a JSON POST for each
//! event it asks for, signed with HMAC-SHA256 when it has a secret, and retried with
//! exponential backoff. Each target has its own task and a bounded queue: a slow or broken
//! receiver loses its own notifications (logged, counted), never delays a rollout.
//!
//! ```toml
//! [[notify]]
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! events = ["rollout.halted", "rollout.rolled-back", "rollout.done"]  # or ["*"], ["rollout.*"]
//! secret = "a long random string"   # optional: X-Slipway-Signature
//! timeout = "5s"                    # per attempt
//! attempts = 5                      # tries per event, backoff 1s, 2s, 4s, ...
//! ```

mod deliver;

pub use deliver::{payload, signature, text};

use crate::api::AppState;
use crate::store::EventRecord;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Events a target may name (besides `*` and `PREFIX.*`).
pub const KINDS: &[&str] = &[
    "release.created",
    "wave.started",
    "host.phase",
    "host.joined",
    "rollout.done",
    "rollout.halted",
    "rollout.paused",
    "rollout.resumed",
    "rollout.promoted",
    "rollout.aborted",
    "rollout.rolled-back",
    "rollout.running",
    "rollout.awaiting-promotion",
    "rollout.superseded",
    crate::gitops::SYNC_REQUESTED,
];

/// Notifications waiting per target; past this the newest are dropped (and counted).
pub const QUEUE: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://` or `https://` URL that receives the POSTs.
    pub url: String,
    /// Event kinds to send: exact kinds, `PREFIX.*`, or `*` for all.
    pub events: Vec<String>,
    /// Key of the HMAC-SHA256 signature; without it requests are unsigned.
    #[serde(default)]
    pub secret: Option<String>,
    /// Per attempt.
    #[serde(default = "d_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per event before it is given up.
    #[serde(default = "d_attempts")]
    pub attempts: u32,
    /// First retry delay; doubles each time (capped at a minute).
    #[serde(default = "d_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

fn d_timeout() -> Duration {
    Duration::from_secs(5)
}
fn d_attempts() -> u32 {
    5
}
fn d_backoff() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, thiserror::Error)]
#[error("[[notify]] {url}: {reason}")]
pub struct InvalidNotify {
    pub url: String,
    pub reason: String,
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), InvalidNotify> {
        let bad = |reason: String| InvalidNotify {
            url: self.url.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&self.url).map_err(|e| bad(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("url must be http:// or https:// with a host".into()));
        }
        if self.events.is_empty() {
            return Err(bad(
                "events is empty: name the kinds to send, or \"*\" for all".into(),
            ));
        }
        for e in &self.events {
            let known = e == "*"
                || KINDS.contains(&e.as_str())
                || e.strip_suffix(".*").is_some_and(|p| {
                    KINDS
                        .iter()
                        .any(|k| k.split('.').next() == Some(p) && !p.is_empty())
                });
            if !known {
                return Err(bad(format!(
                    "unknown event {e:?}; known: *, {}, or PREFIX.*",
                    KINDS.join(", ")
                )));
            }
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout must be above zero".into()));
        }
        if self.attempts == 0 {
            return Err(bad("attempts must be at least 1".into()));
        }
        if self.secret.as_deref() == Some("") {
            return Err(bad(
                "secret is empty: remove it or set a long random string".into(),
            ));
        }
        Ok(())
    }

    /// Whether this target wants events of `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|e| {
            e == "*"
                || e == kind
                || e.strip_suffix(".*")
                    .is_some_and(|p| kind.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
        })
    }
}

/// Starts one delivery task per target and the dispatcher that feeds them from the event
/// bus, until `shutdown`. Subscribes before returning, so no later event is missed.
pub fn spawn(state: &AppState, targets: Vec<NotifyConfig>, shutdown: watch::Receiver<bool>) {
    if targets.is_empty() {
        return;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let http = reqwest::Client::builder()
        .user_agent(concat!("slipway-controller/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("building the notification HTTP client");
    let mut queues = Vec::new();
    for t in targets {
        let (tx, rx) = mpsc::channel::<Arc<EventRecord>>(QUEUE);
        tracing::info!(url = %t.url, events = ?t.events, "notifications enabled");
        let worker = deliver::Worker {
            target: t.clone(),
            http: http.clone(),
            controller: host.clone(),
            metrics: state.metrics.clone(),
        };
        tokio::spawn(worker.run(rx, shutdown.clone()));
        queues.push((t, tx));
    }
    let mut events = state.events.subscribe();
    let metrics = state.metrics.clone();
    let mut shutdown = shutdown;
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                ev = events.recv() => ev,
            };
            let ev = match ev {
                Ok(ev) => Arc::new(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "notifications fell behind the event bus");
                    metrics.notify_dropped.inc_by(n);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for (t, tx) in &queues {
                if t.wants(&ev.kind) && tx.try_send(ev.clone()).is_err() {
                    tracing::warn!(url = %t.url, kind = %ev.kind, "notification queue full; dropped");
                    metrics.notify_dropped.inc();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(events: &[&str]) -> NotifyConfig {
        toml::from_str(&format!(
            "url = \"http://127.0.0.1:9/x\"\nevents = {events:?}\n"
        ))
        .unwrap()
    }

    #[test]
    fn filters_by_kind_prefix_and_star() {
        let c = cfg(&["rollout.*", "release.created"]);
        c.validate().unwrap();
        assert!(c.wants("rollout.halted") && c.wants("release.created"));
        assert!(!c.wants("host.phase") && !c.wants("rolloutx.y"));
        assert!(cfg(&["*"]).wants("host.phase"));
    }

    #[test]
    fn refuses_bad_targets() {
        let e = cfg(&["rollout.halt"]).validate().unwrap_err().to_string();
        assert!(e.contains("unknown event \"rollout.halt\""), "{e}");
        assert!(cfg(&[]).validate().is_err());
        let mut c = cfg(&["*"]);
        c.url = "ftp://x/".into();
        assert!(c.validate().unwrap_err().to_string().contains("http://"));
    }
}
