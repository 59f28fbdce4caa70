//! A recording test double of the host's parts: containers and routes live in memory, and a
//! test scripts which containers fail to start, crash, or turn unhealthy.

use super::{KnownContainer, Parts};
use crate::health::Probe;
use slipway_image::{GcReport, ImageError, PullReport, PulledImage};
use slipway_proto::spec::HealthSpec;
use slipway_proto::{AppName, ContainerId, Digest, ImageRef, Release};
use slipway_proxy::{AppStats, DrainReport, ProxyError, RouteInfo, RouteSpec, Upstream};
use slipway_runtime::{AdoptReport, ContainerInfo, ContainerStatus, RuncError, RuntimeError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A release of `app` (seq `seq`, image digest `digest`) issued now for an hour, with
/// `extra` appended to its spec's TOML; unsigned (tests sign it when they need to).
pub fn release(app: &str, seq: u64, digest: &str, extra: &str) -> Release {
    let spec = slipway_proto::AppSpec::from_toml(&format!(
        "name = \"{app}\"\nimage = \"127.0.0.1:5000/{app}\"\nlisten = 8080\ncontainer_port = 80\n{extra}"
    ))
    .unwrap();
    let now = SystemTime::now();
    Release {
        app: app.parse().unwrap(),
        seq,
        image: format!("127.0.0.1:5000/{app}@{digest}"),
        spec,
        issued_at: now,
        expires: now + Duration::from_secs(3600),
        key_set_version: 1,
        annotations: Default::default(),
    }
}

/// An agent over fresh fake parts, its state in `dir`, trusting `key` alone.
pub fn agent(
    dir: &std::path::Path,
    key: &slipway_proto::SigningKey,
) -> (crate::agent::Agent, FakeParts) {
    let cfg: crate::config::AgentConfig =
        toml::from_str(&format!("state_dir = {:?}", dir.display().to_string())).unwrap();
    let trust = slipway_proto::TrustFile::new(vec![key.public_key()], 1, 1).unwrap();
    let state = crate::state::StateFile::load(dir).unwrap();
    let fake = FakeParts::default();
    let agent = crate::agent::Agent::new(cfg, trust, state, Box::new(fake.clone()));
    (agent, fake)
}

/// What the fake host holds and what it was asked to do.
#[derive(Default)]
pub struct World {
    pub containers: BTreeMap<ContainerId, ContainerInfo>,
    /// The upstream each app is routed to.
    pub routes: BTreeMap<AppName, Upstream>,
    /// Images pulled (not found in the store).
    pub pulled: Vec<ImageRef>,
    pub stored: HashSet<Digest>,
    /// Containers discarded, in order.
    pub discarded: Vec<ContainerId>,
    /// Containers made by `create` (ahead of their start), in order.
    pub created: Vec<ContainerId>,
    /// Containers whose start fails (runc refuses them).
    pub fail_start: HashSet<ContainerId>,
    /// Containers whose process exits as soon as it starts.
    pub crash_on_start: HashSet<ContainerId>,
    /// The secret env (`VAR=value`) and files (`path=value`) each container started with.
    pub secrets: BTreeMap<ContainerId, Vec<String>>,
    /// Containers that answer this many probes healthily, then only unhealthily.
    pub healthy_probes: HashMap<ContainerId, usize>,
    probes: HashMap<ContainerId, usize>,
    pub next_ip: u8,
}

/// The fake parts; tests keep a clone to read and script them through [`FakeParts::world`].
#[derive(Default, Clone)]
pub struct FakeParts {
    world: Arc<Mutex<World>>,
}

impl FakeParts {
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// A container of `release`, running (`run`) or created only.
    fn make(
        &self,
        id: &ContainerId,
        release: &Release,
        secrets: &slipway_runtime::ContainerSecrets,
        run: bool,
    ) -> Result<ContainerInfo, RuntimeError> {
        let mut w = self.world();
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let seen = secrets
            .env
            .iter()
            .map(|e| format!("{}={}", e.var, text(&e.value)))
            .chain(
                secrets
                    .files
                    .iter()
                    .map(|f| format!("{}={}", f.path.display(), text(&f.value))),
            )
            .collect();
        w.secrets.insert(id.clone(), seen);
        if w.fail_start.contains(id) {
            return Err(RuntimeError::Runc(RuncError::Failed {
                args: format!("create {id}"),
                code: 1,
                message: "container init failed".into(),
            }));
        }
        w.next_ip += 1;
        let crashed = w.crash_on_start.contains(id);
        let info = ContainerInfo {
            id: id.clone(),
            app: release.app.clone(),
            seq: release.seq,
            image: release.image.clone(),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, w.next_ip)),
            pid: Some(100 + w.next_ip as i32),
            status: match (crashed, run) {
                (true, _) => ContainerStatus::Stopped,
                (false, true) => ContainerStatus::Running,
                (false, false) => ContainerStatus::Created,
            },
            started_at: SystemTime::now(),
            exit_code: crashed.then_some(1),
        };
        w.containers.insert(id.clone(), info.clone());
        Ok(info)
    }
}

