//! The route table in memory: one [`App`] per app with its public listener and its upstream,
//! swapped atomically (arc-swap) so the hot path never takes a lock. Changes are serialized,
//! persisted first (`table`), then applied.

mod listeners;

pub(crate) use listeners::bind_tcp;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use slipway_proto::{EdgeSpec, Protocol};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::{EdgeInfo, RouteSpec};
pub(crate) use crate::app::App;
use crate::config::EdgeConfig;
use crate::drain::Tracker;
use crate::edge::{Edge, Scheme};
use crate::error::ProxyError;
use crate::hosts::{self, HostTable};
use crate::http::HttpCtx;
use crate::pause::Mode;
use crate::table::{self, RouteEntry, RouteTable};
use crate::takeover::{Inherited, Slot};
use crate::tls;
use crate::upstream::Upstream;
use crate::workers::Workers;

/// Checks an app name from a request (the rule is [`slipway_proto::AppName`]'s).
pub(crate) fn app_name(value: &str) -> Result<slipway_proto::AppName, ProxyError> {
    Ok(value.parse()?)
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
    /// Sockets handed over by a previous proxy, used before binding.
    inherited: Arc<Inherited>,
}

impl Router {
    pub(crate) fn new(
        bind: IpAddr,
        state_file: PathBuf,
        workers: Workers,
        edge_cfg: EdgeConfig,
        log: Option<Arc<crate::access_log::AccessLog>>,
        inherited: Arc<Inherited>,
    ) -> Self {
        let conns = Arc::new(Tracker::default());
        let edge = Arc::new(Edge::new(bind, edge_cfg.clone(), inherited.clone()));
        let tls = tls::server_config(edge.certs.clone());
        Router {
            bind,
            state_file,
            apps: RwLock::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            ctx: Arc::new(HttpCtx::new(conns.clone(), workers, edge_cfg, tls, log)),
            edge,
            conns,
            inherited,
        }
    }

    /// Duplicates of every listening socket, for a new proxy taking over.
    pub(crate) fn handoff(&self) -> Vec<(Slot, OwnedFd)> {
        let mut out = self.edge.handoff();
        for a in self.apps.read().unwrap().values() {
            let l = a.listener.lock().unwrap();
            if let Some(fd) = l.fd.as_ref().and_then(|f| f.try_clone().ok()) {
                out.push((
                    Slot::App {
                        app: a.name.clone(),
                    },
                    fd,
                ));
            }
        }
        out
    }

    /// From now on HTTP/1.1 responses close their connection (a new proxy has the sockets).
    pub(crate) fn start_draining(&self) {
        self.ctx
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// The shared listeners, host table, certificates and ACME.
    pub(crate) fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// Every app by name.
    pub(crate) fn apps(&self) -> &RwLock<HashMap<String, Arc<App>>> {
        &self.apps
    }

    /// Where the shared listeners are bound.
    pub(crate) fn edge_info(&self) -> EdgeInfo {
        EdgeInfo {
            http: self.edge.bound(Scheme::Http),
            https: self.edge.bound(Scheme::Https),
        }
    }

    pub(crate) fn app(&self, name: &str) -> Result<Arc<App>, ProxyError> {
        self.apps
            .read()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownApp(name.to_owned()))
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
            let app = Arc::new(App::new(&r.app, r.listen, r.protocol));
            let state = app.state_for(&r.upstream);
            app.current.store(Some(state));
            let route = RouteSpec {
                listen: r.listen,
                protocol: r.protocol,
                edge: r.edge.clone(),
            };
            if route.own_port() {
                let bound = Self::bind_retrying(|| self.bind_listener(&r.app, r.listen)).await;
                let mut slot = app.listener.lock().unwrap();
                match bound {
                    Ok(l) => self.start_listener(&app, l, &mut slot),
                    Err(e) => {
                        error!(app = %r.app, error = %e, "restored route has no listener");
                        slot.error = Some(e.to_string());
                    }
                }
            }
            if let Err(e) = Self::bind_retrying(|| self.ensure_shared(&r.app, &r.edge)).await {
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
            app.send_proxy.store(
                r.edge.send_proxy_protocol,
                std::sync::atomic::Ordering::Relaxed,
            );
            if !r.mode.is_running() {
                warn!(app = %r.app, mode = ?r.mode, "restored route is not running");
            }
            app.gate.set(r.mode.clone());
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
        app_name(name)?;
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
            mode: app.gate.mode(),
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
                if slot.stop().is_some() {
                    crate::fdstore::remove(&Slot::App {
                        app: name.to_owned(),
                    });
                }
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
            app.send_proxy.store(
                edge.send_proxy_protocol,
                std::sync::atomic::Ordering::Relaxed,
            );
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

    /// Pauses, stops or resumes an app; persisted first, then applied.
    pub(crate) async fn set_mode(&self, name: &str, mode: Mode) -> Result<(), ProxyError> {
        let app = self.app(name)?;
        if app.listener.lock().unwrap().protocol == Protocol::Tcp {
            return Err(ProxyError::Invalid {
                what: "app",
                value: name.to_owned(),
                reason: "pause and stop apply to HTTP apps".into(),
            });
        }
        let _ops = self.ops.lock().await;
        let mut t = self.snapshot();
        if let Some(r) = t.routes.iter_mut().find(|r| r.app == name) {
            r.mode = mode.clone();
        }
        self.persist(t).await?;
        info!(app = name, mode = ?mode, "app mode set");
        app.gate.set(mode);
        Ok(())
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
        t.routes.retain(|r| r.app != name);
        self.persist(t).await?;
        let removed = self.apps.write().unwrap().remove(name);
        self.edge.certs.remove_app(name);
        if let Some(acme) = &self.edge.acme {
            acme.remove_app(name);
        }
        crate::fdstore::remove(&Slot::App {
            app: name.to_owned(),
        });
        if let Some(app) = removed {
            app.close();
            if !app.edge.lock().unwrap().hosts.is_empty() {
                self.rebuild_hosts();
            }
        }
        info!(app = name, "app removed; listener closed");
        Ok(())
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
        assert!(app_name("web-1").is_ok());
        let e = app_name("Web").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("app `Web` is invalid"), "{e}");
    }
}
