//! What the proxy runs now, for the control API and metrics: routes, per-upstream stats,
//! and the verified drain of a retired upstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::api::{AppStats, RouteInfo, UpstreamStats};
use crate::defaults;
use crate::drain::DrainReport;
use crate::error::ProxyError;
use crate::router::Router;
use crate::upstream::UpstreamState;

impl Router {
    /// Waits for zero in-flight work on a retired upstream; cuts what is left at `timeout`.
    pub(crate) async fn drain(
        &self,
        name: &str,
        id: &str,
        timeout: Duration,
        long_lived_grace: Duration,
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
        // Websockets and SSE never end on their own: cut them once their grace is over.
        let long = async {
            if long_lived_grace >= timeout {
                return std::future::pending().await; // the timeout cuts everything anyway
            }
            tokio::time::sleep(long_lived_grace).await;
            state.cut_long_lived()
        };
        tokio::pin!(long);
        let idle = state.tracker().wait_idle(start + timeout);
        tokio::pin!(idle);
        let mut long_cut = None;
        let idle = loop {
            tokio::select! {
                done = &mut idle => break done,
                n = &mut long, if long_cut.is_none() => {
                    if n > 0 {
                        info!(app = name, upstream = id, cut = n, ?long_lived_grace,
                            "drain: websockets/SSE streams cut after their grace");
                    }
                    long_cut = Some(n);
                }
            }
        };
        let long_cut = long_cut.unwrap_or(0);
        if idle {
            let waited = start.elapsed();
            info!(
                app = name,
                upstream = id,
                in_flight_at_start = in_flight,
                ?waited,
                "drained"
            );
            return Ok(DrainReport {
                drained: long_cut == 0,
                cut: long_cut,
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
        // Streams cut at the grace and not yet torn down are counted once.
        let already = if long_cut > 0 {
            state.long_lived_count()
        } else {
            0
        };
        let cut = state.cut_all().saturating_sub(already) + long_cut;
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
        let apps = self.apps().read().unwrap();
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
                    tls_error: self.edge().acme.as_ref().and_then(|x| x.error(&a.name)),
                    mode: a.gate.mode(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        out
    }

    /// (app, upstream, is current) for every tracked upstream; read by the metrics collector.
    pub(crate) fn all_upstreams(&self) -> Vec<(String, Arc<UpstreamState>, bool)> {
        let apps = self.apps().read().unwrap();
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
}
