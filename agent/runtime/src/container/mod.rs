//! One container's life: create and start it, list it, exec in it, discard it.

mod created;
mod supervise;

use crate::bundle::{self, BundleInput, RootfsEtc};
use crate::error::{io, RuntimeError};
use crate::network::{netns_add, netns_name, netns_path};
use crate::rootfs::{self, RootfsPaths};
use crate::runc::{ExecOutput, RuncState};
use crate::state::{write_atomic, Durability, Record, RecordPhase};
use crate::{logs, Runtime, Shared};
use slipway_proto::{AppName, ContainerId};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) const CONFIG: &str = "config.json";
pub(crate) const PID_FILE: &str = "container.pid";
pub(crate) const RUNC_LOG: &str = "runc.log";

/// What to run: one release, its image config and its unpacked layers.
pub struct ContainerSpec<'a> {
    /// `<app>-<seq>-<short digest>`, as [`slipway_proto::Release::container_id`] makes it.
    pub id: ContainerId,
    pub release: &'a slipway_proto::Release,
    pub image_config: &'a oci_spec::image::ImageConfiguration,
    /// Unpacked layer dirs, base layer first.
    pub layer_dirs: &'a [PathBuf],
    /// The release's opened secrets, if it uses any: they go onto the container's own tmpfs
    /// (see [`crate::secrets`]), never into the state dir.
    pub secrets: Option<&'a crate::secrets::ContainerSecrets>,
}

/// Where a container is in its life, as runc and our record see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// Being set up (or left half-made by a crash; [`Runtime::adopt`] cleans it).
    Preparing,
    /// Created by runc, process not started.
    Created,
    Running,
    Paused,
    /// The process has exited.
    Stopped,
    /// Being discarded.
    Discarding,
}

/// A container as [`Runtime::list`] and [`Runtime::start`] report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContainerInfo {
    pub id: ContainerId,
    pub app: AppName,
    pub seq: u64,
    /// `repository@sha256:...`
    pub image: String,
    /// Address on the bridge; unspecified (`0.0.0.0`) until CNI has given one.
    pub address: IpAddr,
    pub pid: Option<i32>,
    pub status: ContainerStatus,
    /// When the process was started (creation time while not started).
    pub started_at: SystemTime,
    /// Exit code (128+signal) once stopped, when the agent saw it exit.
    pub exit_code: Option<i32>,
}

/// Points of [`Runtime::start`] where a test can simulate an agent crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the netns is wired by CNI, before the rootfs and `runc create`.
    AfterNetwork,
    /// After `runc create`, before `runc start`.
    AfterCreate,
    /// After `runc start`, before the record says so.
    AfterStart,
}

/// Checks that `id` follows the container id rule (it names a dir, a netns and a cgroup).
pub(crate) fn check_id(id: &str) -> Result<ContainerId, RuntimeError> {
    Ok(id.parse()?)
}

impl Shared {
    pub(crate) fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

impl Record {
    pub(crate) fn info(&self, runc: Option<&RuncState>) -> ContainerInfo {
        let status = match (self.phase, runc.map(|s| s.status.as_str())) {
            (RecordPhase::Discarding, _) => ContainerStatus::Discarding,
            (_, Some("created")) => ContainerStatus::Created,
            (_, Some("running")) => ContainerStatus::Running,
            (_, Some("paused")) => ContainerStatus::Paused,
            (RecordPhase::Preparing, None) => ContainerStatus::Preparing,
            _ => ContainerStatus::Stopped,
        };
        ContainerInfo {
            id: self.id.clone(),
            app: self.app.clone(),
            seq: self.seq,
            image: self.image.clone(),
            address: self.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            pid: runc.map(|s| s.pid).filter(|p| *p > 0).or(self.pid),
            status,
            started_at: self.started_at.unwrap_or(self.created_at),
            exit_code: self.exit_code,
        }
    }
}

impl Runtime {
    pub(crate) fn dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join(id)
    }

    /// Creates and starts a container for a release. Refuses an id that exists or whose
    /// process ever ran; a discarded container that never ran (failed or crashed start) may
    /// be started again.
    /// On failure everything made so far is torn down and the error says what failed.
    pub async fn start(&self, spec: ContainerSpec<'_>) -> Result<ContainerInfo, RuntimeError> {
        self.make(spec, true).await
    }

