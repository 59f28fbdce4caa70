//! A container's root: an overlay of the image's unpacked layer dirs (read-only lowers, base
//! layer at the bottom) with a private upper/work dir, mounted at `<container dir>/rootfs`.
//!
//! The kernel takes the overlay options as one page (4095 bytes): 128 layers of full store
//! paths would not fit. As Docker's overlay2 does, each layer gets a short symlink
//! `<container dir>/l/<n>`, and the mount runs with the container dir as its working
//! directory, so the options name `l/0`, `l/1`, ... (a thread of its own with an unshared
//! fs context does the `chdir`, leaving the agent's working directory alone).

use crate::error::RuntimeError;
use std::path::{Path, PathBuf};

/// Longest overlay option string the kernel accepts (one page).
const MAX_MOUNT_DATA: usize = 4095;

/// The mount system calls, behind a trait so the option logic is testable without root.
pub trait Mounter: Send + Sync {
    /// Mounts an overlay at `target` with option paths relative to `cwd`.
    fn mount_overlay(&self, target: &Path, cwd: &Path, data: &str) -> std::io::Result<()>;
    /// Mounts a tmpfs (nosuid, nodev, noexec) at `target` with options `data`.
    fn mount_tmpfs(&self, target: &Path, data: &str) -> std::io::Result<()>;
    /// Lazily detaches `target`; `Ok(false)` when nothing was mounted there.
    fn unmount(&self, target: &Path) -> std::io::Result<bool>;
}

/// Real mounts with `mount(2)` / `umount2(2)`.
pub struct SysMounter;

impl Mounter for SysMounter {
    fn mount_overlay(&self, target: &Path, cwd: &Path, data: &str) -> std::io::Result<()> {
        use nix::mount::{mount, MsFlags};
        let (target, cwd, data) = (target.to_path_buf(), cwd.to_path_buf(), data.to_string());
        // The working directory is per process; this thread gets its own (CLONE_FS) first.
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(&cwd)?;
            mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::MS_NODEV,
                Some(data.as_str()),
            )
        })
        .join()
        .map_err(|_| std::io::Error::other("mount thread panicked"))?
        .map_err(std::io::Error::from)
    }

    fn mount_tmpfs(&self, target: &Path, data: &str) -> std::io::Result<()> {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
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
    /// The container dir: the mount's working directory.
    pub dir: PathBuf,
    pub target: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Short symlinks to the layer dirs.
    pub links: PathBuf,
}

/// Names of the upper, work and links dirs inside the container dir (the overlay options
/// name them relative to it).
const UPPER: &str = "upper";
const WORK: &str = "work";
const LINKS: &str = "l";

impl RootfsPaths {
    pub fn new(container_dir: &Path) -> Self {
        Self {
            dir: container_dir.to_path_buf(),
            target: container_dir.join("rootfs"),
            upper: container_dir.join(UPPER),
            work: container_dir.join(WORK),
            links: container_dir.join(LINKS),
        }
    }
}

/// Short name of layer `i` (base layer 0): base 36, so 128 layers take 2 characters each.
fn link_name(i: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let (mut n, mut out) = (i, Vec::new());
    loop {
        out.push(DIGITS[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// The overlay mount data, paths relative to the container dir: `lowerdir` lists the top
/// layer first, so `layer_dirs` (base first) is reversed.
pub fn overlay_data(id: &str, layer_dirs: &[PathBuf]) -> Result<String, RuntimeError> {
    if layer_dirs.is_empty() {
        return Err(RuntimeError::Rootfs {
            id: id.into(),
            reason: "the image has no layers".into(),
        });
    }
    let lowers: Vec<String> = (0..layer_dirs.len())
        .rev()
        .map(|i| format!("{LINKS}/{}", link_name(i)))
        .collect();
    let data = format!(
        "lowerdir={},upperdir={UPPER},workdir={WORK}",
        lowers.join(":")
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
        if !d.is_absolute() || !d.is_dir() {
            return Err(RuntimeError::Rootfs {
                id: id.into(),
                reason: format!("layer dir {} does not exist", d.display()),
            });
        }
    }
    let data = overlay_data(id, layer_dirs)?;
    for d in [&paths.target, &paths.upper, &paths.work] {
        std::fs::create_dir_all(d).map_err(crate::error::io(d, "create dir"))?;
    }
    // A crash may have left links from an earlier try: make them afresh.
    let _ = std::fs::remove_dir_all(&paths.links);
    std::fs::create_dir(&paths.links).map_err(crate::error::io(&paths.links, "create dir"))?;
    for (i, d) in layer_dirs.iter().enumerate() {
        let link = paths.links.join(link_name(i));
        std::os::unix::fs::symlink(d, &link).map_err(crate::error::io(&link, "link layer"))?;
    }
    m.mount_overlay(&paths.target, &paths.dir, &data)
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
    for d in [&paths.target, &paths.upper, &paths.work, &paths.links] {
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
        fn mount_overlay(&self, target: &Path, cwd: &Path, data: &str) -> std::io::Result<()> {
            *self.mounted.lock().unwrap() += 1;
            self.calls.lock().unwrap().push(format!(
                "mount {} in {} {data}",
                target.display(),
                cwd.display()
            ));
            Ok(())
        }
        fn mount_tmpfs(&self, target: &Path, data: &str) -> std::io::Result<()> {
            *self.mounted.lock().unwrap() += 1;
            self.calls
                .lock()
                .unwrap()
                .push(format!("tmpfs {} {data}", target.display()));
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
                "mount {}/rootfs in {} lowerdir=l/1:l/0,upperdir=upper,workdir=work",
                c.display(),
                c.display(),
            )]
        );
        assert!(paths.upper.is_dir() && paths.work.is_dir());
        assert_eq!(std::fs::read_link(paths.links.join("0")).unwrap(), base);
        assert_eq!(std::fs::read_link(paths.links.join("1")).unwrap(), top);
    }

    #[test]
    fn many_layers_fit_one_page() {
        let dirs: Vec<PathBuf> = (0..500)
            .map(|i| PathBuf::from(format!("/var/lib/slipway/images/layers/sha256/{i:064}")))
            .collect();
        let data = overlay_data("a", &dirs[..128]).unwrap();
        assert!(data.len() <= 640, "{}", data.len());
        assert!(data.starts_with("lowerdir=l/3j:l/3i:"), "{data}");
        assert!(overlay_data("a", &dirs).unwrap().len() <= MAX_MOUNT_DATA);
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
        // A hostile path never reaches the option string: only the link names do.
        let data = overlay_data("a", &[PathBuf::from("/l,upperdir=/etc")]).unwrap();
        assert!(!data.contains("/etc"), "{data}");
        assert!(overlay_data("a", &[]).is_err());
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
