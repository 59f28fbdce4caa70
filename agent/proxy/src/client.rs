//! `ProxyClient`: how the agent drives the proxy over its unix socket.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use slipway_proto::{ContainerId, Protocol};
use tokio::net::UnixStream;

use crate::api::{
    AppStats, DrainRequest, EdgeInfo, ErrorBody, RouteInfo, RouteSpec, SetUpstreamReply,
    SetUpstreamRequest,
};
use crate::drain::DrainReport;
use crate::error::ProxyError;
use crate::pause::Mode;
use crate::router::app_name;
use crate::upstream::Upstream;

/// Client of the proxy's control socket. Cheap to clone; one connection per call.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    socket: PathBuf,
}

impl ProxyClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ProxyClient {
            socket: socket.into(),
        }
    }

    /// Sends one request; answers the status and body bytes.
    async fn raw(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(hyper::StatusCode, Bytes), ProxyError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ProxyError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let transport = |source| ProxyError::Transport {
            op: op.to_owned(),
            source,
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "slipway-proxy")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ProxyError::Invalid {
                what: "control request path",
                value: path.to_owned(),
                reason: e.to_string(),
            })?;
        let resp = send.send_request(req).await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(ProxyError::Api {
                op: op.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        Ok((status, bytes))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ProxyError> {
        let (_, bytes) = self.raw(op, method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| ProxyError::Decode {
            op: op.to_owned(),
            source,
        })
    }

    fn body<T: Serialize>(v: &T) -> Option<Vec<u8>> {
        Some(serde_json::to_vec(v).expect("API documents serialize"))
    }

    /// Creates the app's listener if needed (listen port, protocol) and atomically points it
    /// at `upstream`. Returns the previous upstream, if any. New requests (HTTP: even on
    /// existing keep-alive connections) go to the new one at once.
    pub async fn set_upstream(
        &self,
        app: &str,
        listen: u16,
        protocol: Protocol,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        self.set_route(app, &RouteSpec::port(listen, protocol), upstream)
            .await
    }

    /// Like [`Self::set_upstream`], with the app's hosts and TLS on the shared listeners.
    /// A host another app is routed by is refused (naming both apps), and so is a bad
    /// certificate; the running routes keep serving either way.
    pub async fn set_route(
        &self,
        app: &str,
        route: &RouteSpec,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        app_name(app)?;
        let op = format!("set upstream of {app} to {}", upstream.id);
        let body = Self::body(&SetUpstreamRequest {
            listen: route.listen,
            protocol: route.protocol,
            upstream,
            edge: route.edge.clone(),
        });
        let reply: SetUpstreamReply = self
            .call(&op, Method::PUT, &format!("/v1/apps/{app}"), body)
            .await?;
        Ok(reply.previous)
    }

    /// Removes the app and closes its listener. Succeeds if the app is already gone.
    pub async fn remove_app(&self, app: &str) -> Result<(), ProxyError> {
        app_name(app)?;
        self.call(
            &format!("remove {app}"),
            Method::DELETE,
            &format!("/v1/apps/{app}"),
            None,
        )
        .await
    }

    /// Waits until upstream `upstream_id` of `app` has zero in-flight requests/connections,
    /// or `timeout`; at timeout, cuts the remaining ones and reports how many. The upstream
    /// must not be the current one (switch first).
    pub async fn drain(
        &self,
        app: &str,
        upstream_id: &str,
        timeout: Duration,
    ) -> Result<DrainReport, ProxyError> {
        self.drain_with_grace(app, upstream_id, timeout, None).await
    }

    /// Like [`Self::drain`]; websockets and SSE streams are cut after `long_lived_grace`
    /// (None: [`crate::defaults::LONG_LIVED_GRACE`]) rather than at the timeout.
    pub async fn drain_with_grace(
        &self,
        app: &str,
        upstream_id: &str,
        timeout: Duration,
        long_lived_grace: Option<Duration>,
    ) -> Result<DrainReport, ProxyError> {
        app_name(app)?;
        upstream_id.parse::<ContainerId>()?;
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        let body = Self::body(&DrainRequest {
            upstream_id: upstream_id.to_owned(),
            timeout_ms: ms(timeout),
            long_lived_grace_ms: long_lived_grace.map(ms),
        });
        self.call(
            &format!("drain {upstream_id} of {app}"),
            Method::POST,
            &format!("/v1/apps/{app}/drain"),
            body,
        )
        .await
    }

    /// Per-upstream counters of `app` (current and retired upstreams).
    pub async fn stats(&self, app: &str) -> Result<AppStats, ProxyError> {
        app_name(app)?;
        self.call(
            &format!("stats of {app}"),
            Method::GET,
            &format!("/v1/apps/{app}/stats"),
            None,
        )
        .await
    }

    /// Every route the proxy runs.
    pub async fn routes(&self) -> Result<Vec<RouteInfo>, ProxyError> {
        self.call("routes", Method::GET, "/v1/routes", None).await
    }

    /// Runs, pauses (requests held up to the mode's timeout) or stops (503 page) an app.
    /// Persisted: the mode survives a proxy restart.
    pub async fn set_mode(&self, app: &str, mode: &Mode) -> Result<(), ProxyError> {
        app_name(app)?;
        self.call(
            &format!("set mode of {app}"),
            Method::PUT,
            &format!("/v1/apps/{app}/mode"),
            Self::body(mode),
        )
        .await
    }

    /// Where the shared (host-routed) listeners are bound.
    pub async fn edge(&self) -> Result<EdgeInfo, ProxyError> {
        self.call("edge", Method::GET, "/v1/edge", None).await
    }

    /// Drops a retired upstream's counters (after its container is discarded). Retired
    /// upstreams are also dropped automatically beyond the newest few.
    pub async fn forget_upstream(&self, app: &str, upstream_id: &str) -> Result<(), ProxyError> {
        app_name(app)?;
        upstream_id.parse::<ContainerId>()?;
        self.call(
            &format!("forget {upstream_id} of {app}"),
            Method::DELETE,
            &format!("/v1/apps/{app}/upstreams/{upstream_id}"),
            None,
        )
        .await
    }

    /// Prometheus text exposition of every upstream's metrics.
    pub async fn metrics(&self) -> Result<String, ProxyError> {
        let (_, bytes) = self.raw("metrics", Method::GET, "/metrics", None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until the proxy answers on its socket, or `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ProxyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self
                .call::<String>("health", Method::GET, "/healthz", None)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
