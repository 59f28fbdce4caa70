//! The phases of one deploy, in order: pull, start, health, switch, drain, bake. Each says
//! how it failed as a [`DeployError`]; none cleans up after itself (see `super::conclude`).

use super::error::{BakeFailure, DeployError};
use super::Cmd;
use crate::agent::Agent;
use crate::defaults;
use crate::health;
use crate::secrets::{self, Sealed};
use crate::state::DeployPhase;
use slipway_image::PulledImage;
use slipway_proto::{ContainerId, ImageRef, Release};
use slipway_proxy::{RouteSpec, Upstream};
use slipway_runtime::ContainerStatus;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One deploy in flight: the release, its sealed secrets, its image and the id of its new
/// container.
pub(super) struct Deploy<'a> {
    pub agent: &'a Agent,
    pub rel: &'a Release,
    pub sealed: &'a Sealed,
    pub image: ImageRef,
    pub id: ContainerId,
}

/// The container that served the app before this deploy, per the agent's own state: to drain,
/// to revert to during bake, and to discard at the end.
#[derive(Debug, Clone)]
pub(super) struct Old {
    pub id: ContainerId,
    /// Unknown when the runtime does not list it (then it cannot be reverted to).
    pub addr: Option<SocketAddr>,
    pub seq: Option<u64>,
    pub grace: Duration,
}

/// How a deploy that did not fail ended.
pub(super) enum Ended {
    /// Live, bake passed.
    Live,
    /// Live; a newer command cut the bake short.
    LiveEarly(Cmd),
    /// A newer command arrived before the switch: the new container never took traffic.
    Superseded(Cmd),
}

