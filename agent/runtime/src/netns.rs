//! Named network namespaces under `/run/netns`, made and removed in-process the way
//! `ip netns add|delete` does (same files, same mounts, so `ip netns exec` and CNI see them),
//! without a process per container. A new namespace gets its `lo` up here too, so no
//! `loopback` plugin runs.

use crate::error::NetworkError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Directory of the named network namespaces (`ip netns`).
pub const NETNS_DIR: &str = "/run/netns";

/// Creates the named netns with `lo` up; an existing one of that name is an error.
pub async fn add(name: &str) -> Result<(), NetworkError> {
    let fail = |reason: String| NetworkError::Netns {
        name: name.into(),
        action: "create",
        reason,
    };
    let path = Path::new(NETNS_DIR).join(name);
    shared_run_dir().map_err(|e| fail(format!("{NETNS_DIR}: {e}")))?;
    // The mount point: an empty file, like `ip netns add` makes (mode 0).
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, which
    // ends right after, so no pooled worker is left in the new namespace.
    let target = path.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-add".into())
        .spawn(move || {
            let r = (|| -> Result<(), String> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| format!("bind mount: {e}"))?;
                loopback_up().map_err(|e| format!("bringing lo up: {e}"))
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
    let r = rx
        .await
        .unwrap_or_else(|_| Err("the namespace thread died".into()));
    if let Err(reason) = r {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
        return Err(fail(reason));
    }
    Ok(())
}

/// Deletes the named netns; succeeds when it does not exist. (The namespace itself ends
/// when nothing else holds it: a process in it, or an open fd.)
pub async fn del(name: &str) -> Result<(), NetworkError> {
    let path = Path::new(NETNS_DIR).join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    let fail = |reason: String| NetworkError::Netns {
        name: name.into(),
        action: "delete",
        reason,
    };
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a crash between the file and the mount).
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(fail(format!("unmount {}: {e}", path.display()))),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(format!("remove {}: {e}", path.display()))),
    }
}

/// `/run/netns` as a shared mount (bind-mounted onto itself first when it is not a mount
/// point), as `ip` makes it: a namespace's mount copied into a container's mount namespace
/// then goes away with the host's, so a deleted netns is really freed.
fn shared_run_dir() -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(NETNS_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            Ok(shared()?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `lo` of the calling thread's network namespace up (which gives it 127.0.0.1 and ::1).
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // Any socket of the namespace will do for the interface ioctls.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is plain data, zeroed is a valid value; the name is NUL-terminated
    // within IFNAMSIZ; both ioctls read and write only that struct, on a socket we own.
    #[allow(unsafe_code)]
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[tokio::test]
    async fn a_namespace_is_made_with_lo_up_and_deleted() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let name = format!("slipway-test-{}", std::process::id());
        add(&name).await.unwrap();
        let out = std::process::Command::new("ip")
            .args(["-n", &name, "-o", "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("127.0.0.1"), "lo has no address: {text}");
        let err = add(&name).await.unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("exists"), "{err}");
        del(&name).await.unwrap();
        assert!(!Path::new(NETNS_DIR).join(&name).exists());
        del(&name).await.unwrap();
    }
}
