//! Container output: stdout and stderr go straight from the container to append-only files
//! in its dir (so output survives agent restarts), capped by copy-and-truncate rotation into
//! `<name>.1` as soon as they pass the cap ([`LogWatch`] wakes on every write burst, through
//! one [`LogWatcher`] per runtime), so a
//! stream never takes much more than twice the cap on disk.
//!
//! Each file has a write-time index beside it, `<name>.times`: lines of `<unix ms> <length>`
//! ("by then the file held that many bytes"), noted at most every
//! [`defaults::LOG_TIMES_GRAIN`] while it grows, so a reader can start at a time
//! ([`offset_since`]) although the output itself carries none.

use crate::defaults;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

pub const STDOUT: &str = "stdout.log";
pub const STDERR: &str = "stderr.log";
/// Suffix of a log's write-time index.
pub const TIMES: &str = ".times";

/// (stdout, stderr) log files of the container whose dir is `dir`.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(STDOUT), dir.join(STDERR))
}

/// `<path>` + `suffix`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The rotated copy of a log: `<name>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    with_suffix(path, ".1")
}

/// The write-time index of a log: `<name>.times`.
pub fn times(path: &Path) -> PathBuf {
    with_suffix(path, TIMES)
}

/// Opens a log file for the container to append to.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// When `path` is over `max` bytes: copy it to `<path>.1` (replacing the older copy, its
/// index with it) and truncate it. The writer appends (`O_APPEND`), so it carries on at the
/// new end; output written between copy and truncate is lost, as with logrotate's
/// copytruncate. Exactly the length seen is copied, so a fast writer cannot stretch the copy.
pub fn rotate(path: &Path, max: u64) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    let tmp = with_suffix(path, ".1.tmp");
    {
        let mut from = std::fs::File::open(path)?.take(len);
        let mut to = std::fs::File::create(&tmp)?;
        std::io::copy(&mut from, &mut to)?;
    }
    std::fs::rename(&tmp, rotated(path))?;
    match std::fs::rename(times(path), times(&rotated(path))) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_file(times(&rotated(path)));
        }
        r => r?,
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// Appends "by `at`, `path` held `len` bytes" to its index.
pub fn note_length(path: &Path, len: u64, at: SystemTime) -> std::io::Result<()> {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut f = open_append(&times(path))?;
    f.write_all(format!("{ms} {len}\n").as_bytes())
}

/// Where in `path` the output written at or after `since` starts: the length last noted
/// before `since` (0 when none was), so lines up to one grain older may be included.
pub fn offset_since(path: &Path, since: SystemTime) -> u64 {
    let since_ms = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let Ok(text) = std::fs::read_to_string(times(path)) else {
        return 0;
    };
    let mut offset = 0;
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(Ok(ms)), Some(Ok(len))) = (
            parts.next().map(str::parse::<u128>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if ms >= since_ms {
            break;
        }
        offset = len;
    }
    offset
}

/// When the index of `path` is over `max` bytes (a slow writer notes many lengths for
/// little output), keeps only its newer half: `--since` a time before what is left starts
/// at the beginning of the file.
pub fn trim_times(path: &Path, max: u64) -> std::io::Result<bool> {
    let index = times(path);
    if std::fs::metadata(&index).map_or(0, |m| m.len()) <= max {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&index)?;
    let lines: Vec<&str> = text.lines().collect();
    let keep = lines[lines.len() / 2..].join("\n") + "\n";
    let tmp = with_suffix(&index, ".tmp");
    std::fs::write(&tmp, keep)?;
    std::fs::rename(&tmp, &index)?;
    Ok(true)
}

/// Removes a container's log files (current and rotated) and their indexes.
pub fn remove(dir: &Path) {
    for name in [STDOUT, STDERR] {
        let log = dir.join(name);
        for p in [times(&rotated(&log)), rotated(&log), times(&log), log] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One inotify instance for every container of a runtime (the kernel allows a user only 128
/// instances by default), waking each container's [`LogWatch`] when its logs are written.
pub struct LogWatcher {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
    /// Watch descriptor -> the container watch it belongs to.
    subs: Mutex<HashMap<i32, Arc<Notify>>>,
}

impl LogWatcher {
    /// Starts the watcher and its dispatch task (in the current tokio runtime).
    pub fn start() -> std::io::Result<Arc<LogWatcher>> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open
        // and refers to this inotify instance until the AsyncFd is dropped.
        #[allow(unsafe_code)]
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)?;
        let w = Arc::new(LogWatcher {
            fd,
            subs: Mutex::default(),
        });
        tokio::spawn(w.clone().dispatch());
        Ok(w)
    }

    async fn dispatch(self: Arc<Self>) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return;
            };
            let mut events = rustix::fs::inotify::Reader::new(self.fd.get_ref(), &mut buf);
            let mut woken = Vec::new();
            while let Ok(ev) = events.next() {
                woken.push(ev.wd());
            }
            guard.clear_ready();
            let subs = self.subs.lock().unwrap();
            for wd in woken {
                if let Some(n) = subs.get(&wd) {
                    n.notify_one();
                }
            }
        }
    }

    /// Watches `paths` for writes, waking `notify`; the watch descriptors, to unsubscribe.
    fn subscribe(&self, paths: &[&Path], notify: &Arc<Notify>) -> std::io::Result<Vec<i32>> {
        use rustix::fs::inotify;
        let mut wds = Vec::new();
        for p in paths {
            match inotify::add_watch(self.fd.get_ref(), *p, inotify::WatchFlags::MODIFY) {
                Ok(wd) => {
                    self.subs.lock().unwrap().insert(wd, notify.clone());
                    wds.push(wd);
                }
                Err(e) => {
                    self.unsubscribe(&wds);
                    return Err(e.into());
                }
            }
        }
        Ok(wds)
    }

    fn unsubscribe(&self, wds: &[i32]) {
        let mut subs = self.subs.lock().unwrap();
        for wd in wds {
            subs.remove(wd);
            let _ = rustix::fs::inotify::remove_watch(self.fd.get_ref(), *wd);
        }
    }
}

