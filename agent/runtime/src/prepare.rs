//! What a container needs besides its root, made before `config.json`: the seccomp profile,
//! its name files (`/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`), its volumes, and the
//! signal that stops it.

use crate::bundle::Bind;
use crate::error::{io, BundleError, RuntimeError};
use crate::seccomp::Profile;
use crate::state::{write_atomic, Durability};
use crate::{defaults, dns, volumes, Runtime};
use slipway_proto::{Release, Seccomp};
use std::net::IpAddr;
use std::path::Path;

/// Dir of a container's generated `/etc` files inside its container dir.
pub(crate) const ETC_DIR: &str = "etc";
/// Dir of a container's image VOLUMEs inside its container dir.
pub(crate) const VOLUMES_DIR: &str = "volumes";

/// The parts of a container made beside its root.
pub(crate) struct Prepared {
    pub hostname: String,
    pub binds: Vec<Bind>,
    /// Named volumes mounted.
    pub named: Vec<String>,
}

/// The app's seccomp profile; a profile file that cannot be read fails here, before anything
/// is made.
pub(crate) fn seccomp(release: &Release) -> Result<Option<Profile>, RuntimeError> {
    Ok(match &release.spec.seccomp {
        Seccomp::Default => Some(Profile::docker_default()),
        Seccomp::Unconfined => None,
        Seccomp::File(path) => Some(Profile::load(&release.app, path)?),
    })
}

/// The image's STOPSIGNAL as `runc kill` takes it (`QUIT`, `9`), or [`defaults::STOP_SIGNAL`].
pub(crate) fn stop_signal(
    image: &str,
    config: &oci_spec::image::ImageConfiguration,
) -> Result<String, BundleError> {
    let Some(sig) = config
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().clone())
    else {
        return Ok(defaults::STOP_SIGNAL.to_string());
    };
    let name = sig.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name).to_string();
    let known = match name.parse::<i32>() {
        Ok(n) => (1..=64).contains(&n),
        Err(_) => nix::sys::signal::Signal::iterator()
            .any(|s| s.as_str().strip_prefix("SIG") == Some(name.as_str())),
    };
    if !known {
        return Err(BundleError::Field {
            image: image.to_string(),
            field: "StopSignal",
            reason: format!("`{}` is not a signal", sig.escape_debug()),
        });
    }
    Ok(name)
}

impl Runtime {
    /// A named volume has one writer at a time (two PostgreSQL servers on one data dir
    /// corrupt it, and neither can see the other's lock across namespaces): a container that
    /// mounts a named volume `release` uses is stopped and discarded, with its own stop
    /// signal and grace, before the new one starts. This is a short outage for that app.
    pub(crate) async fn hand_over_volumes(
        &self,
        id: &str,
        release: &Release,
    ) -> Result<(), RuntimeError> {
        let wanted: Vec<&String> = release
            .spec
            .volumes
            .iter()
            .filter_map(|v| v.name.as_ref())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        for (other, dir) in crate::state::container_dirs(&self.cfg.state_dir)? {
            let Some(rec) = crate::state::Record::load(&dir)? else {
                continue;
            };
            let shared: Vec<&String> = rec.volumes.iter().filter(|v| wanted.contains(v)).collect();
            if other == id || shared.is_empty() || rec.phase == crate::state::RecordPhase::Discarded
            {
                continue;
            }
            tracing::warn!(
                container = %other,
                next = id,
                volumes = ?shared,
                "a named volume has one writer: stopping the container that mounts it before the new one starts"
            );
            self.discard(&other, std::time::Duration::from_millis(rec.stop_grace_ms))
                .await?;
        }
        Ok(())
    }

    /// Writes the name files and prepares the volumes of a container whose root is mounted
    /// at `rootfs`.
    pub(crate) fn prepare(
        &self,
        id: &str,
        release: &Release,
        config: &oci_spec::image::ImageConfiguration,
        dir: &Path,
        rootfs: &Path,
        address: IpAddr,
    ) -> Result<Prepared, RuntimeError> {
        let hostname = dns::hostname(id);
        let host = dns::host_resolv(&self.cfg.dns);
        let resolv = dns::resolv_conf(&host, &self.cfg.dns, &release.spec.dns);
        if resolv.servers.is_empty() {
            tracing::warn!(
                container = id,
                "no nameserver a container can use (the host has none, or only loopback ones); name lookups in it fail at once; set [runtime.dns] servers in agent.toml or dns.servers in the app spec"
            );
        }
        let etc = dir.join(ETC_DIR);
        crate::create_private_dir(&etc)?;
        let files = [
            ("resolv.conf", resolv.render()),
            ("hosts", dns::hosts(&hostname, address)),
            ("hostname", format!("{hostname}\n")),
        ];
        let mut binds = Vec::new();
        for (name, text) in files {
            let p = etc.join(name);
            write_atomic(&p, text.as_bytes(), Durability::Atomic)?;
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(io(&p, "chmod"))?;
            binds.push(Bind {
                source: p,
                destination: Path::new("/etc").join(name),
                read_only: release.spec.read_only,
            });
        }
        let image_volumes: Vec<String> = config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        let (vols, named) = volumes::prepare(
            &release.app,
            &release.spec,
            &image_volumes,
            rootfs,
            &dir.join(VOLUMES_DIR),
            &self.cfg.volumes_dir(),
        )?;
        binds.extend(vols);
        Ok(Prepared {
            hostname,
            binds,
            named,
        })
    }
}

/// Rewrites a container's /etc/hosts with its address, in place: the file is bind-mounted
/// into the created container, so a new inode (an atomic rename) would not be seen.
pub(crate) fn write_hosts(dir: &Path, hostname: &str, address: IpAddr) -> Result<(), RuntimeError> {
    let p = dir.join(ETC_DIR).join("hosts");
    std::fs::write(&p, dns::hosts(hostname, address)).map_err(io(&p, "write"))
}
