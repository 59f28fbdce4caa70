//! The shared listeners (80 and 443 by default) that serve every host-routed app. Each is
//! bound with the first app that needs it and kept for the life of the proxy; requests pick
//! their app from the host table, swapped whole on every change.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::acme::Acme;
use crate::config::EdgeConfig;
use crate::conn::Target;
use crate::error::ProxyError;
use crate::hosts::HostTable;
use crate::http::HttpCtx;
use crate::takeover::{Inherited, Slot as TakeoverSlot};
use crate::tls::CertStore;

/// Which shared listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    bound: Option<SocketAddr>,
    task: Option<JoinHandle<()>>,
    fd: Option<OwnedFd>,
}

/// Shared listeners and the host table their requests are routed by.
#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) hosts: ArcSwap<HostTable>,
    /// Turns true when the proxy stops: connections on shared listeners finish gracefully.
    pub(crate) closing: watch::Sender<bool>,
    /// Port of the HTTPS listener as clients reach it, for redirects (0 until bound).
    pub(crate) https_port: AtomicU16,
    /// Certificates of the HTTPS listener.
    pub(crate) certs: Arc<CertStore>,
    /// ACME client, when configured.
    pub(crate) acme: Option<Arc<Acme>>,
    bind: IpAddr,
    cfg: EdgeConfig,
    /// Sockets from a previous proxy, used instead of binding.
    inherited: Arc<Inherited>,
    http: Mutex<Slot>,
    https: Mutex<Slot>,
}

impl Edge {
    pub(crate) fn new(bind: IpAddr, cfg: EdgeConfig, inherited: Arc<Inherited>) -> Self {
        let certs = Arc::new(CertStore::with_default_host(cfg.default_tls_host.clone()));
        Edge {
            acme: cfg
                .acme
                .clone()
                .map(|a| Arc::new(Acme::new(a, certs.clone()))),
            hosts: ArcSwap::default(),
            closing: watch::channel(false).0,
            https_port: AtomicU16::new(0),
            certs,
            bind,
            cfg,
            inherited,
            http: Mutex::default(),
            https: Mutex::default(),
        }
    }

    fn slot(&self, scheme: Scheme) -> &Mutex<Slot> {
        match scheme {
            Scheme::Http => &self.http,
            Scheme::Https => &self.https,
        }
    }

    /// Where the listener is bound, if it is.
    pub(crate) fn bound(&self, scheme: Scheme) -> Option<SocketAddr> {
        self.slot(scheme).lock().unwrap().bound
    }

    /// Binds the shared listener for `app` unless it is up already.
    pub(crate) fn ensure(
        self: &Arc<Self>,
        app: &str,
        scheme: Scheme,
        ctx: &Arc<HttpCtx>,
    ) -> Result<(), ProxyError> {
        let mut slot = self.slot(scheme).lock().unwrap();
        if slot.task.is_some() {
            return Ok(());
        }
        let port = match scheme {
            Scheme::Http => self.cfg.http_port,
            Scheme::Https => self.cfg.https_port,
        };
        let store_slot = match scheme {
            Scheme::Http => TakeoverSlot::Http,
            Scheme::Https => TakeoverSlot::Https,
        };
        let l = match self.inherited.take(&store_slot) {
            Some(l) => l,
            None => crate::router::bind_tcp(app, SocketAddr::new(self.bind, port))?,
        };
        crate::fdstore::store(&store_slot, l.as_fd());
        slot.fd = l.as_fd().try_clone_to_owned().ok();
        let addr = l.local_addr().ok();
        if let (Scheme::Https, Some(a)) = (scheme, addr) {
            self.https_port.store(a.port(), Relaxed);
        }
        info!(app, scheme = scheme.name(), addr = ?addr, "shared listener up");
        slot.bound = addr;
        let target = Target::Edge(self.clone(), scheme);
        slot.task = Some(tokio::spawn(crate::http::accept_loop(
            l,
            target,
            ctx.clone(),
        )));
        Ok(())
    }

    /// Duplicates of the bound shared listeners, for a takeover.
    pub(crate) fn handoff(&self) -> Vec<(TakeoverSlot, OwnedFd)> {
        let mut out = Vec::new();
        for (kind, s) in [
            (TakeoverSlot::Http, &self.http),
            (TakeoverSlot::Https, &self.https),
        ] {
            if let Some(fd) = s
                .lock()
                .unwrap()
                .fd
                .as_ref()
                .and_then(|f| f.try_clone().ok())
            {
                out.push((kind, fd));
            }
        }
        out
    }

    /// Stops accepting on both listeners; open connections finish gracefully.
    pub(crate) fn close(&self) {
        let _ = self.closing.send(true);
        for s in [&self.http, &self.https] {
            let mut s = s.lock().unwrap();
            s.bound = None;
            s.fd = None;
            if let Some(t) = s.task.take() {
                t.abort();
            }
        }
    }
}
