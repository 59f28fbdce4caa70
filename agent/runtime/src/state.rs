//! Per-container records under the state dir, written atomically (temp + fsync + rename) so a
//! crash leaves either the old record or the new one, never half of either.

use crate::error::{io, RuntimeError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of the record inside a container's dir.
pub const RECORD: &str = "state.json";

/// How far a container got; written *before* each step so a crash is always cleaned up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordPhase {
    /// Dir, rootfs, netns or `runc create` in progress; nothing has run yet.
    Preparing,
    /// `runc create` done, pid known; `runc start` may or may not have run.
    Created,
    /// `runc start` done: the process is (or was) running.
    Started,
    /// Discard in progress.
    Discarding,
    /// Gone; the record (and recent logs) stay as a tombstone so the id is never reused.
    Discarded,
}

/// What the agent knows about one container, on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub id: slipway_proto::ContainerId,
    pub app: slipway_proto::AppName,
    pub seq: u64,
    pub image: String,
    pub phase: RecordPhase,
    /// Name under `/run/netns`.
    pub netns: String,
    pub address: Option<IpAddr>,
    pub pid: Option<i32>,
    /// Milliseconds between SIGTERM and SIGKILL when discarded.
    pub stop_grace_ms: u64,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    /// The CNI network config ADD was (or is about to be) called with; DEL gets the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netconf: Option<serde_json::Value>,
    /// Signal that asks the process to stop (the image's STOPSIGNAL), for `runc kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The container id CNI knows it by (its netns name: unique on the machine even when
    /// several agents run one release); `None` in records older than this field: the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_id: Option<String>,
    /// Named volumes the container mounts: `volume rm` refuses while it is not discarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

/// How hard [`write_atomic`] works to make a write survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Temp file + rename: atomic against process crashes, nothing more (for files that die
    /// with the container anyway, like `config.json`).
    Atomic,
    /// Also fsyncs the file before the rename: the new content or the old one, never a torn
    /// file. Losing the rename itself leaves the previous record, an older valid state.
    Synced,
    /// Also fsyncs the directory: the rename itself is durable (a new file in a new dir).
    SyncedDir,
}

/// Writes `bytes` to `path` atomically: temp file in the same dir, fsync, rename (fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<(), RuntimeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp, "create"))?;
    f.write_all(bytes).map_err(io(&tmp, "write"))?;
    if durability != Durability::Atomic {
        f.sync_data().map_err(io(&tmp, "fsync"))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path, "rename into place"))?;
    if durability == Durability::SyncedDir {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir, "fsync dir"))?;
    }
    Ok(())
}

impl Record {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(RECORD)
    }

    /// Replaces the record in `dir/state.json` (fsynced; see [`Durability::Synced`]).
    pub fn save(&self, dir: &Path) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec_pretty(self).expect("record serializes");
        write_atomic(&Self::path(dir), &bytes, Durability::Synced)
    }

    /// Writes the first record of a new container dir, durably.
    pub fn save_new(&self, dir: &Path) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec_pretty(self).expect("record serializes");
        write_atomic(&Self::path(dir), &bytes, Durability::SyncedDir)
    }

    /// Loads `dir/state.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, RuntimeError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RuntimeError::CorruptState {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, "read")(e)),
        }
    }
}

/// Container dirs under the state dir (skips `_ipam` and other names that are not ids).
pub fn container_dirs(state_dir: &Path) -> Result<Vec<(String, PathBuf)>, RuntimeError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(state_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(state_dir, "list")(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io(state_dir, "list"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if crate::container::check_id(&name).is_ok() && entry.path().is_dir() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            id: "web-1-0123456789ab".parse().unwrap(),
            app: "web".parse().unwrap(),
            seq: 1,
            image: "r/web@sha256:00".into(),
            phase: RecordPhase::Preparing,
            netns: "slipway-web-1-0123456789ab".into(),
            address: None,
            pid: None,
            stop_grace_ms: 10_000,
            created_at: SystemTime::UNIX_EPOCH,
            started_at: None,
            exit_code: None,
            netconf: None,
            stop_signal: None,
            cni_id: None,
            volumes: Vec::new(),
        }
    }

    #[test]
    fn record_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record();
        r.save_new(dir.path()).unwrap();
        r.phase = RecordPhase::Started;
        r.pid = Some(42);
        r.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), Some(r));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(RECORD)]);
    }

    #[test]
    fn missing_record_is_none_and_corrupt_record_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(RECORD), b"{\"id\":").unwrap();
        let err = Record::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("corrupt"),
            "{err}"
        );
    }
}
