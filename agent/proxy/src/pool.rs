//! Connections to one upstream. Each is an HTTP/1.1 sender plus its connection future, driven
//! by whichever client-connection task uses it (no task per upstream connection, no wakeups
//! across threads per request). Idle ones wait un-polled in a LIFO stack behind a short
//! mutex; one whose upstream hung up is noticed (and dropped) before anything is sent on it.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;
use crate::defaults;

/// The connection future (hyper's upgradeable connection, whose type cannot be named).
type Connection = dyn Future<Output = hyper::Result<()>> + Send;

/// Why no connection to an upstream could be opened (answered with a 502).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: no answer within {timeout:?}")]
    Timeout {
        addr: SocketAddr,
        timeout: std::time::Duration,
    },
    #[error("HTTP/1.1 handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("HTTP/2 (h2c) handshake with {addr} failed: {source}")]
    H2Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// One connection to an upstream: the sender and the connection future that does its I/O.
pub(crate) struct UpstreamConn {
    send: http1::SendRequest<RequestBody>,
    /// The connection future; dropped as soon as it finishes (closed, failed or upgraded),
    /// which fails or hands back (unsent) whatever was queued on `send`.
    conn: Option<Pin<Box<Connection>>>,
    /// When it last went idle; stale ones are not reused.
    idle_since: Instant,
}

impl UpstreamConn {
    /// Drives the connection's I/O (reads, writes, keep-alive bookkeeping).
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>) {
        let Some(conn) = &mut self.conn else { return };
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            self.conn = None;
            if let Err(e) = r {
                debug!(error = %e, "upstream connection ended with an error");
            }
        }
    }

    /// Waits until the connection can take a request; false if it has closed meanwhile.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.poll_io(cx);
            if self.ended() {
                return Poll::Ready(false);
            }
            self.send.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile.
    /// If the request was never written, hyper hands it back in the error.
    async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        let mut response = pin!(self.send.try_send_request(req));
        poll_fn(|cx| {
            self.poll_io(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// The connection has finished; nothing more can be sent on it.
    pub(crate) fn ended(&self) -> bool {
        self.conn.is_none()
    }

    /// Can carry another request right now (its last exchange is complete).
    fn reusable(&self) -> bool {
        !self.ended() && self.send.is_ready()
    }
}

/// Why a request got no response from its upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("request to the upstream failed: {0}")]
    Request(#[source] hyper::Error),
}

/// Connections to one upstream. Dropping the pool closes its idle connections.
pub(crate) struct Pool {
    addr: SocketAddr,
    /// Idle connections, one stack per worker thread: a connection is registered with its
    /// worker's reactor, so it is only reused there.
    idle: Box<[Mutex<Vec<UpstreamConn>>]>,
}

/// Pool shards: one per CPU (the default worker count); more workers share shards.
pub(crate) fn shards() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).finish()
    }
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Pool {
            addr,
            idle: (0..shards()).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Sends `req` on an idle connection, or a new one if none is idle; answers the response
    /// head and the connection, which must go back with [`Pool::put`] once the response body
    /// is through.
    ///
    /// Retry rule: a request is resent only when hyper hands it back unwritten (the pooled
    /// connection turned out closed before a byte of it went out). Once any byte may have
    /// reached the upstream, a failure is final — no method is replayed.
    pub(crate) async fn forward(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, UpstreamConn), ForwardError> {
        loop {
            let (mut conn, fresh) = match self.take() {
                Some(c) => (c, false),
                None => (self.connect().await?, true),
            };
            if !fresh && !conn.ready().await {
                continue; // hung up while idle; nothing was sent on it
            }
            match conn.send(req).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(ForwardError::Request(e.into_error())),
                },
            }
        }
    }

    /// Returns a connection whose exchange is complete; others (and extras) are closed.
    pub(crate) fn put(&self, mut conn: UpstreamConn) {
        if !conn.reusable() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < defaults::UPSTREAM_POOL_MAX_IDLE {
            idle.push(conn);
        }
    }

    /// The most recently used idle connection, unless it (and so every older one) is stale.
    fn take(&self) -> Option<UpstreamConn> {
        let mut idle = self.shard().lock().unwrap_or_else(|p| p.into_inner());
        let conn = idle.pop()?;
        if conn.idle_since.elapsed() < defaults::UPSTREAM_POOL_IDLE {
            return Some(conn);
        }
        let stale = std::mem::take(&mut *idle);
        drop(idle);
        drop((conn, stale));
        None
    }

    fn shard(&self) -> &Mutex<Vec<UpstreamConn>> {
        &self.idle[crate::workers::current() % self.idle.len()]
    }

    async fn connect(&self) -> Result<UpstreamConn, ConnectError> {
        let addr = self.addr;
        let timeout = defaults::UPSTREAM_CONNECT_TIMEOUT;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ConnectError::Tcp { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        };
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        Ok(UpstreamConn {
            send,
            conn: Some(Box::pin(conn.with_upgrades())),
            idle_since: Instant::now(),
        })
    }
}

/// Keeps driving an upgraded exchange's connection until it hands its socket over.
pub(crate) fn finish_upgrade(mut conn: UpstreamConn) {
    tokio::spawn(async move {
        poll_fn(|cx| {
            conn.poll_io(cx);
            if conn.ended() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    });
}
