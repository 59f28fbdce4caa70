//! JSON documents of the control API, shared by the server (`control`) and `ProxyClient`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use slipway_proto::{ContainerId, EdgeSpec, Protocol};

use crate::metrics::{LatencySummary, StatusCounts};
use crate::pause::Mode;
use crate::upstream::Upstream;

/// Counters of one app, per upstream. Counters are cumulative for as long as the proxy keeps
/// the upstream: diff two readings to get a window (see [`StatusCounts::since`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStats {
    pub app: String,
    pub listen: u16,
    pub protocol: Protocol,
    /// Id of the upstream that takes new traffic.
    pub current: Option<ContainerId>,
    /// Current and retired upstreams, oldest first.
    pub upstreams: Vec<UpstreamStats>,
}

impl AppStats {
    pub fn upstream(&self, id: &str) -> Option<&UpstreamStats> {
        self.upstreams.iter().find(|u| u.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStats {
    pub id: ContainerId,
    pub addr: SocketAddr,
    pub current: bool,
    /// HTTP requests or TCP connections open right now.
    pub in_flight: u64,
    /// HTTP responses sent (including the proxy's own 502s), by class.
    pub requests: StatusCounts,
    /// TCP connections accepted (TCP apps).
    pub connections: u64,
    /// Connects to the upstream that failed (HTTP: answered 502).
    pub connect_errors: u64,
    /// Requests/connections cut at a drain timeout.
    pub cut: u64,
    /// Body bytes from clients (TCP and upgrades: all bytes).
    pub bytes_in: u64,
    /// Body bytes to clients (TCP and upgrades: all bytes).
    pub bytes_out: u64,
    /// HTTP only.
    pub latency: LatencySummary,
}

/// One app's route, as the proxy runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub app: String,
    pub listen: u16,
    pub protocol: Protocol,
    /// Address actually bound (differs from `listen` when it is 0); None if binding failed.
    pub bound: Option<SocketAddr>,
    /// Why the listener is not up, if it is not.
    pub listen_error: Option<String>,
    pub upstream: Option<Upstream>,
    /// Hosts and TLS on the shared listeners.
    #[serde(default, skip_serializing_if = "EdgeSpec::is_default")]
    pub edge: EdgeSpec,
    /// Why the app's hosts lack a certificate (ACME refused or unreachable), if they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<String>,
    /// Running, paused or stopped.
    #[serde(default)]
    pub mode: Mode,
}

/// The shared (host-routed) listeners and where they are bound, if they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeInfo {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetUpstreamRequest {
    pub listen: u16,
    pub protocol: Protocol,
    pub upstream: Upstream,
    #[serde(default, skip_serializing_if = "EdgeSpec::is_default")]
    pub edge: EdgeSpec,
}

/// How an app is reached: its own port (`listen`; 0 with hosts = none, 0 without = any free
/// port) and/or its hosts on the shared listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub listen: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "EdgeSpec::is_default")]
    pub edge: EdgeSpec,
}

impl RouteSpec {
    /// An app routed by port only.
    pub fn port(listen: u16, protocol: Protocol) -> Self {
        RouteSpec {
            listen,
            protocol,
            edge: EdgeSpec::default(),
        }
    }

    /// The route an app spec asks for.
    pub fn of(spec: &slipway_proto::AppSpec) -> Self {
        RouteSpec {
            listen: spec.listen,
            protocol: spec.protocol,
            edge: spec.edge.clone(),
        }
    }

    /// False for an app reached only by its hosts.
    pub fn own_port(&self) -> bool {
        self.edge.hosts.is_empty() || self.listen != 0
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SetUpstreamReply {
    pub previous: Option<Upstream>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DrainRequest {
    pub upstream_id: String,
    pub timeout_ms: u64,
    /// Websockets and SSE are cut after this (default [`crate::defaults::LONG_LIVED_GRACE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_lived_grace_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}
