//! Bodies on their way through: the client's request body (bytes counted) and the upstream's
//! response body, which holds its request in flight until the client has it all.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::access_log::{AccessLog, Pending};
use crate::client_io::Unflushed;
use crate::pool::UpstreamConn;
use crate::upstream::{InFlight, UpstreamState};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A client's request body on its way upstream; counts bytes.
pub(crate) struct RequestBody {
    pub(crate) inner: Incoming,
    pub(crate) upstream: Arc<UpstreamState>,
    /// Bytes still allowed before the body is refused as too large.
    pub(crate) remaining: u64,
    /// The configured maximum, for the error.
    pub(crate) limit: u64,
}

/// A request body went past the configured maximum (answered 413).
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
pub(crate) struct BodyTooLarge(pub(crate) u64);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                let n = d.len() as u64;
                if n > self.remaining {
                    return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.limit)))));
                }
                self.remaining -= n;
                self.upstream
                    .metrics
                    .bytes_in
                    .fetch_add(d.len() as u64, Relaxed);
            }
        }
        r.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream's response body on its way to the client. Holds the request in flight until
/// the last byte is sent (or the client goes away); records latency and bytes. Drives the
/// upstream connection while it streams, and gives it back to the pool once complete.
pub(crate) struct ResponseBody {
    pub(crate) inner: Incoming,
    pub(crate) conn: Option<UpstreamConn>,
    pub(crate) flight: Option<InFlight>,
    pub(crate) start: Instant,
    pub(crate) unflushed: Arc<Unflushed>,
    /// HTTP/2 upstream: trailers may follow the last data byte, so the body ends only
    /// when the upstream says so (hyper's Incoming reports the end once content-length
    /// bytes are in).
    pub(crate) trailers: bool,
    /// Body bytes sent to the client, for the access log.
    pub(crate) bytes: u64,
    /// The access log line to write once the response is through.
    pub(crate) log: Option<(Arc<AccessLog>, Pending)>,
}

impl ResponseBody {
    /// Records the request as done; `complete` when the whole body went through.
    fn finish(&mut self, complete: bool) {
        if let Some((log, p)) = self.log.take() {
            p.write(&log, self.bytes);
        }
        let conn = self.conn.take();
        if let Some(f) = self.flight.take() {
            let up = f.upstream();
            up.metrics.latency.observe(self.start.elapsed());
            if let (true, Some(c)) = (complete, conn) {
                up.pool.put(c);
            }
            // In flight until hyper has written the last bytes to the client.
            self.unflushed.push(f);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body hyper never polled (HEAD, 204, 304, empty) is complete already.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(c) = &mut this.conn {
            c.poll_io(cx);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if let (Some(d), Some(fl)) = (f.data_ref(), &this.flight) {
                    let m = &fl.upstream().metrics;
                    m.bytes_out.fetch_add(d.len() as u64, Relaxed);
                }
                if !this.trailers && this.inner.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                // Only a body that waits on its upstream can be cut.
                if let Some(fl) = &mut this.flight {
                    if fl.poll_cut(cx).is_ready() {
                        this.flight = None;
                        this.conn = None;
                        return Poll::Ready(Some(Err("response cut: drain timed out".into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
