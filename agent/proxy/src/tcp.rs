//! L4: raw TCP, routed per connection to the app's current upstream, bytes copied both ways.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::defaults;
use crate::drain::Tracker;
use crate::router::App;
use crate::upstream::UpstreamState;

/// Copy buffer per direction; large enough for bulk transfers without many syscalls.
const COPY_BUF: usize = 64 * 1024;

/// Accepts client connections for one app until the task is aborted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    conns: Arc<Tracker>,
    accept_proxy: bool,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (app, conns) = (app.clone(), conns.clone());
                tokio::spawn(serve_conn(stream, peer, app, conns, accept_proxy));
            }
            Err(e) => {
                warn!(app = %app.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client side of a tunnel; counts bytes as they pass (so cut connections count too).
pub(crate) struct Counted<S> {
    inner: S,
    upstream: Arc<UpstreamState>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, upstream: Arc<UpstreamState>) -> Self {
        Counted { inner, upstream }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.upstream.metrics.bytes_in.fetch_add(n, Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.upstream
                .metrics
                .bytes_out
                .fetch_add(*n as u64, Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve_conn(
    mut client: TcpStream,
    mut peer: std::net::SocketAddr,
    app: Arc<App>,
    conns: Arc<Tracker>,
    accept_proxy: bool,
) {
    let _open = conns.enter();
    if accept_proxy {
        let header = crate::proxy_protocol::read_header(&mut client);
        match tokio::time::timeout(defaults::CLIENT_HEADER_TIMEOUT, header).await {
            Ok(Ok(Some(c))) => peer = c,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return debug!(app = %app.name, %peer, error = %e, "connection refused"),
            Err(_) => return debug!(app = %app.name, %peer, "no PROXY protocol header in time"),
        }
    }
    let Some(up) = app.current.load_full() else {
        debug!(app = %app.name, "no upstream; connection closed");
        return;
    };
    let mut flight = up.begin();
    let m = &up.metrics;
    m.connections.fetch_add(1, Relaxed);
    let connect = tokio::time::timeout(
        defaults::UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(up.upstream.addr),
    );
    let mut server = tokio::select! {
        biased;
        r = connect => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                m.connect_errors.fetch_add(1, Relaxed);
                warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                    error = %e, "upstream connect failed; client connection closed");
                return;
            }
            Err(_) => {
                m.connect_errors.fetch_add(1, Relaxed);
                warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                    "upstream connect timed out; client connection closed");
                return;
            }
        },
        _ = flight.cut() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if app.send_proxy.load(Relaxed) {
        use tokio::io::AsyncWriteExt;
        let local = client.local_addr().unwrap_or(peer);
        let line = crate::proxy_protocol::v1_line(peer, local);
        if let Err(e) = server.write_all(line.as_bytes()).await {
            m.connect_errors.fetch_add(1, Relaxed);
            return warn!(app = %app.name, error = %e, "cannot send the PROXY header upstream");
        }
    }
    let mut client = Counted::new(client, up.clone());
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUF, COPY_BUF) => {
            if let Err(e) = r {
                debug!(app = %app.name, error = %e, "tcp connection ended with an error");
            }
        }
        _ = flight.cut() => {
            debug!(app = %app.name, upstream = %up.upstream.id, "tcp connection cut by drain timeout");
        }
    }
}
