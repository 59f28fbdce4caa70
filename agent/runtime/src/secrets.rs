//! A container's secrets on the host. They come in memory from the agent, and are written
//! only to a tmpfs of the container's own, `<secrets_dir>/<id>` (mode 0700, `noswap` where
//! the kernel has it): its `config.json` (which holds the secret env values, so the bundle
//! of such a container lives there, not in the state dir) and the secret files, each
//! bind-mounted read-only into the container. The tmpfs is unmounted and removed with the
//! container, and by adoption when a crash left it behind. Debug output names secrets only.

use crate::bundle::Bind;
use crate::error::{io, RuntimeError};
use crate::rootfs::Mounter;
use std::fmt;
use std::path::{Path, PathBuf};
pub use zeroize::Zeroizing;

/// Name of the dir on the tmpfs that holds the secret files.
const FILES: &str = "files";

/// An env variable whose value is a secret.
pub struct SecretEnv {
    /// The variable, e.g. `DB_PASSWORD`.
    pub var: String,
    /// The secret's name, for error messages.
    pub name: String,
    pub value: Zeroizing<Vec<u8>>,
}

/// A secret mounted read-only as a file in the container.
pub struct SecretMount {
    pub name: String,
    /// Absolute path inside the container (checked when the spec was parsed).
    pub path: PathBuf,
    /// Permission bits of the file; it is owned by the container's user.
    pub mode: u32,
    pub value: Zeroizing<Vec<u8>>,
}

/// The opened secrets one container starts with; empty for most containers.
#[derive(Default)]
pub struct ContainerSecrets {
    pub env: Vec<SecretEnv>,
    pub files: Vec<SecretMount>,
}

impl fmt::Debug for ContainerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSecrets")
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|e| format!("{}<-{}", e.var, e.name))
                    .collect::<Vec<_>>(),
            )
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|m| format!("{}<-{}", m.path.display(), m.name))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ContainerSecrets {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }

    /// `VAR=value` entries for the container's process. A value that is not UTF-8 or holds a
    /// NUL byte cannot be an env value: refused, naming the secret (never the value).
    pub(crate) fn env_entries(&self, id: &str) -> Result<Vec<Zeroizing<String>>, RuntimeError> {
        self.env
            .iter()
            .map(|e| {
                let bad = |reason: &str| RuntimeError::Secret {
                    id: id.to_string(),
                    name: e.name.clone(),
                    reason: format!("cannot be the value of env variable {}: {reason}", e.var),
                };
                let text = std::str::from_utf8(&e.value).map_err(|_| bad("it is not UTF-8"))?;
                if text.contains('\0') {
                    return Err(bad("it holds a NUL byte"));
                }
                Ok(Zeroizing::new(format!("{}={text}", e.var)))
            })
            .collect()
    }

    /// Where each secret file is bound from (on the tmpfs at `dir`) and to.
    pub(crate) fn binds(&self, dir: &Path) -> Vec<Bind> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, m)| Bind {
                source: file_path(dir, i, &m.name),
                destination: m.path.clone(),
                read_only: true,
            })
            .collect()
    }

    /// Writes the secret files onto the tmpfs at `dir`, owned by the container's user.
    pub(crate) fn write_files(&self, dir: &Path, uid: u32, gid: u32) -> Result<(), RuntimeError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let files = dir.join(FILES);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&files)
            .map_err(io(&files, "create secrets dir"))?;
        for (i, m) in self.files.iter().enumerate() {
            let path = file_path(dir, i, &m.name);
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&m.value)?;
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
                // Set after the chown, which clears no bits here but would clear set-id ones.
                f.set_permissions(std::fs::Permissions::from_mode(m.mode))
            };
            write().map_err(io(&path, "write secret file"))?;
        }
        Ok(())
    }
}

fn file_path(dir: &Path, i: usize, name: &str) -> PathBuf {
    dir.join(FILES).join(format!("{i}-{name}"))
}

/// Mounts a fresh tmpfs at `dir` (made 0700 first): RAM only, never the state dir's disk.
pub(crate) fn mount_tmpfs(m: &dyn Mounter, id: &str, dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io(dir, "create secrets mount point"))?;
    let data = format!("mode=0700,{}", crate::defaults::SECRETS_TMPFS_SIZE);
    // `noswap` (Linux 6.4+) keeps the pages out of swap; older kernels refuse the option.
    let done = m
        .mount_tmpfs(dir, &format!("{data},noswap"))
        .or_else(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::EINVAL as i32 => {
                tracing::warn!(container = %id, "this kernel has no tmpfs noswap: secret pages may be swapped out");
                m.mount_tmpfs(dir, &data)
            }
            _ => Err(e),
        });
    done.map_err(|e| RuntimeError::SecretsTmpfs {
        id: id.to_string(),
        reason: format!("cannot mount a tmpfs at {}: {e}", dir.display()),
    })
}

/// Unmounts the tmpfs at `dir` (if mounted) and removes the dir. Idempotent.
pub(crate) fn remove(m: &dyn Mounter, id: &str, dir: &Path) -> Result<(), RuntimeError> {
    for _ in 0..8 {
        match m.unmount(dir) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                return Err(RuntimeError::SecretsTmpfs {
                    id: id.to_string(),
                    reason: format!("cannot unmount {}: {e}", dir.display()),
                })
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir, "remove")(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(value: &[u8]) -> ContainerSecrets {
        ContainerSecrets {
            env: vec![SecretEnv {
                var: "DB".into(),
                name: "db".into(),
                value: Zeroizing::new(value.to_vec()),
            }],
            files: vec![SecretMount {
                name: "tls".into(),
                path: "/run/secrets/tls.key".into(),
                mode: 0o440,
                value: Zeroizing::new(b"key-bytes".to_vec()),
            }],
        }
    }

    #[test]
    fn debug_and_errors_name_secrets_never_values() {
        let s = secrets(b"pa55\0word");
        let dbg = format!("{s:?}");
        assert!(
            dbg.contains("DB<-db") && dbg.contains("tls.key<-tls"),
            "{dbg}"
        );
        assert!(!dbg.contains("pa55") && !dbg.contains("key-bytes"), "{dbg}");
        let e = s.env_entries("web-1-0123456789ab").unwrap_err().to_string();
        assert!(e.contains("`db`") && e.contains("NUL"), "{e}");
        assert!(!e.contains("pa55"), "{e}");
        let e = secrets(&[0xff, 0xfe])
            .env_entries("web-1-0123456789ab")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let ok = secrets(b"pa55word").env_entries("x").unwrap();
        assert_eq!(ok[0].as_str(), "DB=pa55word");
    }

    #[test]
    fn files_get_their_mode_and_binds_are_read_only() {
        let d = tempfile::tempdir().unwrap();
        let s = secrets(b"v");
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        s.write_files(d.path(), uid, gid).unwrap();
        let binds = s.binds(d.path());
        assert_eq!(binds.len(), 1);
        assert!(binds[0].read_only);
        assert_eq!(binds[0].destination, Path::new("/run/secrets/tls.key"));
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&binds[0].source).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o440);
        assert_eq!(std::fs::read(&binds[0].source).unwrap(), b"key-bytes");
    }
}
