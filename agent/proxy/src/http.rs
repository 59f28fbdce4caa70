//! L7: HTTP/1.1 with keep-alive. Every request reads the app's current upstream, so keep-alive
//! clients move to a new upstream at once. Hop-by-hop headers are removed, X-Forwarded-For,
//! X-Forwarded-Proto and X-Request-Id added; upgrades (websockets) are tunnelled through.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::client_io::{ClientIo, Unflushed};
use crate::defaults;
use crate::drain::Tracker;
use crate::pool::{ForwardError, UpstreamConn};
use crate::router::App;
use crate::upstream::{InFlight, UpstreamState};
use crate::workers::Workers;

type BoxError = Box<dyn StdError + Send + Sync>;
/// What the proxy answers with: an upstream's streamed body or a short local one.
pub(crate) type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Shared by every HTTP listener: request ids and the connection count.
pub(crate) struct HttpCtx {
    pub(crate) conns: Arc<Tracker>,
    ids: RequestIds,
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
    pub(crate) fn new(conns: Arc<Tracker>, workers: Workers) -> Self {
        HttpCtx {
            conns,
            ids: RequestIds::new(),
            workers,
        }
    }
}

/// Request ids: a per-process random prefix and a counter; unique and cheap.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        RequestIds {
            prefix: h.finish() as u32,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Relaxed);
        HeaderValue::try_from(format!("{:08x}-{n:012x}", self.prefix))
            .expect("hex digits are a valid header value")
    }
}

/// Accepts client connections for one app until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, app: Arc<App>, ctx: Arc<HttpCtx>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Re-registered on the worker's own reactor (into_std deregisters it here).
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(app = %app.name, %peer, error = %e, "cannot hand connection to a worker");
                        continue;
                    }
                };
                let ctx2 = ctx.clone();
                ctx.workers
                    .spawn(serve_conn(stream, peer, app.clone(), ctx2));
            }
            Err(e) => {
                warn!(app = %app.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Per client connection; cloned (one Arc) per request.
struct Conn {
    app: Arc<App>,
    ctx: Arc<HttpCtx>,
    peer_ip: HeaderValue,
    unflushed: Arc<Unflushed>,
}

async fn serve_conn(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    ctx: Arc<HttpCtx>,
) {
    let _open = ctx.conns.enter();
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            warn!(app = %app.name, %peer, error = %e, "cannot register client connection");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut closing = app.closing.subscribe();
    let conn = Arc::new(Conn {
        peer_ip: HeaderValue::try_from(peer.ip().to_string()).expect("an IP is a header value"),
        app,
        ctx,
        unflushed: Arc::default(),
    });
    let io = ClientIo::new(stream, conn.unflushed.clone());
    let svc = hyper::service::service_fn(move |req| proxy(req, conn.clone()));
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(defaults::CLIENT_HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades();
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
        _ = closed => {
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
}

fn local(status: StatusCode, msg: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(msg.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn proxy(
    mut req: Request<Incoming>,
    conn: Arc<Conn>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(local(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n",
        ));
    }
    let Some(up) = conn.app.current.load_full() else {
        return Ok(local(
            StatusCode::SERVICE_UNAVAILABLE,
            "no upstream for this app\n",
        ));
    };
    let start = Instant::now();
    let mut flight = up.begin();
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    prepare_request_headers(&mut parts.headers, client_upgrade.is_some(), &conn);
    to_origin_form(&mut parts.uri);
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, up.host.clone());
    }
    parts.version = Version::HTTP_11;
    let body = RequestBody {
        inner: body,
        upstream: up.clone(),
    };
    let call = up.pool.forward(Request::from_parts(parts, body));
    let result = tokio::select! {
        biased;
        r = call => Some(r),
        _ = flight.cut() => None,
    };
    let (mut resp, upstream_conn) = match result {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            let m = &up.metrics;
            if matches!(e, ForwardError::Connect(_)) {
                m.connect_errors.fetch_add(1, Relaxed);
            }
            m.status(502);
            m.latency.observe(start.elapsed());
            warn!(app = %conn.app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                error = %error_chain(&e), "upstream request failed; answered 502");
            return Ok(local(
                StatusCode::BAD_GATEWAY,
                format!(
                    "upstream {} ({}) failed\n",
                    up.upstream.id, up.upstream.addr
                ),
            ));
        }
        None => {
            up.metrics.status(503);
            let mut r = local(
                StatusCode::SERVICE_UNAVAILABLE,
                "request cut: drain timed out\n",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(r);
        }
    };
    up.metrics.status(resp.status().as_u16());

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            up.metrics.latency.observe(start.elapsed());
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            crate::pool::finish_upgrade(upstream_conn);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, flight));
            return Ok(resp.map(|_| Either::Right(Full::default())));
        }
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    *resp.version_mut() = Version::HTTP_11;
    Ok(resp.map(|inner| {
        Either::Left(ResponseBody {
            inner,
            conn: Some(upstream_conn),
            flight: Some(flight),
            start,
            client: conn,
        })
    }))
}

