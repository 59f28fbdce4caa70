//! The route table in memory: one [`App`] per app with its public listener and its upstream,
//! swapped atomically (arc-swap) so the hot path never takes a lock. Changes are serialized,
//! persisted first (`table`), then applied.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use slipway_proto::{AppName, Protocol};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::{AppStats, RouteInfo, UpstreamStats};
use crate::defaults;
use crate::drain::{DrainReport, Tracker};
use crate::error::ProxyError;
use crate::http::HttpCtx;
use crate::table::{self, RouteEntry, RouteTable};
use crate::upstream::{Upstream, UpstreamState};
use crate::workers::Workers;

/// Checks an app name from a request (the rule is [`AppName`]'s).
pub(crate) fn app_name(value: &str) -> Result<AppName, ProxyError> {
    Ok(value.parse()?)
}

/// The public listener of an app.
#[derive(Debug)]
struct Listener {
    listen: u16,
    protocol: Protocol,
    bound: Option<SocketAddr>,
    error: Option<String>,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.bound = None;
        self.task.take().inspect(|t| t.abort())
    }
}

/// One app: its listener, its current upstream and the retired ones still tracked.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: AppName,
    /// Read once per request (HTTP) or connection (TCP); swapped by `set_upstream`.
    pub(crate) current: ArcSwapOption<UpstreamState>,
    /// Known upstreams, least recently made current first; the current one included.
    upstreams: Mutex<Vec<Arc<UpstreamState>>>,
    listener: Mutex<Listener>,
    /// Turns true when the app is removed or the proxy stops: connections finish gracefully.
    pub(crate) closing: watch::Sender<bool>,
}

impl App {
    fn new(name: AppName, listen: u16, protocol: Protocol) -> Self {
        App {
            name,
            current: ArcSwapOption::empty(),
            upstreams: Mutex::new(Vec::new()),
            listener: Mutex::new(Listener {
                listen,
                protocol,
                bound: None,
                error: None,
                task: None,
            }),
            closing: watch::channel(false).0,
        }
    }

