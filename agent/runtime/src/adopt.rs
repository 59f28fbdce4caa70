//! After the agent (re)starts: find every container in the state dir and the runc root,
//! keep the running ones that belong to known releases, finish or undo anything half-made,
//! and remove secrets tmpfs mounts that no container owns.
//! A healthy container is never stopped because the agent restarted.

use crate::container::ContainerInfo;
use crate::error::{io, RuntimeError};
use crate::rootfs::{self, RootfsPaths};
use crate::state::{Record, RecordPhase};
use crate::Runtime;
use std::time::{Duration, SystemTime};

/// What [`Runtime::adopt`] found and did, by container id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptReport {
    /// Running containers of known releases, now supervised again.
    pub adopted: Vec<String>,
    /// Running containers `known` did not claim: left running for the caller to discard.
    pub unknown: Vec<String>,
    /// Containers whose process has exited: left for the caller to inspect and discard.
    pub exited: Vec<String>,
    /// Half-made or half-discarded containers, removed.
    pub cleaned: Vec<String>,
    /// Containers whose clean-up failed, with the reason; retried on the next adopt.
    pub failed: Vec<(String, String)>,
}

impl Runtime {
    /// Re-adopts running containers that `known` claims; cleans up what a crash left:
    /// containers created but never started, records without a runc container (netns, CNI
    /// address, mounts and upper dir are released), runc containers without a record, and
    /// interrupted discards.
    pub async fn adopt(
        &self,
        known: &(dyn Fn(&ContainerInfo) -> bool + Sync),
    ) -> Result<AdoptReport, RuntimeError> {
        let mut report = AdoptReport::default();
        let mut runc = self.runc.list_by_id().await?;
        for (id, dir) in crate::state::container_dirs(&self.config().state_dir)? {
            let state = runc.remove(&id);
            let rec = match Record::load(&dir) {
                Ok(r) => r,
                Err(e) => {
                    report.failed.push((id, e.to_string()));
                    continue;
                }
            };
            let Some(mut rec) = rec else {
                // A crash between mkdir and the first record: nothing ran from it.
                match self.discard(&id, Duration::ZERO).await {
                    Ok(()) => report.cleaned.push(id),
                    Err(e) => report.failed.push((id, e.to_string())),
                }
                continue;
            };
            if rec.phase == RecordPhase::Discarded {
                continue;
            }
            let status = state.as_ref().map(|s| s.status.as_str());
            let adoptable = matches!(rec.phase, RecordPhase::Created | RecordPhase::Started)
                && matches!(status, Some("running") | Some("paused"));
            if adoptable {
                let info = rec.info(state.as_ref());
                if !known(&info) {
                    report.unknown.push(id);
                    continue;
                }
                let pid = state.as_ref().map(|s| s.pid).unwrap_or_default();
                if rec.phase == RecordPhase::Created || rec.pid != Some(pid) {
                    // The crash came between `runc start` and recording it.
                    rec.phase = RecordPhase::Started;
                    rec.pid = Some(pid);
                    rec.started_at.get_or_insert(SystemTime::now());
                    rec.save(&dir)?;
                }
                if pid > 0 {
                    self.supervise(&id, pid);
                }
                tracing::info!(container = %id, pid, "adopted");
                report.adopted.push(id);
            } else if rec.phase == RecordPhase::Started && status == Some("stopped") {
                report.exited.push(id);
            } else {
                // Preparing, created-but-never-started, vanished from runc, or a discard
                // the crash interrupted: undo it all.
                tracing::info!(container = %id, phase = ?rec.phase, runc = ?status, "cleaning up");
                match self.discard(&id, Duration::ZERO).await {
                    Ok(()) => report.cleaned.push(id),
                    Err(e) => report.failed.push((id, e.to_string())),
                }
            }
        }
        // In our private runc root but without a dir: made by no one we know; delete.
        for (id, _) in runc {
            match self.discard(&id, Duration::ZERO).await {
                Ok(()) => report.cleaned.push(id),
                Err(e) => report.failed.push((id, e.to_string())),
            }
        }
        self.sweep_secrets(&mut report);
        Ok(report)
    }

    /// Secrets tmpfs mounts no container owns any more (its record is gone or discarded):
    /// unmounted and removed, so no secret outlives its container.
    fn sweep_secrets(&self, report: &mut AdoptReport) {
        let root = self.config().secrets_dir();
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let owned = matches!(
                Record::load(&self.dir(&id)),
                Ok(Some(r)) if r.phase != RecordPhase::Discarded
            );
            if owned {
                continue;
            }
            match crate::secrets::remove(self.mounter.as_ref(), &id, &e.path()) {
                Ok(()) => {
                    tracing::info!(container = %id, "removed secrets left by a container that is gone");
                    if !report.cleaned.contains(&id) {
                        report.cleaned.push(id);
                    }
                }
                Err(err) => report.failed.push((id, err.to_string())),
            }
        }
    }
}

/// Removes a container dir that holds no record (used by discard for crash leftovers).
pub(crate) fn remove_bare_dir(
    m: &dyn rootfs::Mounter,
    id: &str,
    dir: &std::path::Path,
) -> Result<(), RuntimeError> {
    rootfs::remove(m, id, &RootfsPaths::new(dir))?;
    std::fs::remove_dir_all(dir).map_err(io(dir, "remove"))
}
