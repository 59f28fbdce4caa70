//! Per-upstream counters (lock-free atomics on the hot path), their JSON summary for the agent
//! and their Prometheus exposition (prometheus-client collector, read at scrape time).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde::{Deserialize, Serialize};

use crate::defaults::LATENCY_BUCKETS;
use crate::router::Router;

/// Latency histogram with fixed buckets ([`LATENCY_BUCKETS`]) plus +Inf; atomics only.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
}

const BUCKET_MICROS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1_000_000.0) as u64;
        i += 1;
    }
    out
};

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let idx = BUCKET_MICROS
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKET_MICROS.len());
        self.buckets[idx].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(us, Relaxed);
        self.max_micros.fetch_max(us, Relaxed);
    }

    fn counts(&self) -> [u64; LATENCY_BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }

    /// Quantile estimate in ms, interpolated linearly inside the bucket that holds it.
    fn quantile_ms(counts: &[u64], max_ms: f64, q: f64) -> f64 {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 && (seen + c) as f64 >= rank {
                let lo = if i == 0 {
                    0.0
                } else {
                    LATENCY_BUCKETS[i - 1] * 1000.0
                };
                let hi = LATENCY_BUCKETS
                    .get(i)
                    .map_or(max_ms, |b| b * 1000.0)
                    .min(max_ms);
                let frac = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
                return lo + (hi.max(lo) - lo) * frac;
            }
            seen += c;
        }
        max_ms
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts = self.counts();
        let count = self.count.load(Relaxed);
        let sum_ms = self.sum_micros.load(Relaxed) as f64 / 1000.0;
        let max_ms = self.max_micros.load(Relaxed) as f64 / 1000.0;
        LatencySummary {
            count,
            mean_ms: if count == 0 {
                0.0
            } else {
                sum_ms / count as f64
            },
            p50_ms: Self::quantile_ms(&counts, max_ms, 0.50),
            p90_ms: Self::quantile_ms(&counts, max_ms, 0.90),
            p99_ms: Self::quantile_ms(&counts, max_ms, 0.99),
            max_ms,
        }
    }
}

/// Latency of completed requests (headers received to last body byte sent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Responses sent for an upstream, by status class. Cumulative: diff two readings for a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirection: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

impl StatusCounts {
    pub fn total(&self) -> u64 {
        self.informational + self.success + self.redirection + self.client_error + self.server_error
    }

    /// Counts since an earlier reading of the same upstream.
    pub fn since(&self, earlier: &StatusCounts) -> StatusCounts {
        StatusCounts {
            informational: self.informational.saturating_sub(earlier.informational),
            success: self.success.saturating_sub(earlier.success),
            redirection: self.redirection.saturating_sub(earlier.redirection),
            client_error: self.client_error.saturating_sub(earlier.client_error),
            server_error: self.server_error.saturating_sub(earlier.server_error),
        }
    }

    /// Share of 5xx among all responses, or None when there were none.
    pub fn server_error_rate(&self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| self.server_error as f64 / total as f64)
    }
}

/// Live counters of one upstream.
#[derive(Debug, Default)]
pub(crate) struct UpstreamMetrics {
    pub(crate) requests: [AtomicU64; 5],
    pub(crate) connections: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) cut: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) latency: Histogram,
}

impl UpstreamMetrics {
    pub(crate) fn status(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[class].fetch_add(1, Relaxed);
    }

    pub(crate) fn status_counts(&self) -> StatusCounts {
        let r = |i: usize| self.requests[i].load(Relaxed);
        StatusCounts {
            informational: r(0),
            success: r(1),
            redirection: r(2),
            client_error: r(3),
            server_error: r(4),
        }
    }
}

/// Exposes every app's upstreams at scrape time; upstreams that were forgotten disappear.
#[derive(Debug)]
pub(crate) struct ProxyCollector(pub(crate) Arc<Router>);

