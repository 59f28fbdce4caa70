//! The route table in memory: one [`App`] per app with its public listener and its upstream,
//! swapped atomically (arc-swap) so the hot path never takes a lock. Changes are serialized,
//! persisted first (`table`), then applied.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use slipway_proto::{EdgeSpec, Protocol};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::{AppStats, EdgeInfo, RouteInfo, RouteSpec, UpstreamStats};
pub(crate) use crate::app::App;
use crate::app::Listener;
use crate::config::EdgeConfig;
use crate::conn::Target;
use crate::defaults;
use crate::drain::{DrainReport, Tracker};
use crate::edge::{Edge, Scheme};
use crate::error::ProxyError;
use crate::hosts::{self, HostTable};
use crate::http::HttpCtx;
use crate::table::{self, RouteEntry, RouteTable};
use crate::tls::{self, Source};
use crate::upstream::{Upstream, UpstreamState};
use crate::workers::Workers;

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

/// Upstream ids are container ids; they become metric labels and URL path segments.
pub(crate) fn validate_name(what: &'static str, value: &str) -> Result<(), ProxyError> {
    let invalid = |reason: String| ProxyError::Invalid {
        what,
        value: value.to_owned(),
        reason,
    };
    if what == "app" {
        return slipway_proto::spec::valid_app_name(value).map_err(invalid);
    }
    if value.is_empty() || value.len() > 128 {
        return Err(invalid("must be 1 to 128 characters".into()));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "may hold only letters, digits, `-`, `_` and `.`, starting with a letter or digit"
                .into(),
        ));
    }
    Ok(())
}

/// All apps, the shared connection context, and where the table is persisted.
#[derive(Debug)]
pub(crate) struct Router {
    bind: IpAddr,
    state_file: PathBuf,
    apps: RwLock<HashMap<String, Arc<App>>>,
    /// Serializes changes so the file on disk always matches the order they were applied in.
    ops: tokio::sync::Mutex<()>,
    ctx: Arc<HttpCtx>,
    /// Client connections open across all apps (for graceful shutdown).
    conns: Arc<Tracker>,
    /// Shared listeners and the host table.
    edge: Arc<Edge>,
}

impl Router {
    pub(crate) fn new(
        bind: IpAddr,
        state_file: PathBuf,
        workers: Workers,
        edge_cfg: EdgeConfig,
        log: Option<Arc<crate::access_log::AccessLog>>,
    ) -> Self {
        let conns = Arc::new(Tracker::default());
        let edge = Arc::new(Edge::new(bind, edge_cfg.clone()));
        let tls = tls::server_config(edge.certs.clone());
        Router {
            bind,
            state_file,
            apps: RwLock::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            ctx: Arc::new(HttpCtx::new(conns.clone(), workers, edge_cfg, tls, log)),
            edge,
            conns,
        }
    }

    /// Rebuilds the host table from every app's edge spec and swaps it in.
    fn rebuild_hosts(&self) {
        let apps = self.apps.read().unwrap();
        let specs: Vec<(Arc<App>, EdgeSpec)> = apps
            .values()
            .map(|a| (a.clone(), a.edge.lock().unwrap().clone()))
            .filter(|(_, e)| !e.hosts.is_empty())
            .collect();
        let table = HostTable::build(specs.iter().map(|(a, e)| (a, e)));
        self.edge.hosts.store(Arc::new(table));
    }

    /// Binds the shared listeners `edge` needs (HTTP for any host, HTTPS with TLS).
    fn ensure_shared(&self, app: &str, edge: &EdgeSpec) -> Result<(), ProxyError> {
        if edge.hosts.is_empty() {
            return Ok(());
        }
        self.edge.ensure(app, Scheme::Http, &self.ctx)?;
        if edge.tls.is_some() {
            self.edge.ensure(app, Scheme::Https, &self.ctx)?;
        }
        Ok(())
    }

