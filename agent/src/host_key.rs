//! The host's X25519 key pair for sealed secrets: made at first start, kept at 0600 in the
//! agent's state, the public half sent to the controller when the agent registers.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use slipway_proto::seal::HostSecretKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// File name of the private key inside the agent's controller state directory.
pub const HOST_KEY_FILE: &str = "host-secret.key";

/// Loads the host key from `dir`, or makes one (0600, written to a temp file and renamed).
/// A key file readable by group or others is refused: the key may have leaked.
pub fn load_or_create(dir: &Path) -> anyhow::Result<HostSecretKey> {
    let path = dir.join(HOST_KEY_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "host secret key {} has mode {mode:o}: it must be 0600 (readable by the \
                     agent alone); fix it with chmod 600, or delete it to make a new key",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading host secret key {}", path.display()))?;
            let raw = B64
                .decode(text.trim())
                .with_context(|| format!("host secret key {} is not base64", path.display()))?;
            HostSecretKey::from_bytes(&raw)
                .with_context(|| format!("host secret key {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(dir, &path),
        Err(e) => Err(e).with_context(|| format!("reading host secret key {}", path.display())),
    }
}

fn create(dir: &Path, path: &Path) -> anyhow::Result<HostSecretKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = HostSecretKey::generate().context("making the host secret key")?;
    let tmp = dir.join(format!(".{HOST_KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(B64.encode(key.to_bytes()).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing host secret key {}", path.display()))?;
    tracing::info!(path = %path.display(), public_key = %key.public().to_base64(), "made the host secret key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_at_0600_then_reused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("controller");
        let a = load_or_create(&dir).unwrap();
        let meta = std::fs::metadata(dir.join(HOST_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        load_or_create(d.path()).unwrap();
        let p = d.path().join(HOST_KEY_FILE);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = format!("{:#}", load_or_create(d.path()).unwrap_err());
        assert!(e.contains("has mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::write(&p, "not base64!").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = format!("{:#}", load_or_create(d.path()).unwrap_err());
        assert!(e.contains("is not base64"), "{e}");
    }
}