/// Picks one counter out of an upstream's metrics.
type CounterOf = fn(&UpstreamMetrics) -> &AtomicU64;

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Collector for ProxyCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ups = self.0.all_upstreams();
        let labels = |app: &str, id: &str| [("app", app.to_owned()), ("upstream", id.to_owned())];

        let mut e = enc.encode_descriptor(
            "slipway_proxy_requests",
            "Responses sent, by upstream and status class",
            None,
            MetricType::Counter,
        )?;
        for (app, u, _) in &ups {
            let counts = u.metrics.status_counts();
            let vals = [
                counts.informational,
                counts.success,
                counts.redirection,
                counts.client_error,
                counts.server_error,
            ];
            for (class, v) in CLASSES.iter().zip(vals) {
                let l = [
                    ("app", app.as_str()),
                    ("upstream", u.upstream.id.as_str()),
                    ("class", class),
                ];
                ConstCounter::new(v).encode(e.encode_family(&l)?)?;
            }
        }

        let counters: [(&str, &str, CounterOf); 5] = [
            (
                "slipway_proxy_connections",
                "Client connections accepted (TCP apps)",
                |m| &m.connections,
            ),
            (
                "slipway_proxy_connect_errors",
                "Failed connects to the upstream",
                |m| &m.connect_errors,
            ),
            (
                "slipway_proxy_cut",
                "Requests/connections cut at a drain timeout",
                |m| &m.cut,
            ),
            (
                "slipway_proxy_received_bytes",
                "Bytes received from clients",
                |m| &m.bytes_in,
            ),
            ("slipway_proxy_sent_bytes", "Bytes sent to clients", |m| {
                &m.bytes_out
            }),
        ];
        for (name, help, get) in counters {
            let mut e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (app, u, _) in &ups {
                let l = labels(app, &u.upstream.id);
                ConstCounter::new(get(&u.metrics).load(Relaxed)).encode(e.encode_family(&l)?)?;
            }
        }

        let mut e = enc.encode_descriptor(
            "slipway_proxy_in_flight",
            "Requests/connections in flight",
            None,
            MetricType::Gauge,
        )?;
        for (app, u, _) in &ups {
            let l = labels(app, &u.upstream.id);
            ConstGauge::new(u.in_flight() as i64).encode(e.encode_family(&l)?)?;
        }

        let mut e = enc.encode_descriptor(
            "slipway_proxy_upstream_current",
            "1 for the upstream that takes the app's new traffic",
            None,
            MetricType::Gauge,
        )?;
        for (app, u, current) in &ups {
            let l = labels(app, &u.upstream.id);
            ConstGauge::new(i64::from(*current)).encode(e.encode_family(&l)?)?;
        }

        let mut e = enc.encode_descriptor(
            "slipway_proxy_request_duration_seconds",
            "HTTP request latency through the proxy",
            None,
            MetricType::Histogram,
        )?;
        for (app, u, _) in &ups {
            let l = labels(app, &u.upstream.id);
            let h = &u.metrics.latency;
            let counts = h.counts();
            let mut cumulative = 0;
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(counts)
                .map(|(b, c)| {
                    cumulative += c;
                    (b, cumulative)
                })
                .collect();
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            e.encode_family(&l)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, cumulative, &buckets, None,
                )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_summary_tracks_quantiles() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.observe(Duration::from_micros(800));
        }
        h.observe(Duration::from_millis(400));
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!(s.p50_ms <= 1.0, "{s:?}");
        assert!(s.p99_ms <= 1.0, "{s:?}");
        assert!((s.max_ms - 400.0).abs() < 0.01);
        assert!(s.mean_ms > 4.0 && s.mean_ms < 5.0, "{s:?}");
    }

    #[test]
    fn status_counts_window_and_rate() {
        let m = UpstreamMetrics::default();
        m.status(200);
        m.status(502);
        let before = m.status_counts();
        for _ in 0..3 {
            m.status(200);
        }
        m.status(503);
        m.status(101);
        let window = m.status_counts().since(&before);
        assert_eq!(window.total(), 5);
        assert_eq!(window.server_error, 1);
        assert_eq!(window.informational, 1);
        assert_eq!(window.server_error_rate(), Some(0.2));
        assert_eq!(StatusCounts::default().server_error_rate(), None);
    }
}
