//! The access log: one JSON line per request (time, app, host, method, path, status, bytes,
//! duration, upstream, request id), to stdout or a file. Requests hand their line to a writer
//! thread over a bounded channel and never wait on the disk: when the writer falls behind,
//! lines are dropped and counted. The file is rotated by size, and reopened on SIGHUP (for
//! logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tracing::{error, warn};

use crate::defaults;
use crate::error::ProxyError;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

/// The access log's destination and rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    /// Rotate the file once it grows past this many bytes (0: never; reopen on SIGHUP).
    pub max_bytes: u64,
    /// Rotated files kept (`access.log.1` newest).
    pub keep: usize,
}

impl AccessLogConfig {
    /// A file rotated at the default size.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        AccessLogConfig {
            target: AccessLogTarget::File(path.into()),
            max_bytes: defaults::ACCESS_LOG_MAX_BYTES,
            keep: defaults::ACCESS_LOG_KEEP,
        }
    }
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub(crate) struct Entry<'a> {
    pub time: String,
    pub app: Option<&'a str>,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub upstream: Option<&'a str>,
    pub request_id: &'a str,
}

/// What a request knows early, completed and written when its response ends.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) start: Instant,
    pub(crate) host: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) app: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) request_id: String,
    pub(crate) status: u16,
}

impl Pending {
    pub(crate) fn write(&self, log: &AccessLog, bytes: u64) {
        let e = Entry {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            app: self.app.as_deref(),
            host: &self.host,
            method: &self.method,
            path: &self.path,
            status: self.status,
            bytes,
            duration_ms: (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            upstream: self.upstream.as_deref(),
            request_id: &self.request_id,
        };
        log.record(&e);
    }
}

/// The sending side, shared by every request.
#[derive(Debug)]
pub(crate) struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Opens the destination and starts the writer thread.
    pub(crate) fn start(cfg: AccessLogConfig) -> Result<Arc<Self>, ProxyError> {
        let out = Output::open(&cfg)?;
        let (tx, rx) = mpsc::sync_channel(defaults::ACCESS_LOG_QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let r = reopen.clone();
        std::thread::Builder::new()
            .name("slipway-access-log".into())
            .spawn(move || writer(rx, out, cfg, r))
            .map_err(|e| ProxyError::AccessLog {
                path: "writer thread".into(),
                source: e,
            })?;
        Ok(Arc::new(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
            reopen,
        }))
    }

    pub(crate) fn record(&self, e: &Entry<'_>) {
        let mut line = serde_json::to_vec(e).expect("access log entries serialize");
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            let n = self.dropped.fetch_add(1, Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, "access log writer is behind; lines dropped");
            }
        }
    }

    /// Asks the writer to reopen its file (SIGHUP, after an external rotation).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }
}

enum Output {
    Stdout(io::Stdout),
    File {
        path: PathBuf,
        w: BufWriter<File>,
        size: u64,
    },
}

impl Output {
    fn open(cfg: &AccessLogConfig) -> Result<Output, ProxyError> {
        match &cfg.target {
            AccessLogTarget::Stdout => Ok(Output::Stdout(io::stdout())),
            AccessLogTarget::File(p) => open_file(p),
        }
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.write_all(line),
            Output::File { w, size, .. } => {
                *size += line.len() as u64;
                w.write_all(line)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File { w, .. } => w.flush(),
        }
    }
}

fn open_file(path: &Path) -> Result<Output, ProxyError> {
    let err = |source| ProxyError::AccessLog {
        path: path.to_owned(),
        source,
    };
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let size = f.metadata().map_err(err)?.len();
    Ok(Output::File {
        path: path.to_owned(),
        w: BufWriter::new(f),
        size,
    })
}

/// `access.log` -> `access.log.1` -> ... -> `access.log.{keep}` (the oldest goes).
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let nth = |i: usize| {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for i in (1..keep).rev() {
        let _ = std::fs::rename(nth(i), nth(i + 1));
    }
    std::fs::rename(path, nth(1))
}

fn writer(rx: Receiver<Vec<u8>>, mut out: Output, cfg: AccessLogConfig, reopen: Arc<AtomicBool>) {
    loop {
        let line = match rx.recv_timeout(defaults::ACCESS_LOG_FLUSH) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        };
        if let Some(l) = line {
            if let Err(e) = out.write(&l) {
                error!(error = %e, "access log write failed");
            }
            // Drain what is queued before flushing: one write syscall per burst.
            while let Ok(l) = rx.try_recv() {
                let _ = out.write(&l);
            }
        }
        let _ = out.flush();
        let (rotate_now, path) = match &out {
            Output::File { size, path, .. } => (
                cfg.max_bytes > 0 && *size >= cfg.max_bytes,
                Some(path.clone()),
            ),
            Output::Stdout(_) => (false, None),
        };
        let Some(path) = path else { continue };
        if rotate_now {
            if let Err(e) = rotate(&path, cfg.keep) {
                error!(path = %path.display(), error = %e, "access log rotation failed");
            }
        }
        if rotate_now || reopen.swap(false, Relaxed) {
            match open_file(&path) {
                Ok(o) => out = o,
                Err(e) => {
                    error!(error = %e, "access log reopen failed; still writing to the old file")
                }
            }
        }
    }
}
