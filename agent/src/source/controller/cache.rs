//! The desired set kept on disk: loaded at start, written atomically on every new set.

use super::CACHE_FILE;
use anyhow::Context;
use slipway_proto::api::DesiredSetBody;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

/// Loads the cached set; a cache that does not parse is moved aside and ignored (loudly).
pub(super) fn load_cache(path: &Path) -> Option<DesiredSetBody> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the cached desired set");
            return None;
        }
    };
    match serde_json::from_slice::<DesiredSetBody>(&bytes) {
        Ok(b) => Some(b),
        Err(e) => {
            let aside = path.with_extension(format!(
                "corrupt-{}",
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ));
            let _ = std::fs::rename(path, &aside);
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                error = %e,
                "cached desired set is corrupt; moved aside, waiting for the controller"
            );
            None
        }
    }
}

/// Writes the set atomically: temp file, fsync, rename, fsync of the directory.
pub(super) fn save_cache(dir: &Path, body: &DesiredSetBody) -> anyhow::Result<()> {
    let path = dir.join(CACHE_FILE);
    let tmp = dir.join(format!(".{CACHE_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(body).expect("desired set serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing the desired set cache {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn corrupt_cache_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(CACHE_FILE);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(load_cache(&p).is_none());
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let body = DesiredSetBody {
            version: "v".into(),
            releases: BTreeMap::new(),
            ..Default::default()
        };
        save_cache(d.path(), &body).unwrap();
        assert_eq!(load_cache(&p), Some(body));
    }
}