#[async_trait::async_trait]
impl Parts for FakeParts {
    async fn image(&self, image: &ImageRef) -> Result<PulledImage, ImageError> {
        let mut w = self.world();
        if w.stored.insert(image.digest.clone()) {
            w.pulled.push(image.clone());
        }
        Ok(PulledImage {
            image: image.clone(),
            manifest_digest: image.digest.clone(),
            config: Default::default(),
            layer_dirs: Vec::new(),
            report: PullReport::default(),
        })
    }

    fn gc_images(&self, keep: &[Digest]) -> Result<GcReport, ImageError> {
        self.world().stored.retain(|d| keep.contains(d));
        Ok(GcReport::default())
    }

    async fn start(
        &self,
        id: &ContainerId,
        release: &Release,
        _image: &PulledImage,
        secrets: &slipway_runtime::ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError> {
        self.make(id, release, secrets, true)
    }

    async fn create(
        &self,
        id: &ContainerId,
        release: &Release,
        _image: &PulledImage,
        secrets: &slipway_runtime::ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError> {
        let info = self.make(id, release, secrets, false)?;
        self.world().created.push(id.clone());
        Ok(info)
    }

    async fn start_created(&self, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let mut w = self.world();
        match w.containers.get_mut(id) {
            Some(c) if c.status == ContainerStatus::Created => {
                c.status = ContainerStatus::Running;
                Ok(c.clone())
            }
            other => Err(RuntimeError::NotCreated {
                id: id.to_string(),
                phase: format!("{:?}", other.map(|c| c.status)),
            }),
        }
    }

    async fn check_runtime(&self) -> Result<String, RuntimeError> {
        Ok("fake runtime".into())
    }

    async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self.world().containers.values().cloned().collect())
    }

    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerInfo>, RuntimeError> {
        Ok(self.world().containers.get(id).cloned())
    }

    fn address(&self, id: &ContainerId) -> Option<IpAddr> {
        self.world().containers.get(id).map(|c| c.address)
    }

    async fn discard(&self, id: &ContainerId, _grace: Duration) -> Result<(), RuntimeError> {
        let mut w = self.world();
        if w.containers.remove(id).is_some() {
            w.discarded.push(id.clone());
        }
        Ok(())
    }

    async fn adopt(&self, _known: KnownContainer<'_>) -> Result<AdoptReport, RuntimeError> {
        Ok(AdoptReport::default())
    }

    async fn probe(&self, _spec: &HealthSpec, id: &ContainerId, addr: SocketAddr) -> Probe {
        let mut w = self.world();
        let n = w.probes.entry(id.clone()).or_default();
        *n += 1;
        let n = *n;
        let running = w
            .containers
            .get(id)
            .is_some_and(|c| c.status == ContainerStatus::Running);
        let healthy = running && w.healthy_probes.get(id).is_none_or(|ok| n <= *ok);
        Probe {
            healthy,
            output: format!(
                "GET http://{addr}/: {}",
                if healthy { "200 OK" } else { "503" }
            ),
        }
    }

    async fn set_route(
        &self,
        app: &AppName,
        _route: &RouteSpec,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        Ok(self.world().routes.insert(app.clone(), upstream))
    }

    async fn drain(
        &self,
        _app: &AppName,
        _id: &ContainerId,
        _timeout: Duration,
    ) -> Result<DrainReport, ProxyError> {
        Ok(DrainReport {
            drained: true,
            cut: 0,
            waited: Duration::ZERO,
        })
    }

    async fn stats(&self, app: &AppName) -> Result<AppStats, ProxyError> {
        Err(ProxyError::UnknownApp(app.to_string()))
    }

    async fn remove_app(&self, app: &str) -> Result<(), ProxyError> {
        self.world().routes.remove(app);
        Ok(())
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>, ProxyError> {
        Ok(Vec::new())
    }
}
