//! One notification target's delivery task: the body, its signature, and retries.
//!
//! The body is `{id, at, kind, app, seq, host, text, detail, controller}`; `text` is one
//! human line, so Slack and Mattermost incoming webhooks show it as they are. With a secret
//! the request carries `X-Slipway-Timestamp: <unix seconds>` and
//! `X-Slipway-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`; a receiver
//! recomputes it and refuses old timestamps (replays). `X-Slipway-Event` names the kind and
//! `X-Slipway-Delivery` the event id (the same on every retry, so receivers can deduplicate).

use super::NotifyConfig;
use crate::api::Metrics;
use crate::store::EventRecord;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The JSON body for `ev`.
pub fn payload(ev: &EventRecord, controller: &str) -> Value {
    let d = &ev.detail;
    json!({
        "id": ev.id,
        "at": ev.at,
        "kind": ev.kind,
        "app": ev.app,
        "seq": d.get("seq"),
        "host": d.get("host"),
        "text": text(ev),
        "detail": d,
        "controller": controller,
    })
}

/// One line for a chat channel, e.g. `slipway: web release 3 halted: 2 of 4 hosts failed`.
pub fn text(ev: &EventRecord) -> String {
    let d = &ev.detail;
    let s = |k: &str| d.get(k).and_then(Value::as_str);
    let app = ev.app.as_deref().unwrap_or("-");
    let seq = d.get("seq").and_then(Value::as_u64);
    let rel = match seq {
        Some(n) => format!("{app} release {n}"),
        None => app.to_string(),
    };
    let mut line = match ev.kind.as_str() {
        "release.created" => format!(
            "{rel} created: {}{}",
            s("image").unwrap_or("?"),
            s("by").map(|b| format!(" by {b}")).unwrap_or_default()
        ),
        "wave.started" => format!(
            "{rel}: wave {} of {} started",
            d.get("wave").and_then(Value::as_u64).unwrap_or(0),
            d.get("waves").and_then(Value::as_u64).unwrap_or(0)
        ),
        "host.phase" => format!(
            "{rel} on {}: {}",
            s("host").unwrap_or("?"),
            s("phase").unwrap_or("?")
        ),
        "host.joined" => format!("host {} joined", s("host").unwrap_or("?")),
        "rollout.rolled-back" => format!(
            "{rel} rolled back to release {} (as release {})",
            d.get("to_seq").and_then(Value::as_u64).unwrap_or(0),
            d.get("rollback_seq").and_then(Value::as_u64).unwrap_or(0)
        ),
        k => match k.strip_prefix("rollout.") {
            Some(state) => format!(
                "{rel} {}{}",
                if state == "done" {
                    "live everywhere"
                } else {
                    state
                },
                s("by").map(|b| format!(" by {b}")).unwrap_or_default()
            ),
            None => format!("{k} {app}"),
        },
    };
    if let Some(r) = s("reason") {
        line.push_str(": ");
        line.push_str(r);
    }
    format!("slipway: {line}")
}

/// `sha256=<hex>` over `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

pub(super) struct Worker {
    pub target: NotifyConfig,
    pub http: reqwest::Client,
    pub controller: String,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Arc<EventRecord>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let ev = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                ev = rx.recv() => match ev { Some(ev) => ev, None => return },
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = self.deliver(&ev) => {}
            }
        }
    }

    async fn deliver(&self, ev: &EventRecord) {
        let t = &self.target;
        let body = serde_json::to_vec(&payload(ev, &self.controller)).expect("JSON encodes");
        let mut wait = t.backoff;
        for attempt in 1..=t.attempts {
            match self.attempt(ev, &body).await {
                Ok(()) => {
                    self.metrics.notify_sent.inc();
                    tracing::debug!(url = %t.url, kind = %ev.kind, id = ev.id, attempt, "notification sent");
                    return;
                }
                Err(e) if attempt < t.attempts => {
                    tracing::info!(url = %t.url, kind = %ev.kind, id = ev.id, attempt, error = %e,
                        retry_in = ?wait, "notification failed; retrying");
                    self.metrics.notify_retries.inc();
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::warn!(url = %t.url, kind = %ev.kind, id = ev.id, attempts = attempt,
                        error = %e, "notification given up");
                    self.metrics.notify_failed.inc();
                }
            }
        }
    }

    async fn attempt(&self, ev: &EventRecord, body: &[u8]) -> Result<(), String> {
        let t = &self.target;
        let mut req = self
            .http
            .post(&t.url)
            .timeout(t.timeout)
            .header("content-type", "application/json")
            .header("x-slipway-event", &ev.kind)
            .header("x-slipway-delivery", ev.id.to_string());
        if let Some(secret) = &t.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            req = req
                .header("x-slipway-timestamp", now.to_string())
                .header("x-slipway-signature", signature(secret, now, body));
        }
        let resp = req
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_signature() {
        let ev = EventRecord {
            id: 7,
            at: "2026-01-01T00:00:00Z".into(),
            kind: "rollout.halted".into(),
            app: Some("web".into()),
            detail: json!({"seq": 3, "reason": "2 of 4 hosts failed"}),
        };
        assert_eq!(
            text(&ev),
            "slipway: web release 3 halted: 2 of 4 hosts failed"
        );
        let p = payload(&ev, "c1");
        assert_eq!(
            (p["seq"].as_u64(), p["kind"].as_str()),
            (Some(3), Some("rollout.halted"))
        );
        // RFC 4231-style check against an independent computation of the same MAC.
        let sig = signature("k", 1, b"{}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let want = hex::encode(ring::hmac::sign(&key, b"1.{}").as_ref());
        assert_eq!(sig, format!("sha256={want}"));
    }
}