/// Keeps one container's two logs under their cap and their indexes up to date. Woken by
/// the [`LogWatcher`] on writes; [`LogWatch::check`] also works without it.
pub struct LogWatch {
    max: u64,
    files: [Noted; 2],
    watcher: Option<(Arc<LogWatcher>, Vec<i32>)>,
    notify: Arc<Notify>,
}

/// One log and what its index last said.
struct Noted {
    path: PathBuf,
    len: u64,
    at: Option<std::time::Instant>,
}

impl LogWatch {
    /// Watches the logs in `dir` (which exist: the container was created with them).
    pub fn new(dir: &Path, max: u64, watcher: Option<Arc<LogWatcher>>) -> Self {
        let (out, err) = paths(dir);
        let notify = Arc::new(Notify::new());
        let watcher = watcher.and_then(|w| match w.subscribe(&[&out, &err], &notify) {
            Ok(wds) => Some((w, wds)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the logs for writes; checking them every second");
                None
            }
        });
        let noted = |path: PathBuf| Noted {
            path,
            len: 0,
            at: None,
        };
        Self {
            max,
            files: [noted(out), noted(err)],
            watcher,
            notify,
        }
    }

    /// Waits until a log was written to (forever when not watched).
    pub async fn written(&self) {
        if self.watcher.is_none() {
            return std::future::pending().await;
        }
        self.notify.notified().await
    }

    /// Rotates a log past the cap; notes lengths that changed (at most once a grain each).
    pub fn check(&mut self) {
        for f in &mut self.files {
            let len = match std::fs::metadata(&f.path) {
                Ok(m) => m.len(),
                Err(_) => continue,
            };
            if len > self.max {
                match rotate(&f.path, self.max) {
                    Ok(_) => {
                        f.len = 0;
                        f.at = None;
                    }
                    Err(e) => {
                        tracing::warn!(path = %f.path.display(), error = %e, "log rotation")
                    }
                }
                continue;
            }
            let due =
                f.at.is_none_or(|t| t.elapsed() >= defaults::LOG_TIMES_GRAIN);
            if len != f.len && due {
                if let Err(e) = note_length(&f.path, len, SystemTime::now()) {
                    tracing::warn!(path = %f.path.display(), error = %e, "noting the log's length");
                }
                f.len = len;
                f.at = Some(std::time::Instant::now());
                let index_max = (self.max / defaults::LOG_TIMES_SHARE).max(defaults::LOG_TIMES_MIN);
                if let Err(e) = trim_times(&f.path, index_max) {
                    tracing::warn!(path = %f.path.display(), error = %e, "trimming the log's index");
                }
            }
        }
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        if let Some((w, wds)) = &self.watcher {
            w.unsubscribe(wds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rotation_caps_the_file_and_keeps_one_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = paths(dir.path());
        let mut f = open_append(&out).unwrap();
        f.write_all(&[b'a'; 100]).unwrap();
        assert!(!rotate(&out, 100).unwrap());
        f.write_all(b"b").unwrap();
        note_length(&out, 101, SystemTime::now()).unwrap();
        assert!(rotate(&out, 100).unwrap());
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(dir.path().join("stdout.log.1"))
                .unwrap()
                .len(),
            101
        );
        assert!(dir.path().join("stdout.log.1.times").is_file());
        assert!(!dir.path().join("stdout.log.times").exists());
        // The writer keeps appending at the (new) end, not at its old offset.
        f.write_all(b"after").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"after");
        remove(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_index_gives_where_output_since_a_time_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = paths(dir.path());
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(offset_since(&out, t(5)), 0, "no index: everything");
        note_length(&out, 10, t(10)).unwrap();
        note_length(&out, 25, t(20)).unwrap();
        assert_eq!(offset_since(&out, t(5)), 0);
        assert_eq!(
            offset_since(&out, t(10)),
            0,
            "noted at `since`: not before it"
        );
        assert_eq!(offset_since(&out, t(15)), 10);
        assert_eq!(offset_since(&out, t(30)), 25);

        // A long index keeps its newer half: older times start at the file's start.
        for i in 0..100u64 {
            note_length(&out, 100 + i, t(100 + i)).unwrap();
        }
        assert!(trim_times(&out, 512).unwrap());
        assert!(std::fs::metadata(times(&out)).unwrap().len() <= 1024);
        assert_eq!(offset_since(&out, t(30)), 0);
        assert_eq!(offset_since(&out, t(190)), 189);
    }
}
