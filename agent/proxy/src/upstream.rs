//! An upstream (one container's address) and the live state the proxy keeps for it:
//! in-flight work, the cut signal used at a drain timeout, and its metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use slipway_proto::ContainerId;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use crate::drain::{Tracked, Tracker};
use crate::h2c::H2c;
use crate::metrics::UpstreamMetrics;
use crate::pool::Pool;

/// Where an app's traffic goes: a container (by id) at an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Container id; names the upstream in stats, drain and logs.
    pub id: ContainerId,
    pub addr: SocketAddr,
}

/// Live state of one upstream of one app.
#[derive(Debug)]
pub(crate) struct UpstreamState {
    pub(crate) upstream: Upstream,
    /// `addr` as a Host header, for requests that come without one.
    pub(crate) host: HeaderValue,
    pub(crate) metrics: UpstreamMetrics,
    /// HTTP connections to this upstream (its own: no lock shared across upstreams).
    pub(crate) pool: Pool,
    /// The h2c connection, for apps that set `upstream_h2c`.
    pub(crate) h2c: H2c,
    in_flight: Arc<Tracker>,
    /// The drain-timeout cut, one per worker shard: every request waits on its own worker's,
    /// so no lock is shared across worker threads per request; `cut_all` signals them all.
    cut: Box<[Arc<Notify>]>,
    /// Websockets and SSE streams in flight, cut first when a drain's grace ends.
    long_lived: Arc<Tracker>,
    cut_long: Arc<Notify>,
}

impl UpstreamState {
    pub(crate) fn new(upstream: Upstream) -> Self {
        let host = HeaderValue::try_from(upstream.addr.to_string())
            .expect("a socket address is a valid header value");
        UpstreamState {
            pool: Pool::new(upstream.addr),
            h2c: H2c::new(upstream.addr),
            upstream,
            host,
            metrics: UpstreamMetrics::default(),
            in_flight: Arc::new(Tracker::default()),
            cut: (0..crate::pool::shards())
                .map(|_| Arc::new(Notify::new()))
                .collect(),
            long_lived: Arc::new(Tracker::default()),
            cut_long: Arc::new(Notify::new()),
        }
    }

    /// Counts one request/connection in flight until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        // The cut future exists before the count goes up: whoever sees this unit counted
        // and then calls `cut_all` is guaranteed to reach it.
        let shard = &self.cut[crate::workers::current() % self.cut.len()];
        let cut = Box::pin(shard.clone().notified_owned());
        let tracked = self.in_flight.enter();
        InFlight {
            upstream: self.clone(),
            cut,
            long: None,
            _tracked: tracked,
        }
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.count()
    }

    pub(crate) fn tracker(&self) -> &Tracker {
        &self.in_flight
    }

    /// Cuts the websockets and SSE streams in flight (a drain's grace is over); returns how
    /// many there were.
    pub(crate) fn cut_long_lived(&self) -> u64 {
        let n = self.long_lived.count();
        self.cut_long.notify_waiters();
        n
    }

    /// Websockets and SSE streams in flight now.
    pub(crate) fn long_lived_count(&self) -> u64 {
        self.long_lived.count()
    }

    /// Signals every unit in flight right now to stop; returns how many there were.
    pub(crate) fn cut_all(&self) -> u64 {
        let n = self.in_flight.count();
        for c in &self.cut {
            c.notify_waiters();
        }
        n
    }
}

/// One request or connection in flight on an upstream.
#[derive(Debug)]
pub(crate) struct InFlight {
    upstream: Arc<UpstreamState>,
    cut: Pin<Box<OwnedNotified>>,
    /// Set for websockets and SSE: the early cut at the end of a drain's grace.
    long: Option<(Pin<Box<OwnedNotified>>, Tracked)>,
    _tracked: Tracked,
}

impl InFlight {
    pub(crate) fn upstream(&self) -> &Arc<UpstreamState> {
        &self.upstream
    }

    /// Marks this unit a long-lived stream (websocket, SSE): a drain cuts it after its
    /// grace instead of waiting for it until the drain timeout.
    pub(crate) fn long_lived(&mut self) {
        if self.long.is_none() {
            let u = &self.upstream;
            let cut = Box::pin(u.cut_long.clone().notified_owned());
            self.long = Some((cut, u.long_lived.enter()));
        }
    }

    /// Ready once a drain cut this unit; counts the cut once.
    pub(crate) fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let long = match &mut self.long {
            Some((c, _)) => c.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if long || self.cut.as_mut().poll(cx).is_ready() {
            self.upstream.metrics.cut.fetch_add(1, Relaxed);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Resolves once a drain timeout cut this unit.
    pub(crate) async fn cut(&mut self) {
        std::future::poll_fn(|cx| self.poll_cut(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state() -> Arc<UpstreamState> {
        Arc::new(UpstreamState::new(Upstream {
            id: "c1".parse().unwrap(),
            addr: "127.0.0.1:8080".parse().unwrap(),
        }))
    }

    #[tokio::test]
    async fn cut_reaches_units_in_flight_only() {
        let u = state();
        let mut a = u.begin();
        let mut b = u.begin();
        assert_eq!(u.in_flight(), 2);
        assert_eq!(u.cut_all(), 2);
        tokio::time::timeout(Duration::from_secs(1), a.cut())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.cut())
            .await
            .unwrap();
        assert_eq!(u.metrics.cut.load(Relaxed), 2);
        // A unit started after the cut is not affected by it.
        let mut c = u.begin();
        assert!(tokio::time::timeout(Duration::from_millis(30), c.cut())
            .await
            .is_err());
        drop((a, b));
        assert_eq!(u.in_flight(), 1);
    }

    #[test]
    fn upstream_json_shape() {
        let u = Upstream {
            id: "abc".parse().unwrap(),
            addr: "10.0.0.2:80".parse().unwrap(),
        };
        let j = serde_json::to_string(&u).unwrap();
        assert_eq!(j, r#"{"id":"abc","addr":"10.0.0.2:80"}"#);
    }
}
