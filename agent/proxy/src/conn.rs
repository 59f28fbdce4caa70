//! Client connections: accepted on a listener, handed to an HTTP worker, TLS terminated on
//! the shared HTTPS listener, then served as HTTP/1.1 or HTTP/2 (by ALPN, or h2c by preface).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::access_log::AccessLog;
use crate::app::App;
use crate::client_io::{ClientIo, Unflushed};
use crate::config::EdgeConfig;
use crate::defaults;
use crate::drain::Tracker;
use crate::edge::{Edge, Scheme};
use crate::headers::RequestIds;
use crate::idle::{Activity, Tracked};
use crate::workers::Workers;

/// What a listener serves: one app (routed by port) or the host table (shared listener).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    App(Arc<App>),
    Edge(Arc<Edge>, Scheme),
}

impl Target {
    fn closing(&self) -> watch::Receiver<bool> {
        match self {
            Target::App(a) => a.closing.subscribe(),
            Target::Edge(e, _) => e.closing.subscribe(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::App(a) => &a.name,
            Target::Edge(_, s) => s.name(),
        }
    }
}

/// Shared by every HTTP listener: request ids, the connection count, workers, TLS.
pub(crate) struct HttpCtx {
    pub(crate) conns: Arc<Tracker>,
    pub(crate) ids: RequestIds,
    pub(crate) cfg: EdgeConfig,
    /// TLS of the shared HTTPS listener (certificates by SNI).
    pub(crate) tls: tokio_rustls::TlsAcceptor,
    /// One JSON line per request, when configured.
    pub(crate) log: Option<Arc<AccessLog>>,
    /// A new proxy has taken the sockets over: HTTP/1.1 responses close their connection,
    /// idle connections get a moment to send one more request before they are closed.
    pub(crate) draining: AtomicBool,
    workers: Workers,
}

impl std::fmt::Debug for HttpCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCtx")
            .field("conns", &self.conns.count())
            .finish()
    }
}

impl HttpCtx {
    pub(crate) fn new(
        conns: Arc<Tracker>,
        workers: Workers,
        cfg: EdgeConfig,
        tls: Arc<rustls::ServerConfig>,
        log: Option<Arc<AccessLog>>,
    ) -> Self {
        HttpCtx {
            log,
            draining: AtomicBool::new(false),
            conns,
            ids: RequestIds::new(),
            cfg,
            tls: tls.into(),
            workers,
        }
    }
}

/// Accepts client connections until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, target: Target, ctx: Arc<HttpCtx>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Re-registered on the worker's own reactor (into_std deregisters it here).
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(listener = target.name(), %peer, error = %e, "cannot hand connection to a worker");
                        continue;
                    }
                };
                let ctx2 = ctx.clone();
                ctx.workers
                    .spawn(serve_conn(stream, peer, target.clone(), ctx2));
            }
            Err(e) => {
                warn!(listener = target.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Per client connection; cloned (one Arc) per request.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) target: Target,
    pub(crate) ctx: Arc<HttpCtx>,
    pub(crate) peer: SocketAddr,
    pub(crate) peer_ip: HeaderValue,
    /// The peer is in `trusted_proxies`: its X-Forwarded-* headers are believed.
    pub(crate) trusted: bool,
    /// Served over TLS.
    pub(crate) tls: bool,
    pub(crate) unflushed: Arc<Unflushed>,
}

async fn serve_conn(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    target: Target,
    ctx: Arc<HttpCtx>,
) {
    let _open = ctx.conns.enter();
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            warn!(listener = target.name(), %peer, error = %e, "cannot register client connection");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let tcp_peer = peer;
    let mut peer = peer;
    if ctx.cfg.proxy_protocol {
        let header = crate::proxy_protocol::read_header(&mut stream);
        match tokio::time::timeout(ctx.cfg.limits.client_header_timeout, header).await {
            Ok(Ok(Some(client))) => peer = client,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return debug!(%peer, error = %e, "connection refused"),
            Err(_) => return debug!(%peer, "no PROXY protocol header in time"),
        }
    }
    let tls = matches!(target, Target::Edge(_, Scheme::Https));
    let conn = Arc::new(Conn {
        peer_ip: HeaderValue::try_from(peer.ip().to_string()).expect("an IP is a header value"),
        trusted: ctx.cfg.is_trusted(tcp_peer.ip()),
        target,
        ctx,
        peer,
        tls,
        unflushed: Arc::default(),
    });
    if tls {
        let Some(stream) = crate::tls::handshake(stream, &conn).await else {
            return;
        };
        serve_http(stream, conn).await
    } else {
        serve_http(stream, conn).await
    }
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on one client connection until it closes or the
/// listener's app/proxy starts closing (then gracefully).
async fn serve_http<S>(stream: S, conn: Arc<Conn>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut closing = conn.target.closing();
    let peer = conn.peer;
    let header_timeout = conn.ctx.cfg.limits.client_header_timeout;
    let idle_timeout = conn.ctx.cfg.limits.client_idle_timeout;
    let ctx = conn.ctx.clone();
    let draining = &ctx.draining;
    let io = ClientIo::new(stream, conn.unflushed.clone());
    let activity = Arc::new(Activity::new());
    let counted = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let in_flight = counted.start();
        // Boxed: hyper moves each HTTP/2 stream's future into a task of its own, and this
        // one is large; a pointer is cheaper to move than the whole state machine.
        let resp = Box::pin(crate::http::proxy(req, conn.clone()));
        async move { resp.await.map(|r| r.map(|b| Tracked::new(b, in_flight))) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(defaults::CLIENT_H2_PING_INTERVAL));
    let http = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(http);
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    tokio::select! {
        r = http.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "client connection ended with an error");
            }
        }
        _ = activity.idle(idle_timeout) => {
            debug!(%peer, timeout = ?idle_timeout, "idle client connection closed");
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
        _ = closed => {
            if draining.load(Relaxed) {
                // Requests arriving now get `Connection: close`; closing an idle HTTP/1.1
                // connection at once could race a request the client is sending.
                let linger = tokio::time::sleep(defaults::TAKEOVER_LINGER);
                tokio::select! {
                    _ = http.as_mut() => return,
                    _ = linger => {}
                }
            }
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
}
