//! The parts of this host a deploy drives — image store and puller, container runtime,
//! proxy — behind one small trait, so the swap logic runs against the real parts
//! ([`RealParts`]) or, in unit tests, a scripted double (`fake::FakeParts`).

mod real;

#[cfg(test)]
pub mod fake;

pub use real::RealParts;

use crate::health::Probe;
use slipway_image::{GcReport, ImageError, PulledImage};
use slipway_proto::spec::HealthSpec;
use slipway_proto::{AppName, ContainerId, Digest, ImageRef, Release};
use slipway_proxy::{AppStats, DrainReport, ProxyError, RouteInfo, RouteSpec, Upstream};
use slipway_runtime::{AdoptReport, ContainerInfo, ContainerSecrets, RuntimeError};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Which containers adoption keeps: those of releases the agent knows.
pub type KnownContainer<'a> = &'a (dyn Fn(&ContainerInfo) -> bool + Send + Sync);

/// What a deploy needs from the host: images, containers, health probes and the proxy.
#[async_trait::async_trait]
pub trait Parts: Send + Sync {
    /// The image from the store, pulled (only missing layers) when it is not there.
    async fn image(&self, image: &ImageRef) -> Result<PulledImage, ImageError>;
    /// Drops stored images whose digest is not in `keep`.
    fn gc_images(&self, keep: &[Digest]) -> Result<GcReport, ImageError>;

    /// Creates and starts container `id` for `release` beside whatever runs, with the
    /// release's opened `secrets` (empty when it uses none).
    async fn start(
        &self,
        id: &ContainerId,
        release: &Release,
        image: &PulledImage,
        secrets: &ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError>;
    /// Like [`Parts::start`] but stops short of starting it: the container is made
    /// (`runc create`) and its process waits, running nothing of the image.
    async fn create(
        &self,
        id: &ContainerId,
        release: &Release,
        image: &PulledImage,
        secrets: &ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError>;
    /// Starts container `id` that [`Parts::create`] made.
    async fn start_created(&self, id: &ContainerId) -> Result<ContainerInfo, RuntimeError>;
    /// Logs the OCI runtime's version and warns of known escapes it lacks fixes for.
    async fn check_runtime(&self) -> Result<String, RuntimeError>;
    /// Every container of this host's runtime.
    async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError>;
    /// Container `id`, unless unknown or discarded (asks the runtime about that one only).
    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerInfo>, RuntimeError>;
    /// Whether container `id`'s process has not exited, from the runtime's own supervision
    /// (no runc call); None when the runtime cannot tell that way.
    fn process_alive(&self, _id: &ContainerId) -> Option<bool> {
        None
    }
    /// The address container `id` was given, from what the runtime recorded.
    fn address(&self, id: &ContainerId) -> Option<IpAddr>;
    /// Stops (SIGTERM, `grace`, SIGKILL) and removes container `id`; idempotent.
    async fn discard(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;
    /// Adopts the containers a previous agent left; cleans up half-made ones.
    async fn adopt(&self, known: KnownContainer<'_>) -> Result<AdoptReport, RuntimeError>;
    /// One health probe of container `id` at `addr`, bounded by the spec's timeout.
    async fn probe(&self, spec: &HealthSpec, id: &ContainerId, addr: SocketAddr) -> Probe;

    /// Points `app` at `upstream` atomically (creating its listeners, hosts and TLS from
    /// `route`); returns the previous upstream.
    async fn set_route(
        &self,
        app: &AppName,
        route: &RouteSpec,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError>;
    /// Waits for the in-flight work of a retired upstream to finish, up to `timeout`.
    async fn drain(
        &self,
        app: &AppName,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<DrainReport, ProxyError>;
    /// Per-upstream counters of `app`.
    async fn stats(&self, app: &AppName) -> Result<AppStats, ProxyError>;
    /// Unroutes `app` and closes its listener.
    async fn remove_app(&self, app: &str) -> Result<(), ProxyError>;
    /// Every route the proxy runs.
    async fn routes(&self) -> Result<Vec<RouteInfo>, ProxyError>;
}
