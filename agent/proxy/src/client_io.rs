//! A client connection's socket as hyper sees it. Requests whose response body has been
//! handed to hyper stay in flight until hyper has flushed those bytes to the socket, so a
//! drain never reports an upstream idle while its last response is still in our buffers.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::upstream::InFlight;

/// Requests done on the upstream side, waiting for their last bytes to reach the socket.
#[derive(Debug, Default)]
pub(crate) struct Unflushed(Mutex<Vec<InFlight>>);

impl Unflushed {
    pub(crate) fn push(&self, f: InFlight) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(f);
    }

    fn release(&self) {
        let done = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        drop(done);
    }
}

/// The client socket; releases [`Unflushed`] requests on every completed flush.
pub(crate) struct ClientIo<S> {
    inner: TokioIo<S>,
    unflushed: Arc<Unflushed>,
}

impl<S> ClientIo<S> {
    pub(crate) fn new(stream: S, unflushed: Arc<Unflushed>) -> Self {
        ClientIo {
            inner: TokioIo::new(stream),
            unflushed,
        }
    }
}

impl<S> Drop for ClientIo<S> {
    fn drop(&mut self) {
        self.unflushed.release();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Read for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Write for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if r.is_ready() {
            this.unflushed.release();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        if r.is_ready() {
            this.unflushed.release();
        }
        r
    }
}
