//! Verified drain: work is counted in flight with RAII guards, and drain waits for zero.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Counts live work (requests, connections) and wakes waiters when it reaches zero.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    count: AtomicU64,
    idle: Notify,
}

/// Holds one unit of work in a [`Tracker`]; releases it when dropped.
#[derive(Debug)]
pub(crate) struct Tracked(Arc<Tracker>);

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> Tracked {
        self.count.fetch_add(1, Ordering::AcqRel);
        Tracked(self.clone())
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until the count is zero (true) or `deadline` passes (false).
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.count() == 0,
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Outcome of draining one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// True when every in-flight request/connection finished on its own.
    pub drained: bool,
    /// Requests/connections cut at the timeout.
    pub cut: u64,
    /// Time spent waiting.
    pub waited: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_idle_returns_when_last_guard_drops() {
        let t = Arc::new(Tracker::default());
        let g1 = t.enter();
        let g2 = t.enter();
        assert_eq!(t.count(), 2);
        let t2 = t.clone();
        let waiter =
            tokio::spawn(
                async move { t2.wait_idle(Instant::now() + Duration::from_secs(5)).await },
            );
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(g1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(g2);
        assert!(waiter.await.unwrap());
        assert_eq!(t.count(), 0);
    }

    #[tokio::test]
    async fn wait_idle_times_out() {
        let t = Arc::new(Tracker::default());
        let _g = t.enter();
        let start = Instant::now();
        assert!(!t.wait_idle(start + Duration::from_millis(50)).await);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
