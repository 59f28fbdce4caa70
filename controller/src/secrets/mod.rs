//! Sealed secrets on the controller: the master key file that encrypts secret values at
//! rest, and (in `api::secrets`) the routes that set, list and remove them.

use anyhow::{bail, Context};
use slipway_proto::seal::MasterKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::store::Store;

mod seal;
pub use seal::{pin, seal_for_host};

/// Default file name of the master key inside `data_dir`.
pub const MASTER_KEY_FILE: &str = "secrets-master.key";

/// The label a value is bound to at rest: `app/name/version`.
pub fn at_rest_label(app: &str, name: &str, version: u64) -> String {
    format!("{app}/{name}/{version}")
}

/// Loads the master key, or makes one at 0600 when the file is absent. A key file readable
/// by group or others is refused.
pub fn load_or_create_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "secrets master key {} has mode {mode:o}: it must be 0600; fix it with \
                     chmod 600",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading secrets master key {}", path.display()))?;
            MasterKey::parse(&text)
                .with_context(|| format!("secrets master key {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate()?;
            write_master_key(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading secrets master key {}", path.display())),
    }
}

/// Writes `key` to `path` at 0600 through a temp file and a rename.
pub fn write_master_key(path: &Path, key: &MasterKey) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(key.to_base64().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing secrets master key {}", path.display()))
}

/// Re-encrypts every stored secret version under a new master key, then replaces the key
/// file. Run it with the controller stopped. Every version is opened with the old key first,
/// so a wrong key file changes nothing; the new key is written beside the old one
/// (`<file>.new`) before any row changes, so an interrupted rotation loses no key.
pub async fn rotate_master_key(store: &dyn Store, path: &Path) -> anyhow::Result<usize> {
    let old = load_or_create_master_key(path)?;
    let mut plain = Vec::new();
    for r in store.secret_versions(None).await? {
        let label = at_rest_label(&r.app, &r.name, r.version);
        let value = old.decrypt(&label, &r.value_enc).with_context(|| {
            format!(
                "secret `{}` v{} of app `{}` does not open with the master key {}; nothing \
                 was changed",
                r.name,
                r.version,
                r.app,
                path.display()
            )
        })?;
        plain.push((r, label, value));
    }
    let new = MasterKey::generate()?;
    let staged = path.with_extension("key.new");
    write_master_key(&staged, &new)?;
    for (r, label, value) in &plain {
        store
            .rewrap_secret(&r.app, &r.name, r.version, &new.encrypt(label, value)?)
            .await?;
    }
    std::fs::rename(&staged, path)
        .with_context(|| format!("replacing the master key {}", path.display()))?;
    Ok(plain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_made_at_0600_reused_and_refused_when_open_to_others() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(MASTER_KEY_FILE);
        let a = load_or_create_master_key(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = load_or_create_master_key(&p).unwrap();
        let sealed = a.encrypt("web/db/1", b"v").unwrap();
        assert_eq!(b.decrypt("web/db/1", &sealed).unwrap(), b"v");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = format!("{:#}", load_or_create_master_key(&p).unwrap_err());
        assert!(e.contains("has mode 640"), "{e}");
    }
}
