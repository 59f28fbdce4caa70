//! The on-disk store: `blobs/sha256/<hex>` (verified blobs), `layers/<diff_id hex>/`
//! (unpacked layers, complete ones only) and `tmp/` (work in progress). Everything enters
//! its final name by `rename` after it was verified; nothing under `blobs/` or `layers/` is
//! modified afterwards.

use crate::error::ImageError;
use crate::manifest::{self, Document};
use crate::pull::{PullReport, PulledImage};
use slipway_proto::{Digest, ImageRef};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode of the store root and its `blobs/`, `layers/` and `tmp/` directories: root only.
pub const STORE_DIR_MODE: u32 = 0o700;

/// An image store rooted at one directory. Cheap to clone the path; open once per process.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while a pull (shared) or GC (exclusive) works on the store.
pub(crate) struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. The store's own directories are
    /// 0700: an unpacked layer holds the image's setuid binaries, which a local user must
    /// not be able to reach and run outside the container.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for sub in ["blobs/sha256", "layers", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(ImageError::io(&p))?;
        }
        // Also on stores made by older versions (0755).
        for sub in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
            let p = root.join(sub);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(STORE_DIR_MODE))
                .map_err(ImageError::io(&p))?;
        }
        let root = root.canonicalize().map_err(ImageError::io(root))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives once verified.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Where the unpacked layer with `diff_id` lives once complete.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// Takes the store lock: shared for pulls, exclusive for GC. Blocks until granted.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io(&path))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|e| ImageError::io(&path)(e.into()))?;
        Ok(StoreLock { _file: file })
    }

    /// Reads a stored blob, re-checking its digest and size cap. `Ok(None)` if absent.
    pub(crate) fn read_blob(
        &self,
        kind: &'static str,
        digest: &Digest,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ImageError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(ImageError::io(&path))?;
        if bytes.len() as u64 > max {
            return Err(ImageError::Corrupt {
                path,
                reason: format!("{kind} {digest} is larger than {max} bytes"),
            });
        }
        let seen = Digest::of(&bytes);
        if &seen != digest {
            return Err(ImageError::Corrupt {
                path,
                reason: format!(
                    "{kind} {digest} on disk hashes to {seen}; delete it and pull again"
                ),
            });
        }
        Ok(Some(bytes))
    }

    /// Stores small verified bytes (manifest, config) under their digest: temp, fsync, rename.
    pub(crate) fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        debug_assert_eq!(&Digest::of(bytes), digest);
        let mut tmp = self.temp_file("blob", digest)?;
        tmp.write_all(bytes).map_err(ImageError::io(tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(ImageError::io(tmp.path()))?;
        self.commit_blob(tmp, digest)
    }

    /// A temp file in `tmp/`, removed on drop unless committed.
    pub(crate) fn temp_file(
        &self,
        what: &str,
        digest: &Digest,
    ) -> Result<tempfile::NamedTempFile, ImageError> {
        tempfile::Builder::new()
            .prefix(&format!("{what}-{}-", digest.short()))
            .tempfile_in(self.tmp_dir())
            .map_err(ImageError::io(self.tmp_dir()))
    }

    /// A temp dir in `tmp/`, removed (recursively) on drop unless committed.
    pub(crate) fn temp_dir(&self, diff_id: &Digest) -> Result<tempfile::TempDir, ImageError> {
        tempfile::Builder::new()
            .prefix(&format!("layer-{}-", diff_id.short()))
            .tempdir_in(self.tmp_dir())
            .map_err(ImageError::io(self.tmp_dir()))
    }

    /// Renames a verified temp file to `blobs/sha256/<hex>`.
    pub(crate) fn commit_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<(), ImageError> {
        let dest = self.blob_path(digest);
        tmp.persist(&dest)
            .map_err(|e| ImageError::io(&dest)(e.error))?;
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// Renames a fully unpacked temp dir to `layers/<diff_id hex>`. If another pull got there
    /// first, theirs is kept (same verified content) and ours removed.
    /// `entries`: how many entries the layer unpacked to.
    pub(crate) fn commit_layer(
        &self,
        tmp: tempfile::TempDir,
        diff_id: &Digest,
        entries: u64,
    ) -> Result<(), ImageError> {
        let dest = self.layer_path(diff_id);
        // Every file of the layer is durable before it gets its final name. A small layer
        // (an app's own files on a shared base) is synced file by file: a syncfs would also
        // write out whatever else is dirty on the filesystem, which on a busy host (logs,
        // other writers) takes far longer. A big one gets one syncfs, far cheaper than an
        // fsync per file.
        let t = std::time::Instant::now();
        if entries <= crate::defaults::FSYNC_EACH_MAX_ENTRIES {
            sync_tree(tmp.path())?;
        } else {
            let dir = File::open(tmp.path()).map_err(ImageError::io(tmp.path()))?;
            rustix::fs::syncfs(&dir).map_err(|e| ImageError::io(tmp.path())(e.into()))?;
        }
        tracing::debug!(layer = %diff_id, entries, ms = t.elapsed().as_millis() as u64, "layer synced");
        match std::fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                let _ = tmp.keep();
                sync_dir(&self.root.join("layers"))
            }
            Err(_) if dest.is_dir() => Ok(()), // `tmp` drops and is removed
            Err(e) => Err(ImageError::io(&dest)(e)),
        }
    }

    /// Loads a pulled image from disk only (no network), re-verifying manifest and config
    /// digests. `Ok(None)` if any part is missing.
    pub fn load(&self, image: &ImageRef) -> Result<Option<PulledImage>, ImageError> {
        let Some(bytes) = self.read_blob(
            "manifest",
            &image.digest,
            crate::defaults::MAX_MANIFEST_BYTES,
        )?
        else {
            return Ok(None);
        };
        let (manifest_digest, manifest) = match manifest::parse_document(&image.digest, &bytes)? {
            Document::Manifest(m) => (image.digest.clone(), m),
            Document::Index(entries) => {
                let child = manifest::select_platform(&image.digest, &entries)?;
                let Some(bytes) = self.read_blob(
                    "manifest",
                    &child.digest,
                    crate::defaults::MAX_MANIFEST_BYTES,
                )?
                else {
                    return Ok(None);
                };
                match manifest::parse_document(&child.digest, &bytes)? {
                    Document::Manifest(m) => (child.digest, m),
                    Document::Index(_) => {
                        return Err(ImageError::Rejected {
                            kind: "manifest",
                            digest: child.digest,
                            reason: "nested index".into(),
                        })
                    }
                }
            }
        };
        let Some(config_bytes) = self.read_blob(
            "config",
            &manifest.config.digest,
            crate::defaults::MAX_CONFIG_BYTES,
        )?
        else {
            return Ok(None);
        };
        let (config, diff_ids) = manifest::parse_config(
            &manifest.config.digest,
            &config_bytes,
            manifest.layers.len(),
        )?;
        let mut layer_dirs = Vec::new();
        for diff_id in &diff_ids {
            if !self.has_layer(diff_id) {
                return Ok(None);
            }
            layer_dirs.push(self.layer_path(diff_id));
        }
        Ok(Some(PulledImage {
            image: image.clone(),
            manifest_digest,
            config,
            layer_dirs,
            report: PullReport::all_cached(&manifest, &diff_ids),
        }))
    }
}

/// fsyncs every regular file and directory under `root` (symlinks and others need none:
/// their directory entry is synced with the directory).
fn sync_tree(root: &Path) -> Result<(), ImageError> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io(&dir))? {
            let entry = entry.map_err(ImageError::io(&dir))?;
            let kind = entry.file_type().map_err(ImageError::io(entry.path()))?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(ImageError::io(&path))?;
            }
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io(dir))
}
