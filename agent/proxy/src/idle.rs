//! Idle client connections: a connection with no request in flight (counted until its
//! response body is done or dropped) for `client_idle_timeout` is shut down gracefully, so
//! HTTP/2 clients get a GOAWAY and idle HTTP/1.1 keep-alive connections are closed.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;

/// Requests in flight on one connection; every start and end wakes the idle watcher.
#[derive(Debug)]
pub(crate) struct Activity(watch::Sender<usize>);

impl Activity {
    pub(crate) fn new() -> Self {
        Activity(watch::Sender::new(0))
    }

    /// Counts a request from now until the returned guard is dropped.
    pub(crate) fn start(&self) -> InFlight {
        self.0.send_modify(|n| *n += 1);
        InFlight(self.0.clone())
    }

    /// Resolves once no request has been in flight for `timeout`; never while one is.
    pub(crate) async fn idle(&self, timeout: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            let idle = *rx.borrow_and_update() == 0;
            let changed = rx.changed();
            if idle {
                match tokio::time::timeout(timeout, changed).await {
                    Err(_) => return,
                    Ok(r) => r.expect("the sender lives in self"),
                }
            } else {
                changed.await.expect("the sender lives in self");
            }
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub(crate) struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
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
        let a = Activity::new();
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
        let a = std::sync::Arc::new(Activity::new());
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
