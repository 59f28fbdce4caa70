//! Slipway data plane: HTTP/TCP proxy with atomic upstream swap, verified drain, metrics.
//!
//! `serve` runs the proxy (`slipway-agent proxy` is a thin wrapper); `ProxyClient` drives it
//! over its unix socket. Routes persist in a state file and are restored on start.
// One exception: taking ownership of the fds systemd passes at start (`fdstore`).
#![deny(unsafe_code)]

mod access_log;
mod acme;
mod api;
mod app;
mod body;
mod client;
mod client_io;
mod config;
mod conn;
mod control;
pub mod defaults;
mod drain;
mod edge;
mod error;
mod fdstore;
mod h2c;
mod headers;
mod hosts;
mod http;
mod idle;
mod inspect;
mod metrics;
mod notify;
mod pages;
mod pause;
mod pool;
mod proxy_protocol;
mod route_certs;
mod router;
mod table;
mod takeover;
mod tcp;
mod tls;
mod upstream;
mod workers;

use std::future::Future;
use std::sync::Arc;

use tracing::{error, info, warn};

pub use access_log::{AccessLogConfig, AccessLogTarget};
pub use api::{AppStats, EdgeInfo, RouteInfo, RouteSpec, UpstreamStats};
pub use client::ProxyClient;
pub use config::{AcmeChallenge, AcmeConfig, Cidr, EdgeConfig, Limits, ProxyConfig};
pub use drain::DrainReport;
pub use error::ProxyError;
pub use metrics::{LatencySummary, StatusCounts};
pub use pause::Mode;
pub use slipway_proto::Protocol;
pub use upstream::Upstream;

/// Runs the proxy until `shutdown` resolves, then stops accepting, lets open connections
/// finish (up to [`defaults::SHUTDOWN_GRACE`]) and returns.
pub async fn serve(cfg: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    // Another proxy serving this control socket hands its listening sockets over (see
    // `takeover`); one that cannot is left alone, before we touch its ports.
    let inherited = if control::check_not_running(&cfg.control_socket).is_err() {
        match takeover::receive(&cfg.control_socket)? {
            Some(i) => i,
            None => return control::check_not_running(&cfg.control_socket),
        }
    } else {
        // Started by systemd after a crash: the sockets it kept for us (if any).
        takeover::Inherited::from_sockets(fdstore::passed())
    };
    let inherited = Arc::new(inherited);
    let workers = workers::Workers::start(cfg.http_workers)?;
    let access_log = match &cfg.edge.access_log {
        Some(c) => Some(access_log::AccessLog::start(c.clone())?),
        None => None,
    };
    let sighup = access_log.clone().map(|log| {
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                info!("SIGHUP: reopening the access log");
                log.reopen();
            }
        })
    });
    let router = Arc::new(router::Router::new(
        cfg.bind,
        cfg.state_file.clone(),
        workers,
        cfg.edge.clone(),
        access_log,
        inherited.clone(),
    ));
    match table::load(&cfg.state_file)? {
        table::Loaded::Missing => {
            info!(state = %cfg.state_file.display(), "no routing table yet; starting with no routes")
        }
        table::Loaded::Table(t) => {
            info!(state = %cfg.state_file.display(), routes = t.routes.len(), "routing table restored");
            router.restore(t).await;
        }
        table::Loaded::Corrupt { reason, moved_to } => error!(
            state = %cfg.state_file.display(), moved_to = %moved_to.display(), %reason,
            "ROUTING TABLE CORRUPT: kept aside, starting with NO ROUTES; \
             the agent must set every app's upstream again"
        ),
    }
    let cert_watch = tokio::spawn(router.certs().watch());
    let acme_renew = router.acme().map(|a| tokio::spawn(a.renew_loop()));
    // The socket appears only once the routes are live, so waiting for it is enough.
    let control = control::bind(&cfg.control_socket, true)?;
    let takeover_listener = takeover::bind(&cfg.control_socket)?;
    // The previous proxy (if any) stops accepting and drains from here on.
    inherited.ready();
    let handed_off = Arc::new(tokio::sync::Notify::new());
    let takeover_task = {
        let r = router.clone();
        tokio::spawn(takeover::serve(
            takeover_listener,
            move || r.handoff(),
            handed_off.clone(),
        ))
    };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(metrics::ProxyCollector(router.clone())));
    let registry = Arc::new(registry);

    let metrics_task = match cfg.metrics_listen {
        Some(addr) => {
            // A proxy we took over from may hold the port for a moment.
            let mut l = tokio::net::TcpListener::bind(addr).await;
            for _ in 0..defaults::RESTORE_BIND_RETRIES * 4 {
                if l.is_ok() {
                    break;
                }
                tokio::time::sleep(defaults::RESTORE_BIND_RETRY_DELAY).await;
                l = tokio::net::TcpListener::bind(addr).await;
            }
            let l = l.map_err(|source| ProxyError::MetricsBind { addr, source })?;
            info!(%addr, "serving /metrics");
            Some(tokio::spawn(control::serve_metrics(
                l,
                router.clone(),
                registry.clone(),
            )))
        }
        None => None,
    };
    info!(socket = %cfg.control_socket.display(), bind = %cfg.bind, "proxy ready");
    notify::ready();
    let mut replaced = false;
    tokio::select! {
        _ = control::serve_unix(control, router.clone(), registry) => {}
        _ = shutdown => {}
        _ = handed_off.notified() => replaced = true,
    }
    takeover_task.abort();
    if replaced {
        router.start_draining();
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    cert_watch.abort();
    if let Some(t) = sighup {
        t.abort();
    }
    if let Some(t) = acme_renew {
        t.abort();
    }
    info!("shutting down: listeners closed, letting open connections finish");
    let left = router.shutdown(defaults::SHUTDOWN_GRACE).await;
    if left > 0 {
        warn!(
            connections = left,
            "shutdown grace over; closing connections still open"
        );
    }
    // After a takeover the socket files are the new proxy's.
    if !replaced {
        let _ = std::fs::remove_file(&cfg.control_socket);
        let _ = std::fs::remove_file(takeover::socket_path(&cfg.control_socket));
    }
    info!("proxy stopped");
    Ok(())
}
