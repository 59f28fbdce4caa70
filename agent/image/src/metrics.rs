//! Prometheus metrics of the image pipeline (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `fetched` or `cached`
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Counters and histograms for pulls; register them once per process.
#[derive(Debug, Clone)]
pub struct ImageMetrics {
    pub pulled_bytes: Counter,
    pub layers: Family<ResultLabel, Counter>,
    pub pull_seconds: Histogram,
    pub unpack_seconds: Histogram,
    pub verification_failures: Family<ReasonLabel, Counter>,
}

impl Default for ImageMetrics {
    fn default() -> Self {
        ImageMetrics {
            pulled_bytes: Counter::default(),
            layers: Family::default(),
            pull_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            unpack_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            verification_failures: Family::default(),
        }
    }
}

impl ImageMetrics {
    /// New metrics, registered under `slipway_image_*` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ImageMetrics::default();
        let r = registry.sub_registry_with_prefix("slipway_image");
        r.register(
            "pulled_bytes",
            "Blob bytes downloaded from registries",
            m.pulled_bytes.clone(),
        );
        r.register(
            "layers",
            "Layers needed by pulls, by result (fetched or cached)",
            m.layers.clone(),
        );
        r.register(
            "pull_duration_seconds",
            "Duration of whole pulls",
            m.pull_seconds.clone(),
        );
        r.register(
            "unpack_duration_seconds",
            "Duration of unpacking one layer",
            m.unpack_seconds.clone(),
        );
        r.register(
            "verification_failures",
            "Pulls refused, by reason (digest_mismatch, rejected_document, hostile_layer, ...)",
            m.verification_failures.clone(),
        );
        m
    }

    pub(crate) fn layer(&self, fetched: bool) {
        let result = if fetched { "fetched" } else { "cached" };
        self.layers.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn failure(&self, reason: &'static str) {
        self.verification_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_prefix() {
        let mut reg = Registry::default();
        let m = ImageMetrics::register(&mut reg);
        m.pulled_bytes.inc_by(42);
        m.layer(true);
        m.layer(false);
        m.failure("digest_mismatch");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("slipway_image_pulled_bytes_total 42"), "{out}");
        assert!(
            out.contains("slipway_image_layers_total{result=\"fetched\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("slipway_image_verification_failures_total{reason=\"digest_mismatch\"} 1"),
            "{out}"
        );
        assert!(out.contains("slipway_image_pull_duration_seconds"), "{out}");
    }
}
