//! The agent's Prometheus metrics, served at `GET /metrics` on `metrics_addr` (agent.toml,
//! loopback by default): deploys by outcome, phase durations, the image pipeline's pull bytes
//! and layers (`slipway_image_*`), containers running, stale releases and the time of the
//! last reconcile. Gauges read from the host (containers, stale) are refreshed per scrape.

use crate::agent::Agent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use slipway_runtime::ContainerStatus;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

pub struct AgentMetrics {
    pub registry: Registry,
    pub image: Arc<slipway_image::ImageMetrics>,
    pub deploys: Family<OutcomeLabel, Counter>,
    pub phases: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    pub containers_running: Gauge,
    pub stale_releases: Gauge,
    pub last_reconcile: Gauge<f64, AtomicU64>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let image = Arc::new(slipway_image::ImageMetrics::register(&mut registry));
        let m = AgentMetrics {
            registry: Registry::default(),
            image,
            deploys: Family::default(),
            phases: Family::new_with_constructor(phase_histogram),
            containers_running: Gauge::default(),
            stale_releases: Gauge::default(),
            last_reconcile: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("slipway_agent");
        r.register(
            "deploys",
            "Deploys ended, by outcome (live, failed, rolled-back, superseded)",
            m.deploys.clone(),
        );
        r.register(
            "phase_duration_seconds",
            "Time each deploy phase took (pull, start, health, switch, drain, bake)",
            m.phases.clone(),
        );
        r.register(
            "containers_running",
            "Containers of this host's runtime that are running",
            m.containers_running.clone(),
        );
        r.register(
            "stale_releases",
            "Apps serving a release past its signature's expiry",
            m.stale_releases.clone(),
        );
        r.register(
            "last_reconcile_timestamp_seconds",
            "Unix time the desired state was last applied",
            m.last_reconcile.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    pub fn deploy(&self, outcome: impl std::fmt::Display) {
        self.deploys
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn phase(&self, phase: &'static str, took: Duration) {
        self.phases
            .get_or_create(&PhaseLabel { phase })
            .observe(took.as_secs_f64());
    }

    pub fn reconciled(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_reconcile.set(now.as_secs_f64());
    }
}

/// The text for one scrape, after reading containers and stale apps.
pub async fn render(agent: &Agent) -> String {
    let m = &agent.metrics;
    match agent.parts.containers().await {
        Ok(list) => {
            let n = list
                .iter()
                .filter(|c| c.status == ContainerStatus::Running)
                .count();
            m.containers_running.set(n as i64);
        }
        Err(e) => tracing::debug!(error = %e, "metrics: cannot list containers"),
    }
    let stale = crate::expiry::stale_apps(agent, SystemTime::now()).len();
    m.stale_releases.set(stale as i64);
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    out
}

/// Binds `addr`; refuses with the address named when it cannot.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))
}

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) until the task is dropped.
pub async fn serve(agent: Arc<Agent>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = conn.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                std::io::Result::Ok(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = String::from_utf8_lossy(&buf);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next(), parts.next());
            let (status, ctype, body) = match (method, path) {
                (Some("GET"), Some("/metrics")) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    render(&agent).await,
                ),
                (_, Some(p)) => (
                    "404 Not Found",
                    "text/plain",
                    format!("{p}: only GET /metrics is served here\n"),
                ),
                _ => ("400 Bad Request", "text/plain", "bad request\n".into()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = AgentMetrics::default();
        m.deploy(crate::state::DeployPhase::Live);
        m.phase("pull", Duration::from_millis(20));
        m.reconciled();
        m.image.pulled_bytes.inc_by(10);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        for name in [
            "slipway_agent_deploys_total{outcome=\"live\"} 1",
            "slipway_agent_phase_duration_seconds_count{phase=\"pull\"} 1",
            "slipway_agent_containers_running ",
            "slipway_agent_stale_releases ",
            "slipway_agent_last_reconcile_timestamp_seconds ",
            "slipway_image_pulled_bytes_total 10",
        ] {
            assert!(out.contains(name), "{name} missing from:\n{out}");
        }
    }
}
