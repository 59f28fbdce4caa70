//! Listeners: an app's own port bound (or taken over) and accepting, and the shared ones.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use slipway_proto::{EdgeSpec, Protocol};
use tokio::net::{TcpListener, TcpSocket};

use super::{App, Router};
use crate::app::Listener;
use crate::conn::Target;
use crate::defaults;
use crate::edge::Scheme;
use crate::error::ProxyError;
use crate::takeover::Slot;

/// Binds a public listener (SO_REUSEADDR, backlog [`defaults::LISTEN_BACKLOG`]) for `app`.
pub(crate) fn bind_tcp(app: &str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let err = |source| ProxyError::Bind {
        app: app.to_owned(),
        addr,
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.set_nodelay(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(defaults::LISTEN_BACKLOG).map_err(err)
}

impl Router {
    /// Binds the shared listeners `edge` needs (HTTP for any host, HTTPS with TLS).
    pub(super) fn ensure_shared(&self, app: &str, edge: &EdgeSpec) -> Result<(), ProxyError> {
        if edge.hosts.is_empty() {
            return Ok(());
        }
        self.edge.ensure(app, Scheme::Http, &self.ctx)?;
        if edge.tls.is_some() {
            self.edge.ensure(app, Scheme::Https, &self.ctx)?;
        }
        Ok(())
    }

    pub(super) fn bind_listener(&self, app: &str, listen: u16) -> Result<TcpListener, ProxyError> {
        let slot = Slot::App {
            app: app.to_owned(),
        };
        if let Some(l) = self.inherited.take(&slot) {
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            if listen == 0 || port == listen {
                return Ok(l);
            }
        }
        bind_tcp(app, SocketAddr::new(self.bind, listen))
    }

    pub(super) fn start_listener(&self, app: &Arc<App>, l: TcpListener, slot: &mut Listener) {
        // systemd keeps a copy, so a crash refuses no connection (replacing any copy of
        // this app's previous listener).
        let store_slot = Slot::App {
            app: app.name.clone(),
        };
        crate::fdstore::remove(&store_slot);
        crate::fdstore::store(&store_slot, l.as_fd());
        slot.bound = l.local_addr().ok();
        slot.fd = l.as_fd().try_clone_to_owned().ok();
        slot.error = None;
        let task = match slot.protocol {
            Protocol::Http => {
                let target = Target::App(app.clone());
                tokio::spawn(crate::http::accept_loop(l, target, self.ctx.clone()))
            }
            Protocol::Tcp => {
                let accept_proxy = self.ctx.cfg.proxy_protocol;
                tokio::spawn(crate::tcp::accept_loop(
                    l,
                    app.clone(),
                    self.conns.clone(),
                    accept_proxy,
                ))
            }
        };
        slot.task = Some(task);
    }

    /// Binds with retries: a previous proxy may still be letting go of the port.
    pub(super) async fn bind_retrying<T>(
        mut bind: impl FnMut() -> Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        let mut bound = bind();
        for _ in 0..defaults::RESTORE_BIND_RETRIES {
            if bound.is_ok() {
                break;
            }
            tokio::time::sleep(defaults::RESTORE_BIND_RETRY_DELAY).await;
            bound = bind();
        }
        bound
    }
}
