//! Per-app state on disk: the highest accepted seq (rollback protection), what is live, the
//! phase, the last error and a short history. Written atomically (temp + fsync + rename).

use serde::{Deserialize, Serialize};
use slipway_proto::api::Phase as WirePhase;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where an app's deploy stands on this host (finer than the wire's [`WirePhase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployPhase {
    Pulling,
    Starting,
    HealthChecking,
    Switching,
    Draining,
    Baking,
    Live,
    Failed,
    RolledBack,
    Superseded,
    Removing,
}

impl std::fmt::Display for DeployPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// A deploy phase with the reason a failed or rolled-back one carries, as reported to the
/// controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseReport {
    pub phase: DeployPhase,
    pub reason: String,
}

impl PhaseReport {
    pub fn new(phase: DeployPhase, reason: String) -> Self {
        Self { phase, reason }
    }
}

/// The wire phase of an agent phase: switching and draining count as baking; superseded and
/// removing are not reported (None).
impl From<PhaseReport> for Option<WirePhase> {
    fn from(r: PhaseReport) -> Self {
        Some(match r.phase {
            DeployPhase::Pulling => WirePhase::Pulling,
            DeployPhase::Starting => WirePhase::Starting,
            DeployPhase::HealthChecking => WirePhase::HealthChecking,
            DeployPhase::Switching | DeployPhase::Draining | DeployPhase::Baking => {
                WirePhase::Baking
            }
            DeployPhase::Live => WirePhase::Live,
            DeployPhase::Failed => WirePhase::Failed { reason: r.reason },
            DeployPhase::RolledBack => WirePhase::RolledBack { reason: r.reason },
            DeployPhase::Superseded | DeployPhase::Removing => return None,
        })
    }
}

/// One deploy attempt, for the history shown by `slipway-agent status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRecord {
    pub seq: u64,
    pub image: String,
    pub container: slipway_proto::ContainerId,
    #[serde(with = "humantime_serde")]
    pub started: SystemTime,
    #[serde(with = "humantime_serde", default)]
    pub finished: Option<SystemTime>,
    pub outcome: DeployPhase,
    #[serde(default)]
    pub error: Option<String>,
    /// Milliseconds from release seen to new container serving, when it went live.
    #[serde(default)]
    pub swap_ms: Option<u64>,
}

/// What the agent knows about one app.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AppState {
    /// Highest seq that passed verification and was accepted for this app.
    pub accepted_seq: u64,
    /// sha256 of the accepted envelope, to tell the same file from a replay.
    pub accepted_envelope: String,
    /// Seq and container routed now.
    pub live_seq: Option<u64>,
    pub live_container: Option<slipway_proto::ContainerId>,
    pub live_image: Option<String>,
    /// A release that failed; it is not retried until a newer one arrives.
    #[serde(default)]
    pub failed_seq: Option<u64>,
    /// Recently accepted releases by seq (verified when accepted), to map containers back.
    #[serde(default)]
    pub releases: BTreeMap<u64, slipway_proto::Release>,
    pub phase: Option<DeployPhase>,
    pub last_error: Option<String>,
    pub history: VecDeque<DeployRecord>,
}

/// The state file of all apps, `<state_dir>/apps.json`.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    pub apps: BTreeMap<String, AppState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

impl StateFile {
    /// Loads `<dir>/apps.json`; a corrupt file is moved aside (never silently emptied) and
    /// reported as an error, since rollback protection depends on it.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join("apps.json");
        let io = |e: std::io::Error| StateError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let apps = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
                path: path.clone(),
                reason: format!("corrupt ({e}); refusing to start without rollback protection — inspect or remove it"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self { path, apps })
    }

    pub fn app(&mut self, name: &str) -> &mut AppState {
        self.apps.entry(name.to_string()).or_default()
    }

    /// Writes the file atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(&self.apps).expect("state serializes");
        write_atomic(&self.path, &bytes).map_err(|e| StateError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// temp + fsync + rename + fsync(dir): a reader sees the old bytes or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl AppState {
    /// Adds a record, keeping the newest `max`.
    pub fn record(&mut self, rec: DeployRecord, max: usize) {
        self.history.push_front(rec);
        self.history.truncate(max);
    }

    /// Keeps the newest `keep` releases plus the live one.
    pub fn prune_releases(&mut self, keep: usize) {
        let live = self.live_seq;
        let mut seqs: Vec<u64> = self.releases.keys().copied().collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        for s in seqs.into_iter().skip(keep) {
            if Some(s) != live {
                self.releases.remove(&s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_phases_on_the_wire() {
        let wire = |p, r: &str| Option::<WirePhase>::from(PhaseReport::new(p, r.into()));
        assert_eq!(wire(DeployPhase::Draining, ""), Some(WirePhase::Baking));
        assert_eq!(
            wire(DeployPhase::RolledBack, "5xx"),
            Some(WirePhase::RolledBack {
                reason: "5xx".into()
            })
        );
        assert_eq!(wire(DeployPhase::Superseded, ""), None);
    }

    #[test]
    fn round_trip_and_corrupt_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateFile::load(dir.path()).unwrap();
        s.app("web").accepted_seq = 4;
        s.save().unwrap();
        let s2 = StateFile::load(dir.path()).unwrap();
        assert_eq!(s2.apps["web"].accepted_seq, 4);
        std::fs::write(dir.path().join("apps.json"), b"{not json").unwrap();
        let e = StateFile::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        // The corrupt bytes are still there for the operator.
        assert_eq!(
            std::fs::read(dir.path().join("apps.json")).unwrap(),
            b"{not json"
        );
    }
}
