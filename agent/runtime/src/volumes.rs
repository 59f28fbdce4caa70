//! Volumes: an image's `VOLUME`s get a fresh dir per container (ephemeral, discarded with it),
//! and named volumes live under the volumes dir across releases and rollbacks. Both are seeded
//! from the image's content at their path, with the image's ownership and modes, as Docker
//! does; a named volume only on first use. Only [`remove`] deletes a named volume.

use crate::bundle::Bind;
use crate::error::{io, BundleError, RuntimeError};
use crate::state::{Record, RecordPhase};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Dir of a named volume's content inside its volume dir.
const DATA: &str = "_data";
/// A named volume's description inside its volume dir.
const META: &str = "volume.json";

/// What `volume ls` shows of a named volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// The app that used it first (any app may mount it).
    pub created_by: String,
    pub created_at: SystemTime,
    /// Where its content lives on the host.
    #[serde(skip)]
    pub path: PathBuf,
    /// Containers (not discarded) that mount it.
    #[serde(skip)]
    pub used_by: Vec<String>,
}

/// The binds of a container's volumes, in mount order (parents before children): the spec's
/// host-path and named volumes, then the image's `VOLUME`s no spec volume covers (each a
/// fresh dir under `ephemeral_dir`). `rootfs` is the mounted root seeds are copied from.
pub fn prepare(
    app: &str,
    spec: &slipway_proto::AppSpec,
    image_volumes: &[String],
    rootfs: &Path,
    ephemeral_dir: &Path,
    volumes_dir: &Path,
) -> Result<(Vec<Bind>, Vec<String>), RuntimeError> {
    let mut binds = Vec::new();
    let mut named = Vec::new();
    for v in &spec.volumes {
        let source = match (&v.name, &v.host) {
            (Some(name), _) => {
                let p = named_volume(app, name, &v.container, rootfs, volumes_dir)?;
                named.push(name.clone());
                p
            }
            (None, Some(host)) => {
                if !host.exists() {
                    return Err(RuntimeError::Io {
                        path: host.clone(),
                        action: "bind as a volume (create it on the host first)",
                        source: std::io::ErrorKind::NotFound.into(),
                    });
                }
                host.clone()
            }
            (None, None) => unreachable!("the spec was validated"),
        };
        binds.push(Bind {
            source,
            destination: v.container.clone(),
            read_only: v.read_only,
        });
    }
    let mut k = 0;
    for path in image_volumes {
        let dest = clean_image_path(app, path)?;
        if spec.volumes.iter().any(|v| dest.starts_with(&v.container)) {
            continue;
        }
        let dir = ephemeral_dir.join(k.to_string());
        k += 1;
        seed_into(rootfs, &dest, &dir).map_err(|e| volume_err(app, path, e))?;
        tracing::info!(
            app,
            volume = %dest.display(),
            dir = %dir.display(),
            "image VOLUME is ephemeral: it is discarded with the container; declare a named volume in the app spec to keep it"
        );
        binds.push(Bind {
            source: dir,
            destination: dest,
            read_only: false,
        });
    }
    binds.sort_by_key(|b| b.destination.components().count());
    Ok((binds, named))
}