    /// Loads the certificate files of `edge` (if it names files) and checks them for its
    /// hosts. None for apps without TLS or with ACME.
    fn load_certs(
        &self,
        app: &str,
        edge: &EdgeSpec,
    ) -> Result<Option<(Source, Vec<(String, Arc<rustls::sign::CertifiedKey>)>)>, ProxyError> {
        let Some(t) = &edge.tls else { return Ok(None) };
        if t.acme && self.edge.acme.is_none() {
            return Err(ProxyError::NoAcme(app.to_owned()));
        }
        match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => {
                let (k, stamp) = tls::load_files(app, &edge.hosts, cert, key)?;
                let source = Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    stamp,
                };
                let keys = edge.hosts.iter().map(|h| (h.clone(), k.clone())).collect();
                Ok(Some((source, keys)))
            }
            _ => Ok(None),
        }
    }

    /// Applies the certificates loaded for `app` (or drops them when it has no TLS).
    fn apply_certs(
        &self,
        app: &str,
        certs: Option<(Source, Vec<(String, Arc<rustls::sign::CertifiedKey>)>)>,
        edge: &EdgeSpec,
    ) {
        match certs {
            Some((source, keys)) => self.edge.certs.set_app(app, source, keys),
            None if edge.tls.as_ref().is_some_and(|t| t.acme) => {}
            None => self.edge.certs.remove_app(app),
        }
    }

    /// The ACME client, if configured (for its renewal loop).
    pub(crate) fn acme(&self) -> Option<Arc<crate::acme::Acme>> {
        self.edge.acme.clone()
    }

    /// Hands `app`'s hosts to ACME when its TLS asks for it (else forgets it there).
    fn apply_acme(&self, app: &str, edge: &EdgeSpec) {
        let Some(acme) = &self.edge.acme else { return };
        if edge.tls.as_ref().is_some_and(|t| t.acme) {
            acme.set_app(app, &edge.hosts);
        } else {
            acme.remove_app(app);
        }
    }

    /// The certificate store (for the reload watcher and ACME).
    pub(crate) fn certs(&self) -> Arc<tls::CertStore> {
        self.edge.certs.clone()
    }

    /// Where the shared listeners are bound.
    pub(crate) fn edge_info(&self) -> EdgeInfo {
        EdgeInfo {
            http: self.edge.bound(Scheme::Http),
            https: self.edge.bound(Scheme::Https),
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
        bind_tcp(app, SocketAddr::new(self.bind, listen))
    }

    fn start_listener(&self, app: &Arc<App>, l: TcpListener, slot: &mut Listener) {
        slot.bound = l.local_addr().ok();
        slot.error = None;
        let task = match slot.protocol {
            Protocol::Http => {
                let target = Target::App(app.clone());
                tokio::spawn(crate::http::accept_loop(l, target, self.ctx.clone()))
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

    /// Binds with retries: a previous proxy may still be letting go of the port.
    fn bind_retrying<T>(mut bind: impl FnMut() -> Result<T, ProxyError>) -> Result<T, ProxyError> {
        let mut bound = bind();
        for _ in 0..defaults::RESTORE_BIND_RETRIES {
            if bound.is_ok() {
                break;
            }
            std::thread::sleep(defaults::RESTORE_BIND_RETRY_DELAY);
            bound = bind();
        }
        bound
    }

    /// Starts the routes of a table read at start-up. A port that cannot be bound is logged
    /// and kept in the table (the next `set_upstream` retries it).
    pub(crate) fn restore(&self, t: RouteTable) {
        for r in t.routes {
            let app = Arc::new(App::new(&r.app, r.listen, r.protocol));
            let state = app.state_for(&r.upstream);
            app.current.store(Some(state));
            let route = RouteSpec {
                listen: r.listen,
                protocol: r.protocol,
                edge: r.edge.clone(),
            };
            if route.own_port() {
                let mut slot = app.listener.lock().unwrap();
                match Self::bind_retrying(|| self.bind_listener(&r.app, r.listen)) {
                    Ok(l) => self.start_listener(&app, l, &mut slot),
                    Err(e) => {
                        error!(app = %r.app, error = %e, "restored route has no listener");
                        slot.error = Some(e.to_string());
                    }
                }
            }
            if let Err(e) = Self::bind_retrying(|| self.ensure_shared(&r.app, &r.edge)) {
                error!(app = %r.app, error = %e, "restored route: shared listener is not up");
            }
            match self.load_certs(&r.app, &r.edge) {
                Ok(certs) => {
                    self.apply_certs(&r.app, certs, &r.edge);
                    self.apply_acme(&r.app, &r.edge);
                }
                Err(e) => {
                    error!(app = %r.app, error = %e, "restored route: certificate unusable; its hosts get no TLS until fixed")
                }
            }
            app.h2c
                .store(r.edge.upstream_h2c, std::sync::atomic::Ordering::Relaxed);
            *app.edge.lock().unwrap() = r.edge;
            info!(app = %r.app, listen = r.listen, protocol = ?r.protocol,
                upstream = %r.upstream.id, addr = %r.upstream.addr, "route restored");
            self.apps.write().unwrap().insert(r.app, app);
        }
        self.rebuild_hosts();
    }

    /// Creates the app's listeners if needed and points the app at `upstream` atomically.
    /// Nothing changes when any step before the switch fails (a taken host, a port in use, a
    /// bad certificate, an unwritable table).
    pub(crate) async fn set_upstream(
        &self,
        name: &str,
        route: RouteSpec,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        validate_name("app", name)?;
        validate_name("upstream id", &upstream.id)?;
        route.edge.validate().map_err(|e| ProxyError::Invalid {
            what: "edge spec of app",
            value: name.to_owned(),
            reason: e.to_string(),
        })?;
        if route.protocol == Protocol::Tcp && !route.edge.hosts.is_empty() {
            return Err(ProxyError::Invalid {
                what: "edge spec of app",
                value: name.to_owned(),
                reason: "TCP apps are routed by port only; hosts need protocol http".into(),
            });
        }
        let RouteSpec {
            listen,
            protocol,
            ref edge,
        } = route;
        let _ops = self.ops.lock().await;
        let existing = self.apps.read().unwrap().get(name).cloned();
        let app = existing
            .clone()
            .unwrap_or_else(|| Arc::new(App::new(name, listen, protocol)));

        // 1. Hosts: refuse those another app is routed by.
        {
            let apps = self.apps.read().unwrap();
            let edges: Vec<(String, EdgeSpec)> = apps
                .values()
                .map(|a| (a.name.clone(), a.edge.lock().unwrap().clone()))
                .collect();
            hosts::check_collisions(name, edge, edges.iter().map(|(n, e)| (n.as_str(), e)))?;
        }

        // 2. Certificates: read and checked before anything changes.
        let certs = self.load_certs(name, edge)?;

        // 3. Listeners: bind the new ones before changing anything else.
        let own_port = route.own_port();
        let (needs_bind, same_port) = {
            let slot = app.listener.lock().unwrap();
            let up = slot.task.is_some();
            let changed = slot.listen != listen || slot.protocol != protocol;
            (own_port && (!up || changed), up && slot.listen == listen)
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
        self.ensure_shared(name, edge)?;

        // 4. Persist the new table; on failure nothing has changed.
        let mut t = self.snapshot();
        t.routes.retain(|r| r.app != name);
        t.routes.push(RouteEntry {
            app: name.to_owned(),
            listen,
            protocol,
            upstream: upstream.clone(),
            edge: edge.clone(),
        });
        t.routes.sort_by(|a, b| a.app.cmp(&b.app));
        self.persist(t).await?;

        // 5. Apply.
        self.apply_certs(name, certs, edge);
        self.apply_acme(name, edge);
        {
            let mut slot = app.listener.lock().unwrap();
            if let Some(l) = new_listener {
                slot.stop();
                self.start_listener(&app, l, &mut slot);
            } else if !own_port {
                slot.stop();
                slot.error = None;
            }
            slot.listen = listen;
            slot.protocol = protocol;
        }
        let edge_changed = {
            let mut e = app.edge.lock().unwrap();
            let changed = *e != *edge;
            *e = edge.clone();
            app.h2c
                .store(edge.upstream_h2c, std::sync::atomic::Ordering::Relaxed);
            changed
        };
        let state = app.state_for(&upstream);
        let previous = app.current.swap(Some(state));
        app.prune_retired();
        if existing.is_none() {
            self.apps.write().unwrap().insert(name.to_owned(), app);
        }
        if edge_changed || (existing.is_none() && !edge.hosts.is_empty()) {
            self.rebuild_hosts();
        }
        let previous = previous.map(|p| p.upstream.clone());
        info!(app = name, listen, protocol = ?protocol, hosts = ?edge.hosts, upstream = %upstream.id,
            addr = %upstream.addr, previous = ?previous.as_ref().map(|p| &p.id), "upstream set");
        Ok(previous)
    }

    /// Removes the app and closes its listener; open connections finish gracefully.
    /// Removing an unknown app succeeds (the agent may retry after a crash).
    pub(crate) async fn remove_app(&self, name: &str) -> Result<(), ProxyError> {
        validate_name("app", name)?;
        let _ops = self.ops.lock().await;
        if !self.apps.read().unwrap().contains_key(name) {
            info!(app = name, "remove: app has no route; nothing to do");
            return Ok(());
        }
        let mut t = self.snapshot();
        t.routes.retain(|r| r.app != name);
        self.persist(t).await?;
        let removed = self.apps.write().unwrap().remove(name);
        self.edge.certs.remove_app(name);
        if let Some(acme) = &self.edge.acme {
            acme.remove_app(name);
        }
        if let Some(app) = removed {
            app.close();
            if !app.edge.lock().unwrap().hosts.is_empty() {
                self.rebuild_hosts();
            }
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
            app: name.to_owned(),
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
                    edge: a.edge.lock().unwrap().clone(),
                    tls_error: self.edge.acme.as_ref().and_then(|x| x.error(&a.name)),
                }
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        out
    }

    /// (app, upstream, is current) for every tracked upstream; read by the metrics collector.
    pub(crate) fn all_upstreams(&self) -> Vec<(String, Arc<UpstreamState>, bool)> {
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
        self.edge.close();
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
        assert!(validate_name("app", "web-1").is_ok());
        assert!(validate_name("app", "Web").is_err());
        assert!(validate_name("upstream id", "web-1.abc_def").is_ok());
        let e = validate_name("upstream id", "../x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream id `../x` is invalid"), "{e}");
        assert!(validate_name("upstream id", "").is_err());
    }
}
