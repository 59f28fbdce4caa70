//! Garbage collection: remove blobs and layer dirs that none of the kept images needs.
//! The caller decides what to keep: the images of the last N releases per app
//! ([`crate::defaults::GC_KEEP_RELEASES_PER_APP`]) and of every running container.

use crate::defaults;
use crate::error::ImageError;
use crate::manifest::{self, Document};
use crate::store::Store;
use serde::Serialize;
use slipway_proto::Digest;
use std::collections::BTreeSet;
use std::path::Path;

/// What a GC run removed and kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub layers_removed: usize,
    pub tmp_removed: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
    pub layers_kept: usize,
}

impl Store {
    /// Removes every blob and layer dir not reachable from the manifests (or indexes) in
    /// `keep`, plus stale leftovers in `tmp/`. Waits for running pulls to finish first.
    pub fn gc(&self, keep: &[Digest]) -> Result<GcReport, ImageError> {
        let _lock = self.lock(true)?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for digest in keep {
            self.mark(digest, &mut blobs, &mut layers, 0)?;
        }
        let mut report = GcReport::default();
        for (dir, live, is_layer) in [
            (self.root().join("blobs/sha256"), &blobs, false),
            (self.root().join("layers"), &layers, true),
        ] {
            for entry in std::fs::read_dir(&dir).map_err(ImageError::io(&dir))? {
                let entry = entry.map_err(ImageError::io(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if live.contains(&name) {
                    if is_layer {
                        report.layers_kept += 1;
                    } else {
                        report.blobs_kept += 1;
                    }
                    continue;
                }
                let path = entry.path();
                report.bytes_freed += size_of(&path);
                remove(&path)?;
                if is_layer {
                    report.layers_removed += 1;
                } else {
                    report.blobs_removed += 1;
                }
            }
        }
        let tmp = self.tmp_dir();
        for entry in std::fs::read_dir(&tmp).map_err(ImageError::io(&tmp))? {
            let entry = entry.map_err(ImageError::io(&tmp))?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= defaults::GC_TMP_MIN_AGE);
            // With the exclusive lock no pull is running, but another process sharing the
            // store without the lock might be; young leftovers are left for the next run.
            if old {
                remove(&entry.path())?;
                report.tmp_removed += 1;
            }
        }
        tracing::info!(?report, "store gc");
        Ok(report)
    }

    /// Marks a manifest or index and everything it references. Missing blobs are fine
    /// (an index child for another platform was never pulled).
    fn mark(
        &self,
        digest: &Digest,
        blobs: &mut BTreeSet<String>,
        layers: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<(), ImageError> {
        let Some(bytes) = self.read_blob("manifest", digest, defaults::MAX_MANIFEST_BYTES)? else {
            return Ok(());
        };
        blobs.insert(digest.hex().to_string());
        match manifest::parse_document(digest, &bytes)? {
            Document::Index(entries) if depth == 0 => {
                for (child, _) in entries {
                    self.mark(&child.digest, blobs, layers, depth + 1)?;
                }
            }
            Document::Index(_) => {}
            Document::Manifest(m) => {
                blobs.insert(m.config.digest.hex().to_string());
                for (l, _) in &m.layers {
                    blobs.insert(l.digest.hex().to_string());
                }
                if let Some(config) =
                    self.read_blob("config", &m.config.digest, defaults::MAX_CONFIG_BYTES)?
                {
                    let (_, diff_ids) =
                        manifest::parse_config(&m.config.digest, &config, m.layers.len())?;
                    for d in diff_ids {
                        layers.insert(d.hex().to_string());
                    }
                }
            }
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), ImageError> {
    let meta = path.symlink_metadata().map_err(ImageError::io(path))?;
    let r = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    r.map_err(ImageError::io(path))
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}
