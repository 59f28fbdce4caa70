//! `runc start` without a runc process. A created container's process waits in `runc init`,
//! blocked opening the container's exec fifo (`<root>/<id>/exec.fifo`) for writing; starting
//! it is opening that fifo for reading, reading the byte `runc init` writes before it execs
//! the container's process, and removing the fifo (which is how runc tells a started
//! container from a created one). This is what `runc start` itself does; doing it here saves
//! spawning runc, which on a busy host costs tens to hundreds of milliseconds on the swap's
//! critical path. Anything else (no fifo: not created, already started, or a runtime that
//! keeps no fifo) goes to `runc start`, which refuses with its own words.

use super::Runc;
use crate::defaults;
use crate::error::RuncError;
use std::path::Path;
use std::time::Duration;
use tokio::net::unix::pipe::Receiver;

/// runc's name for the fifo in a container's state dir.
const EXEC_FIFO: &str = "exec.fifo";
/// How often a start that waits for `runc init` checks that the process still lives.
const ALIVE_CHECK: Duration = Duration::from_millis(100);

impl Runc {
    /// Starts created container `id`, whose init process is `pid` (from its pid file).
    pub async fn start(&self, id: &str, pid: Option<i32>) -> Result<(), RuncError> {
        let fifo = self.root.join(id).join(EXEC_FIFO);
        let Some(pid) = pid else {
            return self.start_by_runc(id).await;
        };
        let fd = match tokio::net::unix::pipe::OpenOptions::new().open_receiver(&fifo) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.start_by_runc(id).await
            }
            Err(e) => return Err(failed(id, format!("open {}: {e}", fifo.display()))),
        };
        let started = tokio::time::timeout(defaults::RUNC_TIMEOUT, read_start_byte(fd, pid))
            .await
            .map_err(|_| {
                failed(
                    id,
                    format!(
                        "its process did not open the exec fifo within {} s",
                        defaults::RUNC_TIMEOUT.as_secs()
                    ),
                )
            })?;
        started.map_err(|reason| failed(id, reason))?;
        remove_fifo(&fifo).map_err(|e| failed(id, format!("remove {}: {e}", fifo.display())))
    }

    /// True while created container `id` waits to be started (runc's own test for `created`,
    /// given that its process lives).
    pub fn has_exec_fifo(&self, id: &str) -> bool {
        self.root.join(id).join(EXEC_FIFO).exists()
    }

    async fn start_by_runc(&self, id: &str) -> Result<(), RuncError> {
        self.run(&["start".into(), id.into()]).await.map(drop)
    }
}

/// Waits for the byte `runc init` writes once it has the fifo open; fails when process `pid`
/// dies first.
async fn read_start_byte(fifo: Receiver, pid: i32) -> Result<(), String> {
    let mut buf = [0u8; 16];
    loop {
        if let Ok(r) = tokio::time::timeout(ALIVE_CHECK, fifo.readable()).await {
            r.map_err(|e| format!("watch the exec fifo: {e}"))?;
            match fifo.try_read(&mut buf) {
                Ok(n) if n > 0 => return Ok(()),
                // No writer yet, or one that left without a byte: wait on, watching `pid`.
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("read the exec fifo: {e}")),
            }
        }
        if !crate::reaper::running(pid) {
            return Err(format!(
                "the container's process {pid} ended before it was started"
            ));
        }
    }
}

fn remove_fifo(fifo: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(fifo) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn failed(id: &str, reason: String) -> RuncError {
    RuncError::Start {
        id: id.to_owned(),
        reason,
    }
}
