//! Supervision: the one task per container that reaps it, records its exit and rotates its logs.

use crate::reaper::{self, Exit};
use crate::state::{Record, RecordPhase};
use crate::{defaults, logs, Runtime, Shared};
use std::time::Duration;
use tokio::sync::watch;

impl Shared {
    /// Reaps exec'd processes orphaned to the agent (see [`reaper::reap_container_orphans`]).
    pub(crate) fn reap_orphans(&self) {
        let n = reaper::reap_container_orphans();
        if n > 0 {
            tracing::info!(count = n, "reaped orphaned exec processes");
        }
    }
}

impl Runtime {
    /// Starts the one task that reaps `pid`, records its exit and rotates its logs.
    pub(crate) fn supervise(&self, id: &str, pid: i32) {
        let (tx, rx) = watch::channel(None);
        {
            let mut exits = self.shared.exits.lock().unwrap();
            if exits.get(id).is_some_and(|(_, rx)| rx.borrow().is_none()) {
                return; // already supervised
            }
            exits.insert(id.to_string(), (pid, rx));
        }
        let shared = self.shared.clone();
        let id = id.to_string();
        let dir = self.dir(&id);
        let wait = reaper::wait_exit(pid);
        let watcher = self
            .shared
            .log_watcher
            .get_or_init(|| {
                logs::LogWatcher::start()
                    .map_err(|e| tracing::warn!(error = %e, "cannot watch container logs for writes; checking them every second"))
                    .ok()
            })
            .clone();
        let mut logs = logs::LogWatch::new(&dir, self.cfg.log_max_size.bytes(), watcher);
        tokio::spawn(async move {
            tokio::pin!(wait);
            let mut reap = tokio::time::interval(defaults::REAP_INTERVAL);
            let mut note = tokio::time::interval(defaults::LOG_TIMES_GRAIN);
            let exit = loop {
                tokio::select! {
                    r = &mut wait => break r.unwrap_or(Exit { code: None }),
                    _ = logs.written() => {
                        logs.check();
                        tokio::time::sleep(defaults::LOG_WATCH_PAUSE).await;
                    }
                    _ = note.tick() => logs.check(),
                    _ = reap.tick() => shared.reap_orphans(),
                }
            };
            logs.check();
            tracing::info!(container = %id, code = ?exit.code, "container process exited");
            let _ = tx.send(Some(exit));
            let lock = shared.lock(&id);
            let _g = lock.lock().await;
            if let Ok(Some(mut rec)) = Record::load(&dir) {
                if matches!(rec.phase, RecordPhase::Created | RecordPhase::Started)
                    && rec.exit_code.is_none()
                {
                    rec.exit_code = exit.code;
                    let _ = rec.save(&dir);
                }
            }
        });
    }

    /// Whether the process of container `id` has not exited yet, as the task that reaps it
    /// knows (no runc call); None when this runtime does not supervise it.
    pub fn process_alive(&self, id: &str) -> Option<bool> {
        let exits = self.shared.exits.lock().unwrap();
        exits.get(id).map(|(_, rx)| rx.borrow().is_none())
    }

    /// Waits up to `timeout` for the supervised container `id` to exit.
    pub(crate) async fn wait_exit(&self, id: &str, timeout: Duration) -> Option<Exit> {
        let rx = self
            .shared
            .exits
            .lock()
            .unwrap()
            .get(id)
            .map(|(_, rx)| rx.clone());
        let mut rx = rx?;
        let exit = tokio::time::timeout(timeout, async {
            rx.wait_for(|e| e.is_some()).await.ok().and_then(|e| *e)
        })
        .await;
        exit.ok().flatten()
    }
}
