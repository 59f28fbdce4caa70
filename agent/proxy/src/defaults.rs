//! Every default of the proxy, in one place, each with the reason it has this value.

use std::time::Duration;

/// Where the agent finds the control API; under /run so a stale socket dies with a reboot.
pub const CONTROL_SOCKET: &str = "/run/slipway/proxy.sock";
/// Routing table; under /var/lib so routes survive reboots and proxy restarts.
pub const STATE_FILE: &str = "/var/lib/slipway/proxy/routes.json";
/// Public listeners bind every interface unless told otherwise.
pub const BIND: &str = "0.0.0.0";

/// Pending connections the kernel queues per listener; absorbs bursts while we accept.
pub const LISTEN_BACKLOG: u32 = 1024;
/// Upstream TCP connect timeout; a container that cannot accept in 5 s is broken, answer 502.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled upstream connections are closed after this; below typical server idle timeouts.
pub const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle pooled connections kept per upstream; enough for a busy app on a small host.
pub const UPSTREAM_POOL_MAX_IDLE: usize = 256;
/// A client must send a request's headers within this (also closes idle keep-alive clients).
pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// A client connection (HTTP/1.1 or HTTP/2) with no request in flight this long is closed;
/// nginx's HTTP/2 idle default is 3 min, browsers reopen in a round trip.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// On SIGTERM, open requests get this long to finish before the process exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// After a drain timeout cuts requests, how long we wait for them to be torn down.
pub const CUT_SETTLE: Duration = Duration::from_secs(1);
/// Retired upstreams kept per app for stats and instant revert; the oldest idle ones go first.
pub const MAX_RETIRED_UPSTREAMS: usize = 8;
/// Control API request bodies are tiny JSON documents; anything bigger is a mistake.
pub const CONTROL_MAX_BODY: usize = 64 * 1024;
/// Upper bounds (seconds) of the latency histogram buckets: 1 ms .. 30 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Value of `X-Forwarded-Proto`: the proxy terminates plain HTTP only.
pub const FORWARDED_PROTO: &str = "http";

/// Attempts to re-bind a restored route's port while a previous proxy lets go of it.
pub const RESTORE_BIND_RETRIES: u32 = 40;
/// Pause between those attempts (40 x 50 ms = 2 s at most).
pub const RESTORE_BIND_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Shared plain-HTTP listener of host-routed apps: the standard port.
pub const HTTP_PORT: u16 = 80;
/// Shared HTTPS listener of host-routed apps: the standard port.
pub const HTTPS_PORT: u16 = 443;
/// HTTP/2 clients are pinged this often so dead connections (NAT timeouts) are noticed.
pub const CLIENT_H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Certificate files are checked for changes this often; a renewed file is live within it.
pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// A client must finish its TLS handshake within this; slow-loris handshakes are dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ACME certificates are renewed this long before expiry (Let's Encrypt advises 30 days).
pub const ACME_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Stored ACME certificates are checked for renewal (and failed issues retried) this often.
pub const ACME_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// An ACME order that is not validated and issued within this has failed.
pub const ACME_ORDER_TIMEOUT: Duration = Duration::from_secs(90);
/// Where ACME account, certificates and keys are kept; survives restarts so nothing re-issues.
pub const ACME_DIR: &str = "/var/lib/slipway/proxy/acme";
/// An upstream silent this long after a request is hung: answer 504 (nginx's default too).
pub const UPSTREAM_RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Request bodies above 64 MiB get a 413: bigger uploads belong in object storage.
pub const MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;
/// Access log lines queued for the writer; beyond this they are dropped, never waited for.
pub const ACCESS_LOG_QUEUE: usize = 64 * 1024;
/// The access log is flushed at least this often when requests trickle in.
pub const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(200);
/// The access log file is rotated past 100 MiB: a day of a busy host, quick to grep.
pub const ACCESS_LOG_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Rotated access log files kept.
pub const ACCESS_LOG_KEEP: usize = 5;
/// A request held by `proxy pause` waits at most this before a 503 (kamal-proxy's default).
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A socket takeover that is not acknowledged within this is abandoned (the old proxy serves on).
pub const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket list of a takeover, in bytes (JSON; a few dozen bytes per socket).
pub const TAKEOVER_MAX_MESSAGE: usize = 64 * 1024;
/// Sockets handed over in one takeover (the kernel passes at most 253 per message).
pub const TAKEOVER_MAX_FDS: usize = 250;
/// After a takeover, an idle HTTP/1.1 connection of the old proxy gets this long to send one
/// more request (answered with `Connection: close`) before it is closed.
pub const TAKEOVER_LINGER: Duration = Duration::from_secs(2);
/// When a drain starts, websockets and SSE streams get this long, then are cut: they never
/// end on their own, and the drain should not wait out its whole timeout for them.
pub const LONG_LIVED_GRACE: Duration = Duration::from_secs(5);