    /// [`Runtime::start`] (`run`) or [`Runtime::create`].
    pub(super) async fn make(
        &self,
        spec: ContainerSpec<'_>,
        run: bool,
    ) -> Result<ContainerInfo, RuntimeError> {
        let id = spec.id.clone();
        let release = spec.release;
        if let Ok(expected) = release.container_id() {
            if expected != id {
                return Err(RuntimeError::IdMismatch { id, expected });
            }
        }
        self.hand_over_volumes(&id, release).await?;
        let lock = self.shared.lock(&id);
        let _guard = lock.lock().await;
        let dir = self.dir(&id);
        let private = || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)
        };
        match private() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A discarded container whose process never ran (a failed start, or one a
                // crash left half-made) may be tried again; anything that ran may not.
                match Record::load(&dir) {
                    Ok(Some(r)) if r.phase == RecordPhase::Discarded && r.started_at.is_none() => {
                        std::fs::remove_dir_all(&dir).map_err(io(&dir, "remove"))?;
                        private().map_err(io(&dir, "create container dir"))?;
                    }
                    _ => return Err(RuntimeError::Exists { id: id.to_string() }),
                }
            }
            Err(e) => return Err(io(&dir, "create container dir")(e)),
        }
        // runc keeps each container's state in `<root>/<id>`: a stat, not a runc process.
        if self.cfg.runc_root.join(&id).exists() {
            let _ = std::fs::remove_dir(&dir);
            return Err(RuntimeError::Exists { id: id.to_string() });
        }
        let mut rec = Record {
            id: id.clone(),
            app: release.app.clone(),
            seq: release.seq,
            image: release.image.clone(),
            phase: RecordPhase::Preparing,
            netns: netns_name(&self.cfg.runc_root, &id),
            address: None,
            pid: None,
            stop_grace_ms: release.spec.stop_grace.as_millis() as u64,
            created_at: SystemTime::now(),
            started_at: None,
            exit_code: None,
            // Recorded before ADD so that DEL after a crash uses the very same config.
            netconf: Some(self.net.netconf()?),
            stop_signal: None,
            cni_id: None,
            volumes: Vec::new(),
        };
        rec.save_new(&dir)?;
        let made = match self.build(&spec, &dir, &mut rec).await {
            Ok(()) if run => self.run_created(&dir, &mut rec).await,
            Ok(()) => {
                tracing::info!(container = %id, address = ?rec.address, "created, not started");
                let mut info = rec.info(None);
                info.status = ContainerStatus::Created;
                Ok(info)
            }
            Err(e) => Err(e),
        };
        self.or_tear_down(made, &dir, &mut rec).await
    }

    /// `made`, or (when it failed) everything of the container torn down and the error.
    pub(super) async fn or_tear_down(
        &self,
        made: Result<ContainerInfo, RuntimeError>,
        dir: &Path,
        rec: &mut Record,
    ) -> Result<ContainerInfo, RuntimeError> {
        let e = match made {
            Ok(info) => return Ok(info),
            Err(e) => e,
        };
        tracing::warn!(container = %rec.id, error = %e, "start failed; tearing down");
        if let Err(e2) = self.teardown(dir, rec, Duration::ZERO).await {
            tracing::error!(container = %rec.id, error = %e2, "teardown after failed start");
        }
        Err(e)
    }

    /// Everything up to and including `runc create`; the record says `Created`.
    async fn build(
        &self,
        spec: &ContainerSpec<'_>,
        dir: &Path,
        rec: &mut Record,
    ) -> Result<(), RuntimeError> {
        let id = rec.id.clone();
        let id = id.as_str();
        // Bad input the image or a profile file brings fails here, before anything is made.
        let seccomp = crate::prepare::seccomp(spec.release)?;
        rec.stop_signal = Some(crate::prepare::stop_signal(&rec.image, spec.image_config)?);
        let ns = netns_path(&rec.netns);
        // A namespace of this name can only be a leftover of a crash before this id ever ran
        // (the id check above refuses ids that ran): remove it rather than fail.
        crate::network::netns_del(&rec.netns).await?;
        netns_add(&rec.netns).await?;
        let netconf = rec.netconf.clone().unwrap_or_default();
        // The address reaches the record with the next save (after `runc create`).
        rec.cni_id = Some(rec.netns.clone());
        rec.save(dir)?;
        // CNI ADD and everything up to `runc create` run side by side: `runc create` only
        // needs the namespace to exist, not its interfaces. The one thing that needs the
        // address, /etc/hosts, is written in place once both are done (the container's
        // process waits for `runc start` before it reads anything).
        let netns = rec.netns.clone();
        let network = async {
            let t = std::time::Instant::now();
            let address = self.net.add(&netns, &ns, &netconf).await?;
            tracing::debug!(container = %id, ms = t.elapsed().as_millis() as u64, "CNI add done");
            self.maybe_crash(CrashPoint::AfterNetwork);
            Ok::<_, RuntimeError>(address)
        };
        let create = self.build_and_create(spec, dir, &rec.image, &netns, &ns, seccomp.as_ref());
        let (address, created) = tokio::join!(network, create);
        if let Ok((prepared, _)) = &created {
            // Named volumes are handed back by the teardown even when the network failed.
            rec.volumes = prepared.named.clone();
        }
        let address = address?;
        rec.address = Some(address);
        let (prepared, pid_file) = created?;
        crate::prepare::write_hosts(dir, &prepared.hostname, address)?;
        let pid = crate::runc::read_pid(&pid_file);
        rec.pid = pid;
        rec.phase = RecordPhase::Created;
        rec.save(dir)?;
        if let Some(pid) = pid {
            // Supervise before start, so even an instant exit is reaped and recorded.
            self.supervise(id, pid);
        }
        self.maybe_crash(CrashPoint::AfterCreate);
        Ok(())
    }

    /// Starts a created container (as `runc start` does), recorded as started.
    pub(super) async fn run_created(
        &self,
        dir: &Path,
        rec: &mut Record,
    ) -> Result<ContainerInfo, RuntimeError> {
        let id = rec.id.clone();
        let id = id.as_str();
        let t = std::time::Instant::now();
        self.runc.start(id, rec.pid).await?;
        tracing::debug!(container = %id, ms = t.elapsed().as_millis() as u64, "container started");
        self.maybe_crash(CrashPoint::AfterStart);
        rec.phase = RecordPhase::Started;
        rec.started_at = Some(SystemTime::now());
        rec.save(dir)?;
        tracing::info!(container = %id, address = ?rec.address, "started");
        // Reported as running without asking runc again (a process spawn): an instant exit
        // shows up in the next `list`.
        let mut info = rec.info(None);
        info.status = ContainerStatus::Running;
        Ok(info)
    }

    /// Mounts the root, writes the name files (/etc/hosts without the address yet) and the
    /// bundle, and runs `runc create` in the existing namespace `ns`. A container with
    /// secrets has its bundle (config.json, which holds the secret env) and its secret files
    /// on a tmpfs of its own; any other has its bundle in its state dir.
    async fn build_and_create(
        &self,
        spec: &ContainerSpec<'_>,
        dir: &Path,
        image: &str,
        netns: &str,
        ns: &Path,
        seccomp: Option<&crate::seccomp::Profile>,
    ) -> Result<(crate::prepare::Prepared, PathBuf), RuntimeError> {
        let id = spec.id.as_str();
        let paths = RootfsPaths::new(dir);
        rootfs::mount(self.mounter.as_ref(), id, spec.layer_dirs, &paths)?;
        let prepared = self.prepare(
            id,
            spec.release,
            spec.image_config,
            dir,
            &paths.target,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        )?;
        let secrets = spec.secrets.filter(|s| !s.is_empty());
        let secrets_dir = self.secrets_dir(id);
        let (bundle_dir, root, secret_env, mut binds) = match secrets {
            Some(s) => (
                secrets_dir.clone(),
                paths.target.clone(),
                s.env_entries(id)?,
                s.binds(&secrets_dir),
            ),
            None => (
                dir.to_path_buf(),
                PathBuf::from("rootfs"),
                Vec::new(),
                Vec::new(),
            ),
        };
        binds.splice(0..0, prepared.binds.iter().cloned());
        let oci = bundle::build(&BundleInput {
            id,
            image,
            spec: &spec.release.spec,
            config: spec.image_config,
            etc: &RootfsEtc(&paths.target),
            netns: ns,
            cgroup: netns
                .strip_prefix(crate::defaults::NETNS_PREFIX)
                .unwrap_or(id),
            hostname: &prepared.hostname,
            binds: &binds,
            seccomp,
            secret_env: &secret_env,
            root: &root,
        })?;
        let json = crate::secrets::Zeroizing::new(
            serde_json::to_vec_pretty(&oci).expect("spec serializes"),
        );
        let (uid, gid) = oci
            .process()
            .as_ref()
            .map_or((0, 0), |p| (p.user().uid(), p.user().gid()));
        drop(oci);
        if let Some(s) = secrets {
            // A leftover of a start a crash cut short (this id never ran) goes first.
            crate::secrets::remove(self.mounter.as_ref(), id, &secrets_dir)?;
            crate::secrets::mount_tmpfs(self.mounter.as_ref(), id, &secrets_dir)?;
            s.write_files(&secrets_dir, uid, gid)?;
            tracing::debug!(container = %id, env = s.env.len(), files = s.files.len(), "secrets on the container's tmpfs");
        }
        // Never durable on disk for a secrets bundle: the tmpfs is RAM; fsync costs nothing.
        write_atomic(&bundle_dir.join(CONFIG), &json, Durability::Atomic)?;

        let (out, err) = logs::paths(dir);
        let stdout = logs::open_append(&out).map_err(io(&out, "open log"))?;
        let stderr = logs::open_append(&err).map_err(io(&err, "open log"))?;
        let pid_file = dir.join(PID_FILE);
        let t = std::time::Instant::now();
        self.runc
            .create(
                id,
                &bundle_dir,
                &pid_file,
                &dir.join(RUNC_LOG),
                stdout,
                stderr,
            )
            .await?;
        tracing::debug!(container = %id, ms = t.elapsed().as_millis() as u64, "runc create done");
        Ok((prepared, pid_file))
    }

    fn maybe_crash(&self, at: CrashPoint) {
        if *self.shared.crash_at.lock().unwrap() == Some(at) {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Containers in the state dir (discarded ones excluded), with runc's view of each.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let runc = self.runc.list_by_id().await?;
        let mut out = Vec::new();
        for (_, dir) in crate::state::container_dirs(&self.cfg.state_dir)? {
            if let Some(rec) = Record::load(&dir)? {
                if rec.phase != RecordPhase::Discarded {
                    out.push(rec.info(runc.get(rec.id.as_str())));
                }
            }
        }
        Ok(out)
    }

    /// Container `id`, unless it is unknown or discarded. Asks runc about this one container
    /// only, and only when it has a record: for a new id this is a stat. A container created
    /// and not started whose process its reaper knows alive is `created` without asking runc
    /// (runc says so when the exec fifo is there), which keeps a process spawn off the start
    /// of a container made ahead.
    pub async fn get(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        check_id(id)?;
        let dir = self.dir(id);
        if !dir.exists() {
            return Ok(None);
        }
        let Some(rec) = Record::load(&dir)? else {
            return Ok(None);
        };
        if rec.phase == RecordPhase::Discarded {
            return Ok(None);
        }
        if rec.phase == RecordPhase::Created
            && rec.started_at.is_none()
            && self.process_alive(id) == Some(true)
            && self.runc.has_exec_fifo(id)
        {
            let mut info = rec.info(None);
            info.status = ContainerStatus::Created;
            return Ok(Some(info));
        }
        let runc = self.runc.state(id).await?;
        Ok(Some(rec.info(runc.as_ref())))
    }

    /// The address container `id` was given, from its record alone (no runc).
    pub fn address(&self, id: &str) -> Result<Option<IpAddr>, RuntimeError> {
        check_id(id)?;
        Ok(Record::load(&self.dir(id))?
            .filter(|r| r.phase != RecordPhase::Discarded)
            .and_then(|r| r.address))
    }

    /// Runs `argv` in running container `id` (for exec health checks).
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        check_id(id)?;
        let state = self.runc.state(id).await?;
        match state.as_ref().map(|s| s.status.as_str()) {
            Some("running") => {}
            other => {
                return Err(RuntimeError::NotRunning {
                    id: id.into(),
                    status: other.unwrap_or("unknown to runc").into(),
                })
            }
        }
        let n = std::time::SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let pid_file = self.dir(id).join(format!("exec-{n}.pid"));
        let r = self.runc.exec(id, argv, &pid_file, timeout).await;
        let _ = std::fs::remove_file(&pid_file);
        r?.ok_or(RuntimeError::ExecTimeout {
            id: id.into(),
            ms: timeout.as_millis(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_names() {
        assert!(check_id("web-12-0123456789ab").is_ok());
        for bad in ["", "Web-1", "1web", "web/../x", "web 1", &"a".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