/// Copies bytes both ways between an upgraded client and upstream until either side closes
/// or a drain timeout cuts it. Counts as in flight on the upstream meanwhile.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut flight: InFlight,
) {
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut c = crate::tcp::Counted::new(TokioIo::new(c), flight.upstream().clone());
    let mut u = TokioIo::new(u);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        _ = flight.cut() => {}
    }
}

fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Upstreams get the origin form (`/path?query`), also when the client sent an absolute URI.
fn to_origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
        return;
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(path);
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn has_token(h: &HeaderMap, name: HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && has_token(h, header::CONNECTION, "upgrade")
}

/// Removes hop-by-hop headers, those named in `Connection` included. For an upgrade,
/// `Upgrade` is kept and `Connection` reduced to `upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One scan over the (few) names present instead of a hashed removal per hop-by-hop name.
    let mut present = 0u16;
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == name) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        // HOP_BY_HOP[0] is `Connection`; usually one value, cloned cheaply (shared bytes).
        let mut values = h.get_all(header::CONNECTION).iter();
        match (values.next().cloned(), values.next().is_some()) {
            (Some(v), false) => remove_named(h, &v, upgrade),
            _ => {
                let all: Vec<HeaderValue> = h.get_all(header::CONNECTION).iter().cloned().collect();
                for v in &all {
                    remove_named(h, v, upgrade);
                }
            }
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 && !(upgrade && n == header::UPGRADE) {
            h.remove(n);
        }
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers a `Connection` value names (by name, without allocating).
fn remove_named(h: &mut HeaderMap, connection: &HeaderValue, upgrade: bool) {
    let Ok(s) = connection.to_str() else { return };
    for t in s.split(',').map(str::trim) {
        let keep = t.is_empty() || (upgrade && t.eq_ignore_ascii_case("upgrade"));
        if !keep {
            h.remove(t);
        }
    }
}

fn prepare_request_headers(h: &mut HeaderMap, upgrade: bool, conn: &Conn) {
    strip_hop_by_hop(h, upgrade);
    match h.entry(X_FORWARDED_FOR) {
        header::Entry::Occupied(mut e) => {
            let prev = e.get();
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            e.insert(HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.peer_ip.clone()));
        }
        header::Entry::Vacant(e) => {
            e.insert(conn.peer_ip.clone());
        }
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(defaults::FORWARDED_PROTO),
    );
    h.entry(X_REQUEST_ID).or_insert_with(|| conn.ctx.ids.next());
}

/// A client's request body on its way upstream; counts bytes.
pub(crate) struct RequestBody {
    inner: Incoming,
    upstream: Arc<UpstreamState>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.upstream
                    .metrics
                    .bytes_in
                    .fetch_add(d.len() as u64, Relaxed);
            }
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

/// An upstream's response body on its way to the client. Holds the request in flight until
/// the last byte is sent (or the client goes away); records latency and bytes. Drives the
/// upstream connection while it streams, and gives it back to the pool once complete.
pub(crate) struct ResponseBody {
    inner: Incoming,
    conn: Option<UpstreamConn>,
    flight: Option<InFlight>,
    start: Instant,
    client: Arc<Conn>,
}

impl ResponseBody {
    /// Records the request as done; `complete` when the whole body went through.
    fn finish(&mut self, complete: bool) {
        let conn = self.conn.take();
        if let Some(f) = self.flight.take() {
            let up = f.upstream();
            up.metrics.latency.observe(self.start.elapsed());
            if let (true, Some(c)) = (complete, conn) {
                up.pool.put(c);
            }
            // In flight until hyper has written the last bytes to the client.
            self.client.unflushed.push(f);
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
                if let (Some(d), Some(fl)) = (f.data_ref(), &this.flight) {
                    let m = &fl.upstream().metrics;
                    m.bytes_out.fetch_add(d.len() as u64, Relaxed);
                }
                if this.inner.is_end_stream() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_named_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::HOST));
    }

    #[test]
    fn every_connection_line_is_honoured_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" x-two ,close"),
        );
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert("x-three", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-three"]);
    }

    #[test]
    fn plain_request_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn upgrade_keeps_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
    }
}
