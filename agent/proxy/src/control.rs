//! The control API: HTTP/JSON over a local unix socket, for the agent. Also serves /metrics,
//! which is the only thing the optional TCP metrics listener answers.
//!
//! | method | path                              | body / answer                         |
//! |--------|-----------------------------------|---------------------------------------|
//! | GET    | /v1/routes                        | -> [RouteInfo]                        |
//! | GET    | /v1/edge                          | -> EdgeInfo (shared listeners)        |
//! | PUT    | /v1/apps/{app}                    | {listen, protocol, upstream, edge?} -> {previous} |
//! | DELETE | /v1/apps/{app}                    | closes the listener                   |
//! | GET    | /v1/apps/{app}/stats              | -> AppStats                           |
//! | PUT    | /v1/apps/{app}/mode               | Mode (running / paused / stopped)     |
//! | POST   | /v1/apps/{app}/drain              | {upstream_id, timeout_ms} -> DrainReport |
//! | DELETE | /v1/apps/{app}/upstreams/{id}     | forgets a retired upstream            |
//! | GET    | /metrics                          | Prometheus text                       |

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, warn};

use crate::api::{DrainRequest, ErrorBody, RouteSpec, SetUpstreamReply, SetUpstreamRequest};
use crate::defaults;
use crate::error::ProxyError;
use crate::pause::Mode;
use crate::router::Router;

fn socket_error(path: &Path, reason: String) -> ProxyError {
    ProxyError::ControlSocket {
        path: path.to_owned(),
        reason,
    }
}

/// Fails if a live proxy already answers on `path`.
pub(crate) fn check_not_running(path: &Path) -> Result<(), ProxyError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(socket_error(
            path,
            "another proxy is listening on it".into(),
        ));
    }
    Ok(())
}

/// Binds the control socket (mode 0600). A stale socket file is replaced; a live one means
/// another proxy serves it, which is an error unless `replace` (we took its sockets over).
pub(crate) fn bind(path: &Path, replace: bool) -> Result<UnixListener, ProxyError> {
    let err = |reason: String| socket_error(path, reason);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
    }
    if path.exists() {
        if !replace {
            check_not_running(path)?;
        }
        std::fs::remove_file(path)
            .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
    }
    let l = UnixListener::bind(path).map_err(|e| err(format!("cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("cannot restrict permissions: {e}")))?;
    Ok(l)
}

#[derive(Clone)]
struct Api {
    router: Arc<Router>,
    registry: Arc<Registry>,
    /// False on the metrics listener: only /metrics is served there.
    control: bool,
}

/// Serves the control API on `listener` until the future is dropped.
pub(crate) async fn serve_unix(
    listener: UnixListener,
    router: Arc<Router>,
    registry: Arc<Registry>,
) {
    let api = Api {
        router,
        registry,
        control: true,
    };
    loop {
        match listener.accept().await {
            Ok((s, _)) => spawn_conn(s, api.clone()),
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves only GET /metrics on a TCP listener until the future is dropped.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    router: Arc<Router>,
    registry: Arc<Registry>,
) {
    let api = Api {
        router,
        registry,
        control: false,
    };
    loop {
        match listener.accept().await {
            Ok((s, _)) => spawn_conn(s, api.clone()),
            Err(e) => {
                warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn spawn_conn<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(s: S, api: Api) {
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), svc)
            .await
        {
            debug!(error = %e, "control connection ended with an error");
        }
    });
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(v).expect("API documents serialize");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: u16, msg: String) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &ErrorBody { error: msg })
}

async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let bytes = Limited::new(req.into_body(), defaults::CONTROL_MAX_BODY)
        .collect()
        .await
        .map_err(|e| error(400, format!("request body unreadable: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error(400, format!("request body is not valid: {e}")))
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        if method == Method::GET && path == "/metrics" {
            let mut text = String::new();
            if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
                return error(500, format!("metrics encoding failed: {e}"));
            }
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return r;
        }
        if !self.control {
            return error(404, format!("{path}: only /metrics is served here"));
        }
        let r = &self.router;
        let result: Result<Response<Full<Bytes>>, ProxyError> = match (&method, segs.as_slice()) {
            (&Method::GET, ["healthz"]) => Ok(json(StatusCode::OK, &"ok")),
            (&Method::GET, ["v1", "routes"]) => Ok(json(StatusCode::OK, &r.routes())),
            (&Method::GET, ["v1", "edge"]) => Ok(json(StatusCode::OK, &r.edge_info())),
            (&Method::PUT, ["v1", "apps", app]) => {
                let app = app.to_string();
                let body: SetUpstreamRequest = match read_json(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let route = RouteSpec {
                    listen: body.listen,
                    protocol: body.protocol,
                    edge: body.edge,
                };
                r.set_upstream(&app, route, body.upstream)
                    .await
                    .map(|previous| json(StatusCode::OK, &SetUpstreamReply { previous }))
            }
            (&Method::DELETE, ["v1", "apps", app]) => {
                r.remove_app(app).await.map(|()| json(StatusCode::OK, &()))
            }
            (&Method::GET, ["v1", "apps", app, "stats"]) => {
                r.stats(app).map(|s| json(StatusCode::OK, &s))
            }
            (&Method::POST, ["v1", "apps", app, "drain"]) => {
                let app = app.to_string();
                let body: DrainRequest = match read_json(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                r.drain(
                    &app,
                    &body.upstream_id,
                    Duration::from_millis(body.timeout_ms),
                    body.long_lived_grace_ms
                        .map_or(defaults::LONG_LIVED_GRACE, Duration::from_millis),
                )
                .await
                .map(|rep| json(StatusCode::OK, &rep))
            }
            (&Method::PUT, ["v1", "apps", app, "mode"]) => {
                let app = app.to_string();
                let mode: Mode = match read_json(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                r.set_mode(&app, mode)
                    .await
                    .map(|()| json(StatusCode::OK, &()))
            }
            (&Method::DELETE, ["v1", "apps", app, "upstreams", id]) => r
                .forget_upstream(app, id)
                .map(|()| json(StatusCode::OK, &())),
            _ => return error(404, format!("no such control endpoint: {method} {path}")),
        };
        result.unwrap_or_else(|e| error(e.status(), e.to_string()))
    }
}
