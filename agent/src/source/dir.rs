//! Directory source: `<dir>/<app>.json` holds the signed release of `<app>`; deleting the file
//! removes the app. Files are re-read on a short poll; partial writes are tolerated because a
//! half-written file fails verification and changes nothing (write with rename to be clean).

use super::Desired;
use std::path::{Path, PathBuf};

/// Largest release file read; a release is a few KiB.
pub const MAX_RELEASE_FILE: u64 = 1 << 20;

pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every `*.json` file (not hidden, not larger than [`MAX_RELEASE_FILE`]).
    /// A missing directory is an empty desired set only if `allow_missing`; otherwise an error,
    /// so a typo in the config never removes every app.
    pub fn read(&self) -> std::io::Result<Desired> {
        let mut out = Desired::default();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(app) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') || app.is_empty() {
                continue;
            }
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let bytes = if meta.len() > MAX_RELEASE_FILE {
                // Oversized: keep the app present (nothing removed) with bytes that fail verification.
                format!(
                    "release file {} is {} bytes, over the {} limit",
                    name,
                    meta.len(),
                    MAX_RELEASE_FILE
                )
                .into_bytes()
            } else {
                match std::fs::read(entry.path()) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            out.releases.insert(app.to_string(), bytes);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_files_by_app() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("web.json"), b"{}").unwrap();
        std::fs::write(d.path().join(".web.json.tmp"), b"x").unwrap();
        std::fs::write(d.path().join("notes.txt"), b"x").unwrap();
        let s = DirSource::new(d.path()).read().unwrap();
        assert_eq!(s.releases.keys().collect::<Vec<_>>(), vec!["web"]);
        assert!(DirSource::new(d.path().join("missing")).read().is_err());
    }
}