fn volume_err(app: &str, volume: &str, reason: impl std::fmt::Display) -> RuntimeError {
    BundleError::Volume {
        app: app.to_string(),
        volume: volume.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

/// An image `VOLUME` path, checked like any image field: absolute, no `..`, not `/`.
fn clean_image_path(app: &str, path: &str) -> Result<PathBuf, RuntimeError> {
    let p = Path::new(path);
    let ok = p.is_absolute()
        && !path.contains('\0')
        && !p.components().any(|c| matches!(c, Component::ParentDir))
        && p.components().count() > 1;
    if !ok {
        return Err(volume_err(
            app,
            path,
            "the image's VOLUME must be an absolute path without `..`, not `/`",
        ));
    }
    Ok(p.components().collect())
}

/// The content dir of named volume `name`, created and seeded from the image on first use.
fn named_volume(
    app: &str,
    name: &str,
    container_path: &Path,
    rootfs: &Path,
    volumes_dir: &Path,
) -> Result<PathBuf, RuntimeError> {
    slipway_proto::valid_volume_name(name).map_err(|r| volume_err(app, name, r))?;
    let vdir = volumes_dir.join(name);
    let data = vdir.join(DATA);
    if data.is_dir() {
        return Ok(data);
    }
    crate::create_private_dir(&vdir)?;
    let tmp = vdir.join(format!(".seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    seed_into(rootfs, container_path, &tmp).map_err(|e| volume_err(app, name, e))?;
    let meta = VolumeInfo {
        name: name.to_string(),
        created_by: app.to_string(),
        created_at: SystemTime::now(),
        path: data.clone(),
        used_by: Vec::new(),
    };
    let bytes = serde_json::to_vec_pretty(&meta).expect("volume info serializes");
    crate::state::write_atomic(&vdir.join(META), &bytes, crate::state::Durability::Synced)?;
    if let Err(e) = std::fs::rename(&tmp, &data) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !data.is_dir() {
            return Err(io(&data, "create named volume")(e));
        }
    }
    tracing::info!(app, volume = name, path = %data.display(), "named volume created, seeded from the image");
    Ok(data)
}

/// Makes `dst` a copy of the image's `path` (owner, mode, content), or an empty root-owned
/// dir when the image has nothing there. The path is resolved inside `rootfs`, so an
/// image's symlink (`/data -> /etc`) can never make us copy a host dir.
fn seed_into(rootfs: &Path, path: &Path, dst: &Path) -> std::io::Result<()> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::PATH,
        Mode::empty(),
    )?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let src = match openat2(
        &root,
        rel,
        OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::PATH,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            std::fs::DirBuilder::new().recursive(true).create(dst)?;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
            return Ok(());
        }
        Err(rustix::io::Errno::NOTDIR) => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory in the image",
                path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    use std::os::fd::AsRawFd;
    let src_path = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dst)?;
    copy_tree(&src_path, dst)
}

/// Copies a directory tree, never following a symlink: links are copied as links, special
/// files (devices, fifos, sockets) are skipped. Owners and modes are kept.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    copy_attrs(&std::fs::metadata(src)?, dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        } else if ft.is_file() {
            let mut r = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc_o_nofollow())
                .open(&from)?;
            let mut w = std::fs::File::create(&to)?;
            std::io::copy(&mut r, &mut w)?;
            copy_attrs(&meta, &to)?;
        } else {
            tracing::debug!(path = %from.display(), "special file not copied into a volume");
        }
    }
    Ok(())
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Owner first, then mode (a chown clears set-id bits).
fn copy_attrs(meta: &std::fs::Metadata, to: &Path) -> std::io::Result<()> {
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

/// Named volumes under `volumes_dir`, with the live containers of `state_dir` that use them.
pub fn list(volumes_dir: &Path, state_dir: &Path) -> Result<Vec<VolumeInfo>, RuntimeError> {
    let users = users(state_dir)?;
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(volumes_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(volumes_dir, "list")(e)),
    };
    for entry in rd.flatten() {
        let meta = entry.path().join(META);
        let Ok(bytes) = std::fs::read(&meta) else {
            continue; // not (yet) a volume: a seed in progress or a stray dir
        };
        let mut v: VolumeInfo =
            serde_json::from_slice(&bytes).map_err(|e| RuntimeError::CorruptState {
                path: meta.clone(),
                reason: e.to_string(),
            })?;
        v.path = entry.path().join(DATA);
        v.used_by = users
            .iter()
            .filter(|(_, vols)| vols.contains(&v.name))
            .map(|(id, _)| id.clone())
            .collect();
        out.push(v);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes named volume `name` and its data; refused while a container that is not
/// discarded mounts it.
pub fn remove(volumes_dir: &Path, state_dir: &Path, name: &str) -> Result<(), RuntimeError> {
    let bad = |reason: String| RuntimeError::Volume {
        name: name.escape_debug().to_string(),
        reason,
    };
    slipway_proto::valid_volume_name(name).map_err(bad)?;
    let dir = volumes_dir.join(name);
    if !dir.exists() {
        return Err(bad(format!("no such volume in {}", volumes_dir.display())));
    }
    let using: Vec<String> = users(state_dir)?
        .into_iter()
        .filter(|(_, v)| v.iter().any(|n| n == name))
        .map(|(id, _)| id)
        .collect();
    if !using.is_empty() {
        return Err(bad(format!(
            "in use by container {}; remove the app (or deploy a release without it) first",
            using.join(", ")
        )));
    }
    std::fs::remove_dir_all(&dir).map_err(io(&dir, "remove volume"))
}

/// (container id, named volumes) of every container that is not discarded.
fn users(state_dir: &Path) -> Result<Vec<(String, Vec<String>)>, RuntimeError> {
    let mut out = Vec::new();
    for (id, dir) in crate::state::container_dirs(state_dir)? {
        if let Some(r) = Record::load(&dir)? {
            if r.phase != RecordPhase::Discarded && !r.volumes.is_empty() {
                out.push((id, r.volumes));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
