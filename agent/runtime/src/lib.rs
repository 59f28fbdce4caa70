//! Slipway container runtime: OCI bundle, runc, CNI network namespaces, adoption, discard.
//!
//! A release runs as one container: an overlay rootfs of its image's layer dirs
//! ([`rootfs`]), a `config.json` from the image config and app spec ([`bundle`]), its own
//! network namespace on the CNI bridge ([`network`]), and a runc container under a private
//! root ([`runc`]) whose init the agent reaps ([`reaper`]). A container with secrets keeps
//! its bundle and secret files on a tmpfs of its own ([`secrets`]). Every step is recorded first
//! ([`state`]) so [`Runtime::adopt`] ([`adopt`]) can find and finish or clean up anything
//! after a crash; [`discard`] removes a container without a trace.
#![deny(unsafe_code)] // one audited exception: registering a pidfd with tokio (reaper.rs)

pub mod adopt;
pub mod bundle;
pub mod config;
pub mod container;
pub mod defaults;
pub mod discard;
pub mod dns;
pub mod error;
pub mod logs;
pub mod nat;
pub mod netns;
pub mod network;
mod prepare;
pub mod reaper;
pub mod rootfs;
pub mod runc;
pub mod seccomp;
pub mod secrets;
pub mod state;
pub mod volumes;

pub use adopt::AdoptReport;
pub use config::{ByteSize, CniConfig, RuntimeConfig};
pub use container::{ContainerInfo, ContainerSpec, ContainerStatus, CrashPoint};
pub use error::{BundleError, NetworkError, RuncError, RuntimeError};
pub use runc::ExecOutput;
pub use secrets::{ContainerSecrets, SecretEnv, SecretMount};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Runs, lists, adopts and discards this host's containers.
pub struct Runtime {
    cfg: RuntimeConfig,
    runc: runc::Runc,
    net: network::Network,
    mounter: Box<dyn rootfs::Mounter>,
    shared: Arc<Shared>,
}

/// Becomes `Some` when a supervised container's init has exited and been reaped.
type ExitWatch = watch::Receiver<Option<reaper::Exit>>;

/// State shared with the per-container supervisor tasks.
#[derive(Default)]
struct Shared {
    /// Init pid and exit of each supervised container; the supervisor is its only reaper.
    exits: Mutex<HashMap<String, (i32, ExitWatch)>>,
    /// One lock per container id: start, discard and the supervisor's record update never
    /// interleave on one container.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    crash_at: Mutex<Option<CrashPoint>>,
    /// Wakes the supervisors when their logs are written (started with the first one).
    log_watcher: std::sync::OnceLock<Option<Arc<logs::LogWatcher>>>,
}

impl Runtime {
    /// Checks the config, creates the state dir and runc root (mode 0700) and makes this
    /// process the subreaper of the containers it starts.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let secrets_dir = cfg.secrets_dir();
        for (name, p) in [
            ("state_dir", &cfg.state_dir),
            ("runc_root", &cfg.runc_root),
            ("secrets_dir", &secrets_dir),
        ] {
            if !p.is_absolute() {
                return Err(RuntimeError::Config(format!(
                    "{name} `{}` must be an absolute path",
                    p.display()
                )));
            }
            create_private_dir(p)?;
        }
        if !cfg.cni.plugin_dir.join("bridge").exists() && cfg.cni.netconf.is_none() {
            return Err(RuntimeError::Config(format!(
                "no CNI bridge plugin in {} (install containernetworking-plugins or set cni.plugin_dir)",
                cfg.cni.plugin_dir.display()
            )));
        }
        reaper::become_subreaper().map_err(error::io("/proc/self", "become child subreaper"))?;
        Ok(Runtime {
            runc: runc::Runc {
                bin: cfg.runc.clone(),
                root: cfg.runc_root.clone(),
            },
            net: network::Network::new(cfg.cni.clone(), cfg.state_dir.join("_ipam")),
            mounter: Box::new(rootfs::SysMounter),
            shared: Arc::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// The tmpfs mount point of container `id`'s secrets (see [`secrets`]).
    pub fn secrets_dir(&self, id: &str) -> PathBuf {
        self.cfg.secrets_dir().join(id)
    }

    /// (stdout, stderr) log files of container `id`.
    pub fn log_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        logs::paths(&self.cfg.state_dir.join(id))
    }

    /// Test hook: die by SIGKILL at `point` of the next start, like an agent crash there.
    #[doc(hidden)]
    pub fn crash_at(&self, point: Option<CrashPoint>) {
        *self.shared.crash_at.lock().unwrap() = point;
    }
}

pub(crate) fn create_private_dir(p: &std::path::Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(error::io(p, "create dir"))
}

impl Runtime {
    /// Logs runc's version, and warns with the CVE ids of known escapes that version
    /// predates the upstream fixes for (a distribution build may carry backports).
    pub async fn check_runc(&self) -> Result<String, RuntimeError> {
        let text = self.runc.version().await?;
        let first = text.lines().next().unwrap_or("").to_string();
        match runc::version::parse(&text) {
            Some(v) => {
                let missing = runc::version::missing_fixes(v);
                if missing.is_empty() {
                    tracing::info!(runc = %first, "runc version");
                } else {
                    tracing::warn!(
                        runc = %first,
                        cves = %missing.join(", "),
                        "this runc predates the upstream fixes for known container escapes; upgrade runc (or confirm your distribution backported them)"
                    );
                }
            }
            None => tracing::warn!(output = %first, "cannot read runc's version"),
        }
        Ok(first)
    }
}
