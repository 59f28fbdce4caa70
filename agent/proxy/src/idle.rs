//! Idle client connections: a connection with no request in flight (counted until its
//! response body is done or dropped) for `client_idle_timeout` is shut down gracefully, so
//! HTTP/2 clients get a GOAWAY and idle HTTP/1.1 keep-alive connections are closed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// Requests in flight on one connection, and when the last one ended. Two atomics per
/// request and no wakeup: the idle watcher shares its task with the connection, so waking
/// it per request would poll the whole HTTP/2 connection twice more per stream.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// When the last request ended, in nanoseconds since `epoch`.
    last_end: AtomicU64,
    epoch: Instant,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Counts a request from now until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`; never while one is.
    /// Checked every `timeout` at most, so a connection is closed at most `timeout` late.
    pub(crate) async fn idle(&self, timeout: Duration) {
        let mut deadline = Instant::now() + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.in_flight.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let ended = self.epoch + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
            if ended + timeout <= Instant::now() {
                return;
            }
            deadline = ended + timeout;
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.epoch.elapsed().as_nanos() as u64;
        a.last_end.fetch_max(now, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it ends or is dropped
/// (a long SSE stream is not idle).
pub(crate) struct Tracked<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, guard: InFlight) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            self.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_the_last_request_ends() {
        let a = Arc::new(Activity::new());
        let t = Duration::from_secs(10);
        let r = a.start();
        // In flight: not idle, however long it takes.
        assert!(tokio::time::timeout(Duration::from_secs(60), a.idle(t))
            .await
            .is_err());
        drop(r);
        let before = tokio::time::Instant::now();
        a.idle(t).await;
        assert!(before.elapsed() >= t);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_restarts_the_idle_clock() {
        let a = Arc::new(Activity::new());
        let t = Duration::from_secs(10);
        let a2 = a.clone();
        let poke = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            drop(a2.start());
        });
        let before = tokio::time::Instant::now();
        a.idle(t).await;
        poke.await.unwrap();
        assert!(before.elapsed() >= Duration::from_secs(18));
    }
}
