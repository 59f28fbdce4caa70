//! The real parts: the image store and puller, runc through `slipway-runtime`, and the proxy
//! over its control socket.

use super::{KnownContainer, Parts};
use crate::health::{self, Probe, Target};
use slipway_image::{GcReport, ImageError, PulledImage, Puller};
use slipway_proto::spec::HealthSpec;
use slipway_proto::{AppName, ContainerId, Digest, ImageRef, Release};
use slipway_proxy::{
    AppStats, DrainReport, ProxyClient, ProxyError, RouteInfo, RouteSpec, Upstream,
};
use slipway_runtime::{
    AdoptReport, ContainerInfo, ContainerSecrets, ContainerSpec, Runtime, RuntimeError,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This host's image puller (which owns the store), runtime and proxy client.
pub struct RealParts {
    pub puller: Puller,
    pub runtime: Runtime,
    pub proxy: ProxyClient,
    /// Images being pulled, each behind its own lock.
    pub pulling: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

#[async_trait::async_trait]
impl Parts for RealParts {
    async fn image(&self, image: &ImageRef) -> Result<PulledImage, ImageError> {
        if let Ok(Some(cached)) = self.puller.store().load(image) {
            return Ok(cached);
        }
        // One pull per image at a time: a deploy that finds a pull ahead of its wave still
        // running waits for it, then reads the store.
        let lock = self
            .pulling
            .lock()
            .expect("pulling lock")
            .entry(image.digest.clone())
            .or_default()
            .clone();
        let result = {
            let _one = lock.lock().await;
            match self.puller.store().load(image) {
                Ok(Some(cached)) => Ok(cached),
                _ => self.puller.pull(image).await,
            }
        };
        let mut pulling = self.pulling.lock().expect("pulling lock");
        if Arc::strong_count(&lock) <= 2 {
            pulling.remove(&image.digest);
        }
        result
    }

    fn gc_images(&self, keep: &[Digest]) -> Result<GcReport, ImageError> {
        self.puller.store().gc(keep)
    }

    async fn start(
        &self,
        id: &ContainerId,
        release: &Release,
        image: &PulledImage,
        secrets: &ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError> {
        self.runtime.start(spec(id, release, image, secrets)).await
    }

    async fn create(
        &self,
        id: &ContainerId,
        release: &Release,
        image: &PulledImage,
        secrets: &ContainerSecrets,
    ) -> Result<ContainerInfo, RuntimeError> {
        self.runtime.create(spec(id, release, image, secrets)).await
    }

    async fn start_created(&self, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        self.runtime.start_created(id).await
    }

    async fn check_runtime(&self) -> Result<String, RuntimeError> {
        self.runtime.check_runc().await
    }

    async fn containers(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.runtime.list().await
    }

    async fn container(&self, id: &ContainerId) -> Result<Option<ContainerInfo>, RuntimeError> {
        self.runtime.get(id).await
    }

    fn process_alive(&self, id: &ContainerId) -> Option<bool> {
        self.runtime.process_alive(id)
    }

    fn address(&self, id: &ContainerId) -> Option<IpAddr> {
        self.runtime.address(id).ok().flatten()
    }

    async fn discard(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        self.runtime.discard(id, grace).await
    }

    async fn adopt(&self, known: KnownContainer<'_>) -> Result<AdoptReport, RuntimeError> {
        self.runtime.adopt(known).await
    }

    async fn probe(&self, spec: &HealthSpec, id: &ContainerId, addr: SocketAddr) -> Probe {
        let target = Target {
            container_id: id,
            addr,
            runtime: &self.runtime,
        };
        health::probe(spec, &target).await
    }

    async fn set_route(
        &self,
        app: &AppName,
        route: &RouteSpec,
        upstream: Upstream,
    ) -> Result<Option<Upstream>, ProxyError> {
        self.proxy.set_route(app, route, upstream).await
    }

    async fn drain(
        &self,
        app: &AppName,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<DrainReport, ProxyError> {
        self.proxy.drain(app, id, timeout).await
    }

    async fn stats(&self, app: &AppName) -> Result<AppStats, ProxyError> {
        self.proxy.stats(app).await
    }

    async fn remove_app(&self, app: &str) -> Result<(), ProxyError> {
        self.proxy.remove_app(app).await
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>, ProxyError> {
        self.proxy.routes().await
    }
}

/// What the runtime makes for `release`: its image's config and layers, and its secrets.
fn spec<'a>(
    id: &ContainerId,
    release: &'a Release,
    image: &'a PulledImage,
    secrets: &'a ContainerSecrets,
) -> ContainerSpec<'a> {
    ContainerSpec {
        id: id.clone(),
        release,
        image_config: &image.config,
        layer_dirs: &image.layer_dirs,
        secrets: Some(secrets),
    }
}
