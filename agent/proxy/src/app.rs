//! One app as the proxy runs it: its own listener (apps routed by port), its edge spec
//! (apps routed by host), its current upstream (arc-swapped) and the retired ones.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use slipway_proto::{EdgeSpec, Protocol};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::defaults;
use crate::error::ProxyError;
use crate::pause::Gate;
use crate::table::RouteEntry;
use crate::upstream::{Upstream, UpstreamState};

/// The public listener of an app.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) listen: u16,
    pub(crate) protocol: Protocol,
    pub(crate) bound: Option<SocketAddr>,
    pub(crate) error: Option<String>,
    pub(crate) task: Option<JoinHandle<()>>,
    /// A duplicate of the listening socket, handed to a new proxy at takeover.
    pub(crate) fd: Option<OwnedFd>,
}

impl Listener {
    pub(crate) fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.bound = None;
        self.fd = None;
        self.task.take().inspect(|t| t.abort())
    }
}

/// One app: its listener, its current upstream and the retired ones still tracked.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: String,
    /// Read once per request (HTTP) or connection (TCP); swapped by `set_upstream`.
    pub(crate) current: ArcSwapOption<UpstreamState>,
    /// Known upstreams, least recently made current first; the current one included.
    pub(crate) upstreams: Mutex<Vec<Arc<UpstreamState>>>,
    pub(crate) listener: Mutex<Listener>,
    /// Hosts and TLS on the shared listeners (control plane only: requests read the
    /// host table built from it).
    pub(crate) edge: Mutex<EdgeSpec>,
    /// Running, paused or stopped (persisted with the route).
    pub(crate) gate: Gate,
    /// Requests go upstream as h2c (`edge.upstream_h2c`); read per request.
    pub(crate) h2c: AtomicBool,
    /// TCP: send a PROXY protocol v1 line upstream (`edge.send_proxy_protocol`).
    pub(crate) send_proxy: AtomicBool,
    /// Turns true when the app is removed or the proxy stops: connections finish gracefully.
    pub(crate) closing: watch::Sender<bool>,
}

impl App {
    pub(crate) fn new(name: &str, listen: u16, protocol: Protocol) -> Self {
        App {
            name: name.to_owned(),
            current: ArcSwapOption::empty(),
            upstreams: Mutex::new(Vec::new()),
            listener: Mutex::new(Listener {
                listen,
                protocol,
                bound: None,
                error: None,
                task: None,
                fd: None,
            }),
            edge: Mutex::new(EdgeSpec::default()),
            h2c: AtomicBool::new(false),
            send_proxy: AtomicBool::new(false),
            gate: Gate::default(),
            closing: watch::channel(false).0,
        }
    }

    pub(crate) fn is_current(&self, s: &Arc<UpstreamState>) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, s))
    }

    pub(crate) fn find(&self, id: &str) -> Result<Arc<UpstreamState>, ProxyError> {
        let ups = self.upstreams.lock().unwrap();
        ups.iter()
            .find(|u| u.upstream.id == id)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownUpstream {
                app: self.name.clone(),
                id: id.to_owned(),
            })
    }

    /// The state for `upstream`, reused when the same container comes back (instant revert
    /// keeps its counters), moved to the most-recent end of the list.
    pub(crate) fn state_for(&self, upstream: &Upstream) -> Arc<UpstreamState> {
        let mut ups = self.upstreams.lock().unwrap();
        let found = ups.iter().position(|u| u.upstream.id == upstream.id);
        let state = match found.map(|i| ups.remove(i)) {
            Some(s) if s.upstream.addr == upstream.addr => s,
            other => {
                if let Some(old) = other {
                    warn!(app = %self.name, upstream = %upstream.id, old = %old.upstream.addr,
                        new = %upstream.addr, "upstream id reused with a new address; counters restart");
                }
                Arc::new(UpstreamState::new(upstream.clone()))
            }
        };
        ups.push(state.clone());
        state
    }

    /// Keeps at most MAX_RETIRED_UPSTREAMS retired upstreams, dropping the oldest idle ones.
    pub(crate) fn prune_retired(&self) {
        let current = self.current.load_full();
        let mut ups = self.upstreams.lock().unwrap();
        let is_cur = |u: &Arc<UpstreamState>| current.as_ref().is_some_and(|c| Arc::ptr_eq(c, u));
        while ups.iter().filter(|u| !is_cur(u)).count() > defaults::MAX_RETIRED_UPSTREAMS {
            let Some(i) = ups.iter().position(|u| !is_cur(u) && u.in_flight() == 0) else {
                break;
            };
            let gone = ups.remove(i);
            info!(app = %self.name, upstream = %gone.upstream.id, "retired upstream dropped");
        }
    }

    pub(crate) fn close(&self) -> Option<JoinHandle<()>> {
        let _ = self.closing.send(true);
        self.listener.lock().unwrap().stop()
    }

    pub(crate) fn route_entry(&self) -> Option<RouteEntry> {
        let l = self.listener.lock().unwrap();
        self.current.load().as_ref().map(|u| RouteEntry {
            app: self.name.clone(),
            listen: l.listen,
            protocol: l.protocol,
            upstream: u.upstream.clone(),
            edge: self.edge.lock().unwrap().clone(),
            mode: self.gate.mode(),
        })
    }
}
