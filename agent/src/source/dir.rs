//! Directory source: `<dir>/<app>.json` holds the signed release of `<app>`; deleting the file
//! removes the app. Files are re-read at once when inotify reports a change ([`DirWatch`]) and
//! on a short poll; partial writes are tolerated because a half-written file fails
//! verification and changes nothing (write with rename to be clean).

use super::Desired;
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

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

/// Wakes the reconciler as soon as a file in the release directory is written, renamed or
/// removed, so a release takes effect without waiting for the next poll. A thread blocks on
/// the inotify fd (no unsafe fd registration) and coalesces events into one wake-up.
pub struct DirWatch {
    rx: mpsc::Receiver<()>,
}

impl DirWatch {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let fd = inotify::init(CreateFlags::CLOEXEC)?;
        let events = WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF;
        inotify::add_watch(&fd, dir, events)?;
        let (tx, rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("release-dir-watch".into())
            .spawn(move || watch(fd, tx))?;
        Ok(Self { rx })
    }

    /// Resolves at the next change (at once if one came since the last call). Events are read
    /// before the wake-up is sent, so a read of the directory after this sees the change.
    pub async fn changed(&mut self) -> std::io::Result<()> {
        match self.rx.recv().await {
            Some(()) => Ok(()),
            None => Err(std::io::Error::other("the inotify watch stopped")),
        }
    }
}

fn watch(fd: OwnedFd, tx: mpsc::Sender<()>) {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(_) => match tx.try_send(()) {
                // Full: a wake-up is already pending, which covers this change too.
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            },
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "release directory watch failed; polling only");
                return;
            }
        }
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

    #[tokio::test]
    async fn a_renamed_release_file_wakes_the_watch() {
        let d = tempfile::tempdir().unwrap();
        let mut w = DirWatch::new(d.path()).unwrap();
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), w.changed());
        assert!(quiet.await.is_err(), "no change, no wake-up");
        std::fs::write(d.path().join(".web.json.tmp"), b"{}").unwrap();
        std::fs::rename(d.path().join(".web.json.tmp"), d.path().join("web.json")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
            .await
            .expect("woken by the rename")
            .unwrap();
    }
}
