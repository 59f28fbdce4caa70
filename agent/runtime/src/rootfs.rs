//! A container's root: an overlay of the image's unpacked layer dirs (read-only lowers, base
//! layer at the bottom) with a private upper/work dir, mounted at `<container dir>/rootfs`.

use crate::error::RuntimeError;
use std::path::{Path, PathBuf};

/// Longest overlay option string the kernel accepts (one page).
const MAX_MOUNT_DATA: usize = 4095;

/// The mount system calls, behind a trait so the option logic is testable without root.
pub trait Mounter: Send + Sync {
    fn mount_overlay(&self, target: &Path, data: &str) -> std::io::Result<()>;
    /// Lazily detaches `target`; `Ok(false)` when nothing was mounted there.
    fn unmount(&self, target: &Path) -> std::io::Result<bool>;
}

/// Real mounts with `mount(2)` / `umount2(2)`.
pub struct SysMounter;

impl Mounter for SysMounter {
    fn mount_overlay(&self, target: &Path, data: &str) -> std::io::Result<()> {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(data),
        )
        .map_err(std::io::Error::from)
    }

    fn unmount(&self, target: &Path) -> std::io::Result<bool> {
        use nix::mount::{umount2, MntFlags};
        match umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => Ok(true),
            // EINVAL: not a mount point; ENOENT: gone already.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Paths of one container's root inside its dir.
pub struct RootfsPaths {
    pub target: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl RootfsPaths {
    pub fn new(container_dir: &Path) -> Self {
        Self {
            target: container_dir.join("rootfs"),
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
        }
    }
}

/// The overlay mount data: `lowerdir` lists the top layer first, so `layer_dirs` (base
/// first) is reversed.
pub fn overlay_data(
    id: &str,
    layer_dirs: &[PathBuf],
    paths: &RootfsPaths,
) -> Result<String, RuntimeError> {
    if layer_dirs.is_empty() {
        return Err(RuntimeError::Rootfs {
            id: id.into(),
            reason: "the image has no layers".into(),
        });
    }
    let mut lowers = Vec::with_capacity(layer_dirs.len());
    for d in layer_dirs.iter().rev() {
        let s = d.to_str().ok_or_else(|| RuntimeError::Rootfs {
            id: id.into(),
            reason: format!("layer dir {} is not UTF-8", d.display()),
        })?;
        if !d.is_absolute() || s.contains([':', ',', '\\']) {
            return Err(RuntimeError::Rootfs {
                id: id.into(),
                reason: format!(
                    "layer dir {s} must be an absolute path without `:`, `,` or `\\` (overlay option syntax)"
                ),
            });
        }
        lowers.push(s);
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        paths.upper.display(),
        paths.work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RuntimeError::Rootfs {
            id: id.into(),
            reason: format!(
                "{} layers make an overlay option string of {} bytes, over the kernel's {MAX_MOUNT_DATA}",
                layer_dirs.len(),
                data.len()
            ),
        });
    }
    Ok(data)
}

/// Creates the private upper/work dirs and mounts the overlay.
pub fn mount(
    m: &dyn Mounter,
    id: &str,
    layer_dirs: &[PathBuf],
    paths: &RootfsPaths,
) -> Result<(), RuntimeError> {
    for d in layer_dirs {
        if !d.is_dir() {
            return Err(RuntimeError::Rootfs {
                id: id.into(),
                reason: format!("layer dir {} does not exist", d.display()),
            });
        }
    }
    let data = overlay_data(id, layer_dirs, paths)?;
    for d in [&paths.target, &paths.upper, &paths.work] {
        std::fs::create_dir_all(d).map_err(crate::error::io(d, "create dir"))?;
    }
    m.mount_overlay(&paths.target, &data)
        .map_err(|e| RuntimeError::Rootfs {
            id: id.into(),
            reason: format!("mount overlay at {}: {e}", paths.target.display()),
        })
}

/// Unmounts (if mounted) and removes the rootfs, upper and work dirs. Idempotent.
pub fn remove(m: &dyn Mounter, id: &str, paths: &RootfsPaths) -> Result<(), RuntimeError> {
    // A mount may be stacked (crash during a retry); unmount until nothing is left.
    for _ in 0..8 {
        match m.unmount(&paths.target) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                return Err(RuntimeError::Rootfs {
                    id: id.into(),
                    reason: format!("unmount {}: {e}", paths.target.display()),
                })
            }
        }
    }
    for d in [&paths.target, &paths.upper, &paths.work] {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::io(d, "remove")(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        mounted: Mutex<u32>,
    }

    impl Mounter for Recorder {
        fn mount_overlay(&self, target: &Path, data: &str) -> std::io::Result<()> {
            *self.mounted.lock().unwrap() += 1;
            self.calls
                .lock()
                .unwrap()
                .push(format!("mount {} {data}", target.display()));
            Ok(())
        }
        fn unmount(&self, target: &Path) -> std::io::Result<bool> {
            let mut m = self.mounted.lock().unwrap();
            self.calls
                .lock()
                .unwrap()
                .push(format!("umount {}", target.display()));
            if *m == 0 {
                return Ok(false);
            }
            *m -= 1;
            Ok(true)
        }
    }

    #[test]
    fn lowers_are_top_first_with_private_upper_and_work() {
        let dir = tempfile::tempdir().unwrap();
        let (base, top) = (dir.path().join("base"), dir.path().join("top"));
        std::fs::create_dir(&base).unwrap();
        std::fs::create_dir(&top).unwrap();
        let c = dir.path().join("c");
        let paths = RootfsPaths::new(&c);
        let rec = Recorder::default();
        mount(&rec, "web-1-a", &[base.clone(), top.clone()], &paths).unwrap();
        let calls = rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![format!(
                "mount {}/rootfs lowerdir={}:{},upperdir={}/upper,workdir={}/work",
                c.display(),
                top.display(),
                base.display(),
                c.display(),
                c.display()
            )]
        );
        assert!(paths.upper.is_dir() && paths.work.is_dir());
    }

    #[test]
    fn remove_unmounts_until_clean_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RootfsPaths::new(dir.path());
        std::fs::create_dir_all(&paths.upper).unwrap();
        let rec = Recorder::default();
        *rec.mounted.lock().unwrap() = 2;
        remove(&rec, "web-1-a", &paths).unwrap();
        remove(&rec, "web-1-a", &paths).unwrap();
        assert_eq!(rec.calls.lock().unwrap().len(), 4);
        assert!(!paths.upper.exists());
    }

    #[test]
    fn hostile_layer_paths_and_missing_layers_are_refused() {
        let paths = RootfsPaths::new(Path::new("/x"));
        let e = overlay_data("a", &[PathBuf::from("/l,upperdir=/etc")], &paths).unwrap_err();
        assert!(e.to_string().contains("overlay option syntax"), "{e}");
        assert!(overlay_data("a", &[], &paths).is_err());
        let e = mount(
            &Recorder::default(),
            "a",
            &[PathBuf::from("/nonexistent-layer")],
            &paths,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-layer does not exist"),
            "{e}"
        );
    }
}