impl Deploy<'_> {
    pub fn set_phase(&self, phase: DeployPhase) {
        tracing::debug!(app = %self.rel.app, %phase, "phase");
        self.agent.update(&self.rel.app, |s| s.phase = Some(phase));
    }

    /// The image from the store, or pulled (only its missing layers).
    pub async fn pull(&self) -> Result<PulledImage, DeployError> {
        let t = Instant::now();
        let pulled = self
            .agent
            .parts
            .image(&self.image)
            .await
            .map_err(|source| DeployError::Pull {
                image: self.image.clone(),
                source,
            })?;
        tracing::debug!(app = %self.rel.app, ms = t.elapsed().as_millis() as u64, "phase pull done");
        Ok(pulled)
    }

    /// Starts the new container beside the old one (or resumes with it when a previous agent
    /// already started it); returns the address the app listens on.
    pub async fn start(&self, pulled: &PulledImage) -> Result<SocketAddr, DeployError> {
        let t = Instant::now();
        let parts = &self.agent.parts;
        // Not while a container is being made ahead for this app: wait, then start that one.
        let making = self.agent.prefetch.making(&self.rel.app);
        let _making = making.lock().await;
        let existing = parts.container(&self.id).await.ok().flatten();
        let info = match existing {
            Some(c) if c.status == ContainerStatus::Running => {
                tracing::info!(app = %self.rel.app, seq = self.rel.seq, container = %self.id, "resuming with the container already running");
                c
            }
            // Made ahead of this host's wave (`prefetch`; still being made: waited for), so
            // only its process is left to start.
            Some(c)
                if matches!(
                    c.status,
                    ContainerStatus::Created | ContainerStatus::Preparing
                ) && crate::prefetch::can_create(self.rel) =>
            {
                match parts.start_created(&self.id).await {
                    Ok(info) => {
                        tracing::info!(app = %self.rel.app, seq = self.rel.seq, container = %self.id, "started the container made ahead of the wave");
                        info
                    }
                    Err(e) => {
                        // It is torn down; make it afresh, as for any start.
                        tracing::warn!(app = %self.rel.app, container = %self.id, error = %e, "the container made ahead did not start; starting a new one");
                        self.start_new(pulled, true).await?
                    }
                }
            }
            leftover => self.start_new(pulled, leftover.is_some()).await?,
        };
        tracing::debug!(app = %self.rel.app, ms = t.elapsed().as_millis() as u64, "phase start done");
        Ok(SocketAddr::new(info.address, self.rel.spec.container_port))
    }

    /// Makes and starts the container, discarding a `leftover` of the same id first.
    async fn start_new(
        &self,
        pulled: &PulledImage,
        leftover: bool,
    ) -> Result<slipway_runtime::ContainerInfo, DeployError> {
        let parts = &self.agent.parts;
        if leftover {
            let _ = parts.discard(&self.id, Duration::ZERO).await;
        }
        let secrets = self.open_secrets()?;
        parts
            .start(&self.id, self.rel, pulled, &secrets)
            .await
            .map_err(|source| DeployError::Start {
                id: self.id.clone(),
                source,
                cleanup: Default::default(),
            })
    }

    /// Opens the release's secrets for its container (none: empty). The values live until
    /// the container is made, then only on its tmpfs.
    fn open_secrets(&self) -> Result<slipway_runtime::ContainerSecrets, secrets::SecretError> {
        let spec = &self.rel.spec;
        if spec.secrets.is_empty() && spec.secret_files.is_empty() {
            return Ok(Default::default());
        }
        let Some((host, key)) = &self.agent.secret_key else {
            return Err(secrets::SecretError::NoController {
                app: self.rel.app.to_string(),
                seq: self.rel.seq,
            });
        };
        let opened = secrets::open_release(key, host, self.rel, Some(self.sealed))?;
        tracing::info!(app = %self.rel.app, seq = self.rel.seq, secrets = ?opened, "secrets opened for the new container");
        Ok(opened.into_container(self.rel))
    }

    /// Probes the new container until healthy or the spec's deadline.
    pub async fn health(&self, addr: SocketAddr) -> Result<(), DeployError> {
        let waited =
            health::wait_healthy(&*self.agent.parts, &self.rel.spec.health, &self.id, addr)
                .await
                .map_err(|source| DeployError::Unhealthy {
                    id: self.id.clone(),
                    source,
                    cleanup: Default::default(),
                })?;
        tracing::debug!(app = %self.rel.app, ms = waited.as_millis() as u64, "phase health done");
        Ok(())
    }

    /// Points the proxy at `upstream`, retrying a few times.
    pub async fn route(&self, upstream: Upstream) -> Result<(), slipway_proxy::ProxyError> {
        let rel = self.rel;
        let route = RouteSpec::of(&rel.spec);
        let mut attempt = 0;
        loop {
            match self
                .agent
                .parts
                .set_route(&rel.app, &route, upstream.clone())
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt + 1 >= defaults::SWITCH_ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::warn!(app = %rel.app, attempt, error = %e, "proxy did not take the new upstream; retrying");
                    attempt += 1;
                    tokio::time::sleep(defaults::RETRY_DELAY).await;
                }
            }
        }
    }

    /// Moves traffic to the new container and records it as live.
    pub async fn switch(&self, addr: SocketAddr) -> Result<(), DeployError> {
        let t = Instant::now();
        let upstream = Upstream {
            id: self.id.clone(),
            addr,
        };
        self.route(upstream)
            .await
            .map_err(|source| DeployError::Switch {
                app: self.rel.app.clone(),
                id: self.id.clone(),
                source,
                cleanup: Default::default(),
            })?;
        self.agent.update(&self.rel.app, |s| {
            s.live_seq = Some(self.rel.seq);
            s.live_container = Some(self.id.clone());
            s.live_image = Some(self.image.to_string());
            s.last_error = None;
        });
        tracing::debug!(app = %self.rel.app, ms = t.elapsed().as_millis() as u64, "phase switch done");
        Ok(())
    }

    /// Waits for the old container's in-flight work; a timeout or error is logged, not fatal.
    pub async fn drain(&self, old: &ContainerId) {
        let app = &self.rel.app;
        match self
            .agent
            .parts
            .drain(app, old, self.rel.spec.swap.drain_timeout)
            .await
        {
            Ok(r) if r.drained => {
                tracing::info!(app = %app, container = %old, waited_ms = r.waited.as_millis() as u64, "old container drained")
            }
            Ok(r) => {
                tracing::warn!(app = %app, container = %old, cut = r.cut, "drain timed out; in-flight work was cut")
            }
            Err(e) => tracing::warn!(app = %app, container = %old, error = %e, "drain failed"),
        }
    }

    /// Watches the new container for the bake window: liveness, health probes and the 5xx
    /// share of its upstream in the proxy. A newer command ends the bake early (still live).
    pub async fn bake(
        &self,
        addr: SocketAddr,
        rx: &mut mpsc::Receiver<Cmd>,
    ) -> Result<Ended, DeployError> {
        let spec = &self.rel.spec;
        let fail = |why: BakeFailure| DeployError::Bake {
            why,
            reverted: Default::default(),
            cleanup: Default::default(),
        };
        let end = tokio::time::Instant::now() + spec.swap.bake;
        let base = self.upstream_counts().await.unwrap_or_default();
        let mut failing = 0;
        while tokio::time::Instant::now() < end {
            let pause = defaults::BAKE_CHECK_INTERVAL.min(end - tokio::time::Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                cmd = rx.recv() => return Ok(Ended::LiveEarly(cmd.unwrap_or(Cmd::Remove))),
            }
            health::check_alive(&*self.agent.parts, &self.id)
                .await
                .map_err(|e| fail(e.into()))?;
            let p = self.agent.parts.probe(&spec.health, &self.id, addr).await;
            failing = if p.healthy { 0 } else { failing + 1 };
            if failing >= defaults::BAKE_UNHEALTHY_THRESHOLD {
                return Err(fail(BakeFailure::Unhealthy(p.output)));
            }
            if let Some(now) = self.upstream_counts().await {
                let requests = now.0.saturating_sub(base.0);
                let errors = now.1.saturating_sub(base.1);
                if requests >= defaults::BAKE_MIN_REQUESTS
                    && errors as f64 > spec.swap.max_error_rate * requests as f64
                {
                    return Err(fail(BakeFailure::Errors {
                        errors,
                        requests,
                        max_error_rate: spec.swap.max_error_rate,
                    }));
                }
            }
        }
        Ok(Ended::Live)
    }

    /// (requests, 5xx answers) the proxy saw for the new container.
    async fn upstream_counts(&self) -> Option<(u64, u64)> {
        let stats = self.agent.parts.stats(&self.rel.app).await.ok()?;
        let u = stats.upstreams.into_iter().find(|u| u.id == self.id)?;
        Some((u.requests.total(), u.requests.server_error))
    }
}