    fn is_current(&self, s: &Arc<UpstreamState>) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, s))
    }

    fn find(&self, id: &str) -> Result<Arc<UpstreamState>, ProxyError> {
        let ups = self.upstreams.lock().unwrap();
        ups.iter()
            .find(|u| u.upstream.id == id)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownUpstream {
                app: self.name.to_string(),
                id: id.to_owned(),
            })
    }

    /// The state for `upstream`, reused when the same container comes back (instant revert
    /// keeps its counters), moved to the most-recent end of the list.
    fn state_for(&self, upstream: &Upstream) -> Arc<UpstreamState> {
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
    fn prune_retired(&self) {
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

    fn close(&self) -> Option<JoinHandle<()>> {
        let _ = self.closing.send(true);
        self.listener.lock().unwrap().stop()
    }

    fn route_entry(&self) -> Option<RouteEntry> {
        let l = self.listener.lock().unwrap();
        self.current.load().as_ref().map(|u| RouteEntry {
            app: self.name.clone(),
            listen: l.listen,
            protocol: l.protocol,
            upstream: u.upstream.clone(),
        })
    }
}

/// All apps, the shared connection context, and where the table is persisted.
#[derive(Debug)]
pub(crate) struct Router {
    bind: IpAddr,
    state_file: PathBuf,
    apps: RwLock<HashMap<AppName, Arc<App>>>,
    /// Serializes changes so the file on disk always matches the order they were applied in.
    ops: tokio::sync::Mutex<()>,
    ctx: Arc<HttpCtx>,
    /// Client connections open across all apps (for graceful shutdown).
    conns: Arc<Tracker>,
}

impl Router {
    pub(crate) fn new(bind: IpAddr, state_file: PathBuf, workers: Workers) -> Self {
        let conns = Arc::new(Tracker::default());
        Router {
            bind,
            state_file,
            apps: RwLock::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            ctx: Arc::new(HttpCtx::new(conns.clone(), workers)),
            conns,
        }
    }

    fn app(&self, name: &str) -> Result<Arc<App>, ProxyError> {
        self.apps
            .read()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownApp(name.to_owned()))
    }

    fn bind_listener(&self, app: &str, listen: u16) -> Result<TcpListener, ProxyError> {
        let addr = SocketAddr::new(self.bind, listen);
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

    fn start_listener(&self, app: &Arc<App>, l: TcpListener, slot: &mut Listener) {
        slot.bound = l.local_addr().ok();
        slot.error = None;
        let task = match slot.protocol {
            Protocol::Http => {
                tokio::spawn(crate::http::accept_loop(l, app.clone(), self.ctx.clone()))
            }
            Protocol::Tcp => {
                tokio::spawn(crate::tcp::accept_loop(l, app.clone(), self.conns.clone()))
            }
        };
        slot.task = Some(task);
    }

    fn snapshot(&self) -> RouteTable {
        let apps = self.apps.read().unwrap();
        let mut routes: Vec<RouteEntry> = apps.values().filter_map(|a| a.route_entry()).collect();
        routes.sort_by(|a, b| a.app.cmp(&b.app));
        RouteTable {
            version: table::TABLE_VERSION,
            routes,
        }
    }

    async fn persist(&self, t: RouteTable) -> Result<(), ProxyError> {
        let path = self.state_file.clone();
        tokio::task::spawn_blocking(move || table::save(&path, &t))
            .await
            .expect("route table writer panicked")
    }

    /// Starts the routes of a table read at start-up. A port that cannot be bound is logged
    /// and kept in the table (the next `set_upstream` retries it).
    pub(crate) async fn restore(&self, t: RouteTable) {
        for r in t.routes {
            let app = Arc::new(App::new(r.app.clone(), r.listen, r.protocol));
            let state = app.state_for(&r.upstream);
            app.current.store(Some(state));
            // The previous proxy may still be letting go of the port (a quick restart):
            // retry for a moment before giving up on this route's listener.
            let mut bound = self.bind_listener(&r.app, r.listen);
            for _ in 0..crate::defaults::RESTORE_BIND_RETRIES {
                if bound.is_ok() {
                    break;
                }
                tokio::time::sleep(crate::defaults::RESTORE_BIND_RETRY_DELAY).await;
                bound = self.bind_listener(&r.app, r.listen);
            }
            {
                let mut slot = app.listener.lock().unwrap();
                match bound {
                    Ok(l) => self.start_listener(&app, l, &mut slot),
                    Err(e) => {
                        error!(app = %r.app, error = %e, "restored route has no listener");
                        slot.error = Some(e.to_string());
                    }
                }
            }
            info!(app = %r.app, listen = r.listen, protocol = ?r.protocol,
                upstream = %r.upstream.id, addr = %r.upstream.addr, "route restored");
            self.apps.write().unwrap().insert(r.app, app);
        }
    }

    /// Creates the app's listener if needed and points the app at `upstream` atomically.
    pub(crate) async fn set_upstream(
        &self,
        name: &str,
        listen: u16,
        protocol: Protocol,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        let name = &app_name(name)?;
        let _ops = self.ops.lock().await;
        let existing = self.apps.read().unwrap().get(name).cloned();
        let app = existing
            .clone()
            .unwrap_or_else(|| Arc::new(App::new(name.clone(), listen, protocol)));

        // 1. Listener: bind the new one before changing anything else.
        let (needs_bind, same_port) = {
            let slot = app.listener.lock().unwrap();
            let up = slot.task.is_some();
            let changed = slot.listen != listen || slot.protocol != protocol;
            (!up || changed, up && slot.listen == listen)
        };
        let mut new_listener = None;
        if needs_bind {
            if same_port {
                // Protocol change on the same port: the old listener must let go first.
                let old = app.listener.lock().unwrap().stop();
                if let Some(t) = old {
                    let _ = t.await;
                }
            }
            new_listener = Some(self.bind_listener(name, listen)?);
        }

        // 2. Persist the new table; on failure nothing has changed.
        let mut t = self.snapshot();
        t.routes.retain(|r| r.app != *name);
        t.routes.push(RouteEntry {
            app: name.clone(),
            listen,
            protocol,
            upstream: upstream.clone(),
        });
        t.routes.sort_by(|a, b| a.app.cmp(&b.app));
        self.persist(t).await?;

        // 3. Apply.
        if let Some(l) = new_listener {
            let mut slot = app.listener.lock().unwrap();
            slot.stop();
            slot.listen = listen;
            slot.protocol = protocol;
            self.start_listener(&app, l, &mut slot);
        }
        let state = app.state_for(&upstream);
        let previous = app.current.swap(Some(state));
        app.prune_retired();
        if existing.is_none() {
            self.apps.write().unwrap().insert(name.clone(), app);
        }
        let previous = previous.map(|p| p.upstream.clone());
        info!(app = %name, listen, protocol = ?protocol, upstream = %upstream.id,
            addr = %upstream.addr, previous = ?previous.as_ref().map(|p| &p.id), "upstream set");
        Ok(previous)
    }

    /// Removes the app and closes its listener; open connections finish gracefully.
    /// Removing an unknown app succeeds (the agent may retry after a crash).
    pub(crate) async fn remove_app(&self, name: &str) -> Result<(), ProxyError> {
        app_name(name)?;
        let _ops = self.ops.lock().await;
        if !self.apps.read().unwrap().contains_key(name) {
            info!(app = name, "remove: app has no route; nothing to do");
            return Ok(());
        }
        let mut t = self.snapshot();
        t.routes.retain(|r| r.app != *name);
        self.persist(t).await?;
        if let Some(app) = self.apps.write().unwrap().remove(name) {
            app.close();
        }
        info!(app = name, "app removed; listener closed");
        Ok(())
    }

    /// Waits for zero in-flight work on a retired upstream; cuts what is left at `timeout`.
    pub(crate) async fn drain(
        &self,
        name: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<DrainReport, ProxyError> {
        let app = self.app(name)?;
        let state = app.find(id)?;
        let still_current = || ProxyError::StillCurrent {
            app: name.to_owned(),
            id: id.to_owned(),
        };
        if app.is_current(&state) {
            return Err(still_current());
        }
        let start = Instant::now();
        let in_flight = state.in_flight();
        if state.tracker().wait_idle(start + timeout).await {
            let waited = start.elapsed();
            info!(
                app = name,
                upstream = id,
                in_flight_at_start = in_flight,
                ?waited,
                "drained"
            );
            return Ok(DrainReport {
                drained: true,
                cut: 0,
                waited,
            });
        }
        if app.is_current(&state) {
            // Switched back to while we waited: its traffic is wanted again.
            warn!(
                app = name,
                upstream = id,
                "drain abandoned: upstream became current again"
            );
            return Err(still_current());
        }
        let cut = state.cut_all();
        warn!(
            app = name,
            upstream = id,
            cut,
            ?timeout,
            "drain timed out; cut {cut} request(s)/connection(s) still in flight"
        );
        state
            .tracker()
            .wait_idle(Instant::now() + defaults::CUT_SETTLE)
            .await;
        Ok(DrainReport {
            drained: false,
            cut,
            waited: start.elapsed(),
        })
    }

    /// Drops a retired upstream's state (and its metrics) once the agent no longer needs them.
    pub(crate) fn forget_upstream(&self, name: &str, id: &str) -> Result<(), ProxyError> {
        let app = self.app(name)?;
        let state = app.find(id)?;
        if app.is_current(&state) {
            return Err(ProxyError::StillCurrent {
                app: name.to_owned(),
                id: id.to_owned(),
            });
        }
        app.upstreams
            .lock()
            .unwrap()
            .retain(|u| !Arc::ptr_eq(u, &state));
        info!(app = name, upstream = id, "upstream forgotten");
        Ok(())
    }

    pub(crate) fn stats(&self, name: &str) -> Result<AppStats, ProxyError> {
        let app = self.app(name)?;
        let current = app.current.load_full();
        let (listen, protocol) = {
            let l = app.listener.lock().unwrap();
            (l.listen, l.protocol)
        };
        let upstreams = app
            .upstreams
            .lock()
            .unwrap()
            .iter()
            .map(|u| {
                let m = &u.metrics;
                let get =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                UpstreamStats {
                    id: u.upstream.id.clone(),
                    addr: u.upstream.addr,
                    current: current.as_ref().is_some_and(|c| Arc::ptr_eq(c, u)),
                    in_flight: u.in_flight(),
                    requests: m.status_counts(),
                    connections: get(&m.connections),
                    connect_errors: get(&m.connect_errors),
                    cut: get(&m.cut),
                    bytes_in: get(&m.bytes_in),
                    bytes_out: get(&m.bytes_out),
                    latency: m.latency.summary(),
                }
            })
            .collect();
        Ok(AppStats {
            app: app.name.clone(),
            listen,
            protocol,
            current: current.map(|c| c.upstream.id.clone()),
            upstreams,
        })
    }

    pub(crate) fn routes(&self) -> Vec<RouteInfo> {
        let apps = self.apps.read().unwrap();
        let mut out: Vec<RouteInfo> = apps
            .values()
            .map(|a| {
                let l = a.listener.lock().unwrap();
                RouteInfo {
                    app: a.name.clone(),
                    listen: l.listen,
                    protocol: l.protocol,
                    bound: l.bound,
                    listen_error: l.error.clone(),
                    upstream: a.current.load().as_ref().map(|u| u.upstream.clone()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        out
    }

    /// (app, upstream, is current) for every tracked upstream; read by the metrics collector.
    pub(crate) fn all_upstreams(&self) -> Vec<(AppName, Arc<UpstreamState>, bool)> {
        let apps = self.apps.read().unwrap();
        let mut out = Vec::new();
        for a in apps.values() {
            let current = a.current.load_full();
            for u in a.upstreams.lock().unwrap().iter() {
                let cur = current.as_ref().is_some_and(|c| Arc::ptr_eq(c, u));
                out.push((a.name.clone(), u.clone(), cur));
            }
        }
        out
    }

    /// Stops every listener, lets open connections finish for up to `grace`.
    /// Returns the number of connections still open when the grace ended.
    pub(crate) async fn shutdown(&self, grace: Duration) -> u64 {
        let apps: Vec<Arc<App>> = self.apps.read().unwrap().values().cloned().collect();
        for a in &apps {
            a.close();
        }
        if self.conns.wait_idle(Instant::now() + grace).await {
            0
        } else {
            self.conns.count()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(app_name("web-1").is_ok());
        let e = app_name("Web").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("app `Web` is invalid"), "{e}");
    }
}
