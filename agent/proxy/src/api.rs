//! JSON documents of the control API, shared by the server (`control`) and `ProxyClient`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use slipway_proto::{AppName, ContainerId, Protocol};

use crate::metrics::{LatencySummary, StatusCounts};
use crate::upstream::Upstream;

/// Counters of one app, per upstream. Counters are cumulative for as long as the proxy keeps
/// the upstream: diff two readings to get a window (see [`StatusCounts::since`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStats {
    pub app: AppName,
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
    pub app: AppName,
    pub listen: u16,
    pub protocol: Protocol,
    /// Address actually bound (differs from `listen` when it is 0); None if binding failed.
    pub bound: Option<SocketAddr>,
    /// Why the listener is not up, if it is not.
    pub listen_error: Option<String>,
    pub upstream: Option<Upstream>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetUpstreamRequest {
    pub listen: u16,
    pub protocol: Protocol,
    pub upstream: Upstream,
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
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}
