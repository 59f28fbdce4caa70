//! How the proxy is configured: where it listens and keeps its state, and its edge (shared
//! host-routed listeners, TLS, limits).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use crate::access_log::AccessLogConfig;
pub use crate::acme::{AcmeChallenge, AcmeConfig};
use crate::defaults;

/// Where the proxy listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Unix socket of the control API (the agent's side).
    pub control_socket: PathBuf,
    /// Routing table, restored on start.
    pub state_file: PathBuf,
    /// Address the public listeners bind (port from each app's route).
    pub bind: IpAddr,
    /// Optional TCP address serving only GET /metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// HTTP worker threads (each client connection stays on one); 0 = one per CPU.
    pub http_workers: usize,
    /// The shared listeners of host-routed apps.
    pub edge: EdgeConfig,
}

/// The shared listeners: every app with `edge.hosts` is served on them, routed by Host.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Plain-HTTP port, bound (on `bind`) with the first host-routed app; 0 = any free port.
    pub http_port: u16,
    /// HTTPS port, bound with the first app that sets `edge.tls`; 0 = any free port.
    pub https_port: u16,
    /// Peers whose X-Forwarded-For/-Proto/-Host are believed and extended; others' are
    /// replaced. Empty: trust no one.
    pub trusted_proxies: Vec<Cidr>,
    /// ACME, for apps with `tls = { acme = true }`; None refuses them.
    pub acme: Option<AcmeConfig>,
    /// Timeouts and size limits of HTTP requests (every HTTP listener).
    pub limits: Limits,
    /// One JSON line per HTTP request; None: no access log.
    pub access_log: Option<AccessLogConfig>,
    /// Every public listener expects a PROXY protocol (v1 or v2) header first, as sent by a
    /// load balancer in front; connections without one are closed.
    pub proxy_protocol: bool,
    /// TLS clients that send no SNI (reached by IP address) get this routed host's
    /// certificate; None: their handshake fails.
    pub default_tls_host: Option<String>,
}

/// Timeouts and size limits; defaults in [`defaults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// An upstream that sends no response headers within this gets a 504.
    pub response_header_timeout: std::time::Duration,
    /// Request bodies larger than this get a 413.
    pub max_request_body: u64,
    /// A client must send a request's headers within this, counted from when the connection
    /// waits for one (so it also closes idle HTTP/1.1 keep-alive connections).
    pub client_header_timeout: std::time::Duration,
    /// A client connection with no request in flight this long is closed (HTTP/2: GOAWAY).
    pub client_idle_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            response_header_timeout: defaults::UPSTREAM_RESPONSE_HEADER_TIMEOUT,
            max_request_body: defaults::MAX_REQUEST_BODY,
            client_header_timeout: defaults::CLIENT_HEADER_TIMEOUT,
            client_idle_timeout: defaults::CLIENT_IDLE_TIMEOUT,
        }
    }
}

impl EdgeConfig {
    /// True when `ip` lies in one of `trusted_proxies`.
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{s}` is not an IP network (like 10.0.0.0/8): {why}");
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().map_err(|_| bad("bad address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            http_port: defaults::HTTP_PORT,
            https_port: defaults::HTTPS_PORT,
            trusted_proxies: Vec::new(),
            acme: None,
            limits: Limits::default(),
            access_log: None,
            proxy_protocol: false,
            default_tls_host: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().unwrap_err().contains("`x/8`"));
    }
}
