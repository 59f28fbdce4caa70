//! L7 requests: each reads its app's current upstream (keep-alive clients move to a new
//! upstream at once), on a shared listener after picking the app by Host and path. Headers are
//! prepared (`headers`), bodies streamed (`body`), upgrades (websockets) tunnelled through.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::access_log::Pending;
use crate::app::App;
use crate::body::{BodyTooLarge, RequestBody, ResponseBody};
use crate::conn::{Conn, Target};
use crate::headers::{
    has_token, is_upgrade, prepare_request, strip_hop_by_hop, Forwarded, X_REQUEST_ID,
};
use crate::hosts::HostRoute;
use crate::pages;
use crate::pause::Pass;
use crate::pool::ForwardError;
use crate::upstream::InFlight;

pub(crate) use crate::conn::{accept_loop, HttpCtx};

/// What the proxy answers with: an upstream's streamed body or a short local one.
pub(crate) type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Where ACME HTTP-01 challenges are fetched (RFC 8555 section 8.3).
const ACME_HTTP01_PATH: &str = "/.well-known/acme-challenge/";

/// The Host a request names: the Host header, else (HTTP/2) the URI authority.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(h) = req.headers().get(header::HOST) {
        return Some(h.clone());
    }
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// `https://host[:port]/path?query` for a redirect from plain HTTP.
fn https_location(host: &str, https_port: u16, uri: &Uri) -> Option<HeaderValue> {
    let name = match host.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let loc = if https_port == 443 || https_port == 0 {
        format!("https://{name}{pq}")
    } else {
        format!("https://{name}:{https_port}{pq}")
    };
    HeaderValue::try_from(loc).ok()
}

/// A request's app, and its host route on a shared listener.
type Picked = (Arc<App>, Option<Arc<HostRoute>>);

/// Resolves the app of a request: the listener's own, or the host table's match.
fn pick(
    req: &Request<Incoming>,
    conn: &Conn,
    host: Option<&HeaderValue>,
) -> Result<Picked, Box<Response<ProxyBody>>> {
    let edge = match &conn.target {
        Target::App(a) => return Ok((a.clone(), None)),
        Target::Edge(edge, _) => edge,
    };
    if let Some(acme) = &edge.acme {
        // Our own pending challenges only; other paths under it go to the app.
        if let Some(token) = req.uri().path().strip_prefix(ACME_HTTP01_PATH) {
            if let Some(key_auth) = acme.http01.load().get(token) {
                return Err(Box::new(pages::local(StatusCode::OK, key_auth.clone())));
            }
        }
    }
    let host_str = host.and_then(|h| h.to_str().ok()).unwrap_or("");
    let table = edge.hosts.load();
    let Some(route) = table.lookup(host_str, req.uri().path()) else {
        return Err(Box::new(pages::unknown_host()));
    };
    if !conn.tls && route.redirect {
        let port = edge.https_port.load(Relaxed);
        return Err(Box::new(match https_location(host_str, port, req.uri()) {
            Some(loc) => pages::redirect(loc),
            None => pages::unknown_host(),
        }));
    }
    Ok((route.app.clone(), Some(route.clone())))
}

/// Rewrites the path without the route's prefix (`strip_prefix`), keeping the query.
fn strip_prefix(uri: &mut Uri, route: &HostRoute) {
    let path = uri.path();
    let new_path = route.upstream_path(path);
    if new_path.len() == path.len() {
        return;
    }
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path.to_owned(),
    };
    if let Ok(pq) = PathAndQuery::try_from(pq) {
        *uri = Uri::from(pq);
    }
}

/// Serves one request; logs it (when the access log is on) once its response is complete.
pub(crate) async fn proxy(
    req: Request<Incoming>,
    conn: Arc<Conn>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(log) = conn.ctx.log.clone() else {
        return Ok(handle(req, conn, &mut None).await);
    };
    let mut pending = Some(Pending {
        start: Instant::now(),
        host: request_host(&req)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_default(),
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        app: None,
        upstream: None,
        request_id: String::new(),
        status: 0,
    });
    let resp = handle(req, conn, &mut pending).await;
    // Still here: a local answer (or an upgrade), complete now.
    if let Some(mut p) = pending {
        p.status = resp.status().as_u16();
        let bytes = match resp.body() {
            Either::Right(full) => hyper::body::Body::size_hint(full).exact().unwrap_or(0),
            Either::Left(_) => 0,
        };
        p.write(&log, bytes);
    }
    Ok(resp)
}

