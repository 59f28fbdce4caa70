//! Errors of the proxy and of its client; each names the object and the reason.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("app `{app}`: cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        app: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("app `{app}`: host `{host}` (path prefix `{prefix}`) is already routed to app `{owner}`; remove it there first")]
    HostTaken {
        app: String,
        host: String,
        prefix: String,
        owner: String,
    },
    #[error("app `{app}`: certificate for `{host}`: {reason}")]
    Certificate {
        app: String,
        host: String,
        reason: String,
    },
    #[error("app `{0}` asks for ACME certificates but this proxy has no ACME directory (start it with --acme-directory URL)")]
    NoAcme(String),
    #[error("socket takeover via {}: {reason}", path.display())]
    Takeover { path: PathBuf, reason: String },
    #[error("access log {}: {source}", path.display())]
    AccessLog { path: PathBuf, source: io::Error },
    #[error("HTTP worker thread {index}: cannot start: {source}")]
    Workers { index: usize, source: io::Error },
    #[error("metrics listener {addr}: {source}")]
    MetricsBind { addr: SocketAddr, source: io::Error },
    #[error("control socket {}: {reason}", path.display())]
    ControlSocket { path: PathBuf, reason: String },
    #[error("routing table {}: {source}", path.display())]
    State { path: PathBuf, source: io::Error },
    #[error("app `{0}` has no route; set an upstream for it first")]
    UnknownApp(String),
    #[error("app `{app}` has no upstream `{id}`")]
    UnknownUpstream { app: String, id: String },
    #[error("app `{app}`: upstream `{id}` still takes traffic; switch the app to another upstream first")]
    StillCurrent { app: String, id: String },
    #[error(transparent)]
    Id(#[from] slipway_proto::IdError),
    #[error("{what} `{value}` is invalid: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot reach the proxy at {}: {source} (is `slipway-agent proxy` running?)", socket.display())]
    Connect { socket: PathBuf, source: io::Error },
    #[error("proxy control request `{op}` failed: {source}")]
    Transport { op: String, source: hyper::Error },
    #[error("proxy refused `{op}` (HTTP {status}): {message}")]
    Api {
        op: String,
        status: u16,
        message: String,
    },
    #[error("proxy control request `{op}`: unreadable answer: {source}")]
    Decode {
        op: String,
        source: serde_json::Error,
    },
}

impl ProxyError {
    /// True when the app or upstream named in the request does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            ProxyError::UnknownApp(_) | ProxyError::UnknownUpstream { .. } => true,
            ProxyError::Api { status, .. } => *status == 404,
            _ => false,
        }
    }

    /// The HTTP status the control API answers this error with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ProxyError::UnknownApp(_) | ProxyError::UnknownUpstream { .. } => 404,
            ProxyError::StillCurrent { .. }
            | ProxyError::Bind { .. }
            | ProxyError::HostTaken { .. }
            | ProxyError::NoAcme(..) => 409,
            ProxyError::Certificate { .. } => 400,
            ProxyError::Invalid { .. } | ProxyError::Id(_) => 400,
            _ => 500,
        }
    }
}
