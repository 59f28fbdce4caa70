//! Discarding a container: its STOPSIGNAL (SIGTERM by default), grace, SIGKILL, `runc delete`, CNI DEL, netns, rootfs,
//! upper dir, secrets tmpfs, cgroups; the record and recent logs stay as a tombstone. Idempotent.

use crate::container::{check_id, CONFIG, PID_FILE, RUNC_LOG};
use crate::error::RuntimeError;
use crate::network::{netns_del, netns_path};
use crate::reaper;
use crate::rootfs::{self, RootfsPaths};
use crate::state::{Record, RecordPhase};
use crate::{defaults, logs, Runtime};
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Runtime {
    /// Stops and removes container `id`: SIGTERM, `grace`, SIGKILL, `runc delete`, CNI DEL,
    /// netns, rootfs and upper dir. Idempotent; finishes a discard a crash interrupted. The
    /// record and recent logs stay behind as a tombstone.
    pub async fn discard(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        check_id(id)?;
        let lock = self.shared.lock(id);
        let _guard = lock.lock().await;
        let dir = self.dir(id);
        let Some(mut rec) = Record::load(&dir)? else {
            // Unknown, or a dir a crash left before its first record: nothing ran from it.
            if self.runc.state(id).await?.is_some() {
                self.runc.delete(id).await?;
            }
            if dir.exists() {
                crate::adopt::remove_bare_dir(self.mounter.as_ref(), id, &dir)?;
            }
            crate::secrets::remove(self.mounter.as_ref(), id, &self.secrets_dir(id))?;
            return Ok(());
        };
        if rec.phase == RecordPhase::Discarded {
            return Ok(());
        }
        rec.phase = RecordPhase::Discarding;
        rec.save(&dir)?;
        self.teardown(&dir, &mut rec, grace).await
    }

    /// The body of discard (also used to undo a failed start). Every step tolerates having
    /// been done already.
    pub(crate) async fn teardown(
        &self,
        dir: &Path,
        rec: &mut Record,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let id = rec.id.clone();
        if let Some(state) = self.runc.state(&id).await? {
            if state.status != "created" && rec.started_at.is_none() {
                // It ran (a crash hid the start from the record): its id is spent.
                rec.started_at = Some(rec.created_at);
            }
            if state.pid > 0 && reaper::alive(state.pid) {
                // Make sure exactly one task reaps it (a no-op when already supervised).
                self.supervise(&id, state.pid);
            }
            if state.status == "running" || state.status == "paused" {
                let signal = rec.stop_signal.as_deref().unwrap_or(defaults::STOP_SIGNAL);
                self.stop(&id, signal, grace).await?;
            }
            self.runc.delete(&id).await?;
        }
        let exit = self.wait_exit(&id, Duration::ZERO).await;
        if let Some(conf) = &rec.netconf {
            // CNI DEL is idempotent: repeating it after a crash here is fine.
            let cni_id = rec.cni_id.as_deref().unwrap_or(&id);
            self.net.del(cni_id, &netns_path(&rec.netns), conf).await?;
        }
        netns_del(&rec.netns).await?;
        rootfs::remove(self.mounter.as_ref(), &id, &RootfsPaths::new(dir))?;
        // The secrets tmpfs (config.json with the secret env, the secret files) goes too.
        crate::secrets::remove(self.mounter.as_ref(), &id, &self.secrets_dir(&id))?;
        // Image VOLUMEs and name files die with the container (named volumes live elsewhere).
        for d in [crate::prepare::VOLUMES_DIR, crate::prepare::ETC_DIR] {
            match std::fs::remove_dir_all(dir.join(d)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(crate::error::io(dir.join(d), "remove")(e))
                }
                _ => {}
            }
        }
        for name in [CONFIG, PID_FILE, RUNC_LOG] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        remove_cgroups(
            rec.netns
                .strip_prefix(defaults::NETNS_PREFIX)
                .unwrap_or(&id),
        );
        rec.phase = RecordPhase::Discarded;
        rec.netconf = None;
        if rec.exit_code.is_none() {
            rec.exit_code = exit.and_then(|e| e.code);
        }
        rec.save(dir)?;
        self.shared.exits.lock().unwrap().remove(id.as_str());
        self.prune_logs(&rec.app);
        tracing::info!(container = %id, "discarded");
        Ok(())
    }

    /// `signal` (the image's STOPSIGNAL, else TERM), up to `grace` for the process to go,
    /// then SIGKILL.
    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<(), RuntimeError> {
        let supervised = self.shared.exits.lock().unwrap().contains_key(id);
        if !grace.is_zero() && self.runc.kill(id, signal).await? {
            if supervised {
                if self.wait_exit(id, grace).await.is_some() {
                    return Ok(());
                }
            } else if self.poll_stopped(id, grace).await? {
                return Ok(());
            }
        }
        self.runc.kill(id, "KILL").await?;
        let deadline = tokio::time::Instant::now() + defaults::KILL_WAIT;
        let mut gone = false;
        while !gone && tokio::time::Instant::now() < deadline {
            let step = Duration::from_millis(200);
            gone = if supervised {
                self.wait_exit(id, step).await.is_some()
            } else {
                self.poll_stopped(id, step).await?
            };
            if !gone {
                // An init cannot finish exiting while an orphaned exec'd process of its pid
                // namespace waits, as a zombie, to be reaped by the agent.
                self.shared.reap_orphans();
            }
        }
        if gone {
            Ok(())
        } else {
            Err(RuntimeError::Stuck {
                id: id.into(),
                secs: defaults::KILL_WAIT.as_secs(),
            })
        }
    }

    /// For a container we cannot reap (not our child): polls runc until it is stopped.
    async fn poll_stopped(&self, id: &str, timeout: Duration) -> Result<bool, RuntimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.runc.state(id).await? {
                None => return Ok(true),
                Some(s) if s.status == "stopped" => return Ok(true),
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps the logs of the newest [`defaults::DISCARDED_LOGS_KEPT`] discarded containers
    /// of `app`; older ones keep only their record (the tombstone).
    fn prune_logs(&self, app: &str) {
        let Ok(dirs) = crate::state::container_dirs(&self.cfg.state_dir) else {
            return;
        };
        let mut gone: Vec<(u64, PathBuf)> = dirs
            .into_iter()
            .filter_map(|(_, d)| {
                let r = Record::load(&d).ok()??;
                (r.app == app && r.phase == RecordPhase::Discarded).then_some((r.seq, d))
            })
            .collect();
        gone.sort_by_key(|g| std::cmp::Reverse(g.0));
        for (_, d) in gone.into_iter().skip(defaults::DISCARDED_LOGS_KEPT) {
            logs::remove(&d);
        }
    }
}

/// Removes the container's (empty) cgroups, in case runc could not: `runc delete` normally
/// does, but not for a container it no longer knows. A cgroup with processes stays.
fn remove_cgroups(id: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let rel = format!("{}/{id}", defaults::CGROUP_PARENT.trim_start_matches('/'));
    for c in controllers.flatten() {
        let _ = std::fs::remove_dir(c.path().join(&rel));
    }
    // cgroup v2: one hierarchy.
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&rel));
}