async fn handle(
    mut req: Request<Incoming>,
    conn: Arc<Conn>,
    pending: &mut Option<Pending>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return pages::local(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n");
    }
    let host = request_host(&req);
    let (app, route) = match pick(&req, &conn, host.as_ref()) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    if let Some(p) = pending.as_mut() {
        p.app = Some(app.name.clone());
    }
    if !app.gate.open() {
        match app.gate.pass().await {
            Pass::Go => {}
            Pass::Stopped(page) => return pages::stopped(page),
            Pass::TimedOut => return pages::paused_too_long(),
        }
    }
    let hsts = route
        .as_ref()
        .filter(|_| conn.tls)
        .and_then(|r| r.hsts.clone());
    let Some(up) = app.current.load_full() else {
        return pages::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: the app has no running container\n",
        );
    };
    if let Some(p) = pending.as_mut() {
        p.upstream = Some(up.upstream.id.to_string());
    }
    let limits = &conn.ctx.cfg.limits;
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limits.max_request_body);
    if too_large {
        up.metrics.status(413);
        return pages::payload_too_large();
    }
    let start = Instant::now();
    let mut flight = up.begin();
    let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let client_version = req.version();
    let h2c = app.h2c.load(Relaxed);
    let te_trailers = h2c && has_token(req.headers(), header::TE, "trailers");

    let (mut parts, body) = req.into_parts();
    let fwd = Forwarded {
        peer_ip: &conn.peer_ip,
        proto: if conn.tls { "https" } else { "http" },
        trusted: conn.trusted,
    };
    prepare_request(
        &mut parts.headers,
        client_upgrade.is_some(),
        host.as_ref(),
        &fwd,
        &conn.ctx.ids,
    );
    if let Some(p) = pending.as_mut() {
        if let Some(id) = parts
            .headers
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
        {
            p.request_id = id.to_owned();
        }
    }
    to_origin_form(&mut parts.uri);
    if let Some(r) = &route {
        strip_prefix(&mut parts.uri, r);
    }
    let host = host.unwrap_or_else(|| up.host.clone());
    if h2c {
        // gRPC needs `te: trailers`; HTTP/2 wants the authority in the URI, not a Host.
        if te_trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        parts.version = Version::HTTP_2;
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(u) = Uri::try_from(format!(
            "http://{}{pq}",
            host.to_str().unwrap_or("upstream")
        )) {
            parts.uri = u;
        }
        parts.headers.remove(header::HOST);
    } else {
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, host);
        }
        parts.version = Version::HTTP_11;
    }
    let body = RequestBody {
        inner: body,
        upstream: up.clone(),
        remaining: limits.max_request_body,
        limit: limits.max_request_body,
    };
    let req = Request::from_parts(parts, body);
    let call = async {
        if h2c {
            up.h2c.forward(req).await.map(|r| (r, None))
        } else {
            up.pool.forward(req).await.map(|(r, c)| (r, Some(c)))
        }
    };
    let call = tokio::time::timeout(limits.response_header_timeout, call);
    let result = tokio::select! {
        biased;
        r = call => Some(r),
        _ = flight.cut() => None,
    };
    let (mut resp, upstream_conn) = match result {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => {
            let m = &up.metrics;
            m.latency.observe(start.elapsed());
            if is_body_too_large(&e) {
                m.status(413);
                return pages::payload_too_large();
            }
            if matches!(e, ForwardError::Connect(_)) {
                m.connect_errors.fetch_add(1, Relaxed);
            }
            m.status(502);
            warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                error = %error_chain(&e), "upstream request failed; answered 502");
            return pages::bad_gateway();
        }
        Some(Err(_elapsed)) => {
            let m = &up.metrics;
            m.status(504);
            m.latency.observe(start.elapsed());
            warn!(app = %app.name, upstream = %up.upstream.id, addr = %up.upstream.addr,
                timeout = ?limits.response_header_timeout, "upstream sent no response headers in time; answered 504");
            return pages::gateway_timeout();
        }
        None => {
            up.metrics.status(503);
            let mut r = pages::local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: request cut while the app was being replaced\n",
            );
            if client_version < Version::HTTP_2 {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    up.metrics.status(resp.status().as_u16());

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let (Some(client_upgrade), true) = (client_upgrade, upstream_conn.is_some()) {
            up.metrics.latency.observe(start.elapsed());
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            if let Some(c) = upstream_conn {
                crate::pool::finish_upgrade(c);
            }
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, flight));
            return resp.map(|_| Either::Right(Full::default()));
        }
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if sse {
        flight.long_lived();
    }
    if client_version < Version::HTTP_2 && conn.ctx.draining.load(Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(v) = hsts {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    *resp.version_mut() = client_version;
    if let Some(p) = pending.as_mut() {
        p.status = resp.status().as_u16();
    }
    resp.map(|inner| {
        Either::Left(ResponseBody {
            inner,
            conn: upstream_conn,
            flight: Some(flight),
            start,
            unflushed: conn.unflushed.clone(),
            trailers: h2c,
            bytes: 0,
            log: pending
                .take()
                .and_then(|p| Some((conn.ctx.log.clone()?, p))),
        })
    })
}

/// Copies bytes both ways between an upgraded client and upstream until either side closes
/// or a drain timeout cuts it. Counts as in flight on the upstream meanwhile.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut flight: InFlight,
) {
    flight.long_lived();
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

/// True when the request failed because its body went past the maximum.
fn is_body_too_large(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<BodyTooLarge>() {
            return true;
        }
        cur = c.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_host_path_and_query() {
        let uri: Uri = "/a/b?c=1".parse().unwrap();
        let loc = |h, p| https_location(h, p, &uri).unwrap();
        assert_eq!(
            loc("shop.example:8080", 443),
            "https://shop.example/a/b?c=1"
        );
        assert_eq!(
            loc("shop.example", 8443),
            "https://shop.example:8443/a/b?c=1"
        );
    }
}
