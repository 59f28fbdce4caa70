//! Pause and maintenance of an app. Paused: new requests are held (for a migration, say)
//! and released on resume, or answered 503 once they waited the pause timeout. Stopped:
//! requests get a 503 with the operator's page. The mode is persisted with the route, so
//! both survive a proxy restart. Read per request from an arc-swap (no lock).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What an app does with requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "lowercase", deny_unknown_fields)]
pub enum Mode {
    /// Requests go to the upstream.
    #[default]
    Running,
    /// Requests wait, at most `timeout_ms` each, until resumed.
    Paused { timeout_ms: u64 },
    /// Requests get a 503 with `message` as the page.
    Stopped { message: String },
}

impl Mode {
    pub(crate) fn is_running(&self) -> bool {
        *self == Mode::Running
    }
}

/// The live mode of one app and the signal that wakes held requests.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    mode: ArcSwap<Mode>,
    changed: Notify,
}

/// What a request may do after passing the gate.
pub(crate) enum Pass {
    Go,
    /// Stopped: answer this page.
    Stopped(String),
    /// Still paused after its timeout.
    TimedOut,
}

impl Gate {
    pub(crate) fn mode(&self) -> Mode {
        (**self.mode.load()).clone()
    }

    pub(crate) fn set(&self, m: Mode) {
        self.mode.store(Arc::new(m));
        self.changed.notify_waiters();
    }

    /// Lets a request through, holding it while the app is paused.
    pub(crate) async fn pass(&self) -> Pass {
        let mut deadline = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let timeout = match &**self.mode.load() {
                Mode::Running => return Pass::Go,
                Mode::Stopped { message } => return Pass::Stopped(message.clone()),
                Mode::Paused { timeout_ms } => Duration::from_millis(*timeout_ms),
            };
            let until = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(until) => return Pass::TimedOut,
            }
        }
    }

    /// True when requests need [`Gate::pass`] (cheap check for the hot path).
    pub(crate) fn open(&self) -> bool {
        self.mode.load().is_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paused_requests_wait_for_resume_or_time_out() {
        let g = Arc::new(Gate::default());
        assert!(matches!(g.pass().await, Pass::Go));
        g.set(Mode::Paused { timeout_ms: 5000 });
        let g2 = g.clone();
        let held = tokio::spawn(async move { matches!(g2.pass().await, Pass::Go) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!held.is_finished());
        g.set(Mode::Running);
        assert!(held.await.unwrap());
        g.set(Mode::Paused { timeout_ms: 30 });
        assert!(matches!(g.pass().await, Pass::TimedOut));
        g.set(Mode::Stopped {
            message: "down".into(),
        });
        assert!(matches!(g.pass().await, Pass::Stopped(m) if m == "down"));
        let j = serde_json::to_string(&Mode::Paused { timeout_ms: 5 }).unwrap();
        assert_eq!(j, r#"{"state":"paused","timeout_ms":5}"#);
    }
}
