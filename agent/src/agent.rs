//! The agent's shared context: configuration, trust, state file, and the parts of the host it
//! drives (image store, runtime, proxy). One per process, shared by the per-app tasks.

use crate::config::AgentConfig;
use crate::parts::{Parts, RealParts};
use crate::state::{AppState, StateFile};
use slipway_proto::TrustFile;
use std::sync::Mutex;

pub struct Agent {
    pub cfg: AgentConfig,
    pub trust: TrustFile,
    pub state: Mutex<StateFile>,
    pub parts: Box<dyn Parts>,
    /// Served at `/metrics` on `metrics_addr`.
    pub metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
    /// Signalled by every [`Agent::update`]: the reporter posts a changed phase at once.
    pub changed: tokio::sync::Notify,
    /// This host's id and X25519 key, to open the secrets sealed to it (controller source
    /// only: a release directory delivers no secrets).
    pub secret_key: Option<(String, slipway_proto::seal::HostSecretKey)>,
    /// Images of later waves' releases, pulled ahead.
    pub prefetch: crate::prefetch::Prefetch,
}

impl Agent {
    /// Reads the trust and state files and opens the real parts (the image store once).
    pub fn open(cfg: AgentConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let trust_text = std::fs::read_to_string(&cfg.trust)
            .with_context(|| format!("reading trust file {}", cfg.trust.display()))?;
        let trust = TrustFile::from_toml(&trust_text)
            .with_context(|| format!("trust file {}", cfg.trust.display()))?;
        let state = StateFile::load(&cfg.state_dir)?;
        let store = slipway_image::Store::open(&cfg.images_dir())
            .with_context(|| format!("image store {}", cfg.images_dir().display()))?;
        let metrics = std::sync::Arc::new(crate::metrics::AgentMetrics::default());
        let puller = slipway_image::Puller::new(store, cfg.registry.clone())
            .with_metrics(metrics.image.clone());
        let runtime =
            slipway_runtime::Runtime::new(cfg.runtime_config()).context("container runtime")?;
        let proxy = slipway_proxy::ProxyClient::new(cfg.proxy_socket.clone());
        let parts = RealParts {
            puller,
            runtime,
            proxy,
            pulling: Default::default(),
        };
        let secret_key = match &cfg.controller {
            Some(c) => Some((
                c.host_id.clone(),
                crate::host_key::load_or_create(&c.cache_dir)?,
            )),
            None => None,
        };
        let mut agent = Self::new(cfg, trust, state, Box::new(parts));
        agent.metrics = metrics;
        agent.secret_key = secret_key;
        Ok(agent)
    }

    /// An agent over the given parts (the real ones, or a test double).
    pub fn new(
        cfg: AgentConfig,
        trust: TrustFile,
        state: StateFile,
        parts: Box<dyn Parts>,
    ) -> Self {
        Self {
            cfg,
            trust,
            state: Mutex::new(state),
            parts,
            metrics: Default::default(),
            changed: tokio::sync::Notify::new(),
            secret_key: None,
            prefetch: Default::default(),
        }
    }

    /// Reads an app's state (a copy).
    pub fn app_state(&self, app: &str) -> AppState {
        self.state
            .lock()
            .expect("state lock")
            .apps
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// Changes an app's state and persists it at once. A failed write is logged loudly: the
    /// in-memory state stays authoritative until the next successful write.
    pub fn update<R>(&self, app: &str, f: impl FnOnce(&mut AppState) -> R) -> R {
        let mut st = self.state.lock().expect("state lock");
        let r = f(st.app(app));
        if let Err(e) = st.save() {
            tracing::error!(app, error = %e, "could not persist agent state");
        }
        drop(st);
        self.changed.notify_one();
        r
    }
}
