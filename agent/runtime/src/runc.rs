//! A small wrapper over the `runc` binary under a private `--root`: create, start, state,
//! kill, delete, list, exec. Every call but start is one `tokio::process` child that tokio
//! waits for by pid (start opens the container's exec fifo itself, see `start.rs`);
//! container processes are waited for by [`crate::reaper`] only.

use crate::defaults;
use crate::error::RuncError;
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

mod start;
pub mod version;

/// The runc binary and its private state root.
#[derive(Debug, Clone)]
pub struct Runc {
    pub bin: PathBuf,
    pub root: PathBuf,
}

/// What `runc state` / `runc list` report for a container.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RuncState {
    pub id: String,
    pub pid: i32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    pub bundle: PathBuf,
}

/// What an exec printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code; 128+signal when the process was killed by a signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Exit code of a finished process, with signal deaths as 128+signal (shell convention).
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 255,
    }
}

impl Runc {
    fn command(&self, args: &[OsString]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    /// Spawns runc with the given stdout/stderr and waits for it, bounded by
    /// [`defaults::RUNC_TIMEOUT`]. Spawn errors and the timeout name the command.
    async fn spawn_wait(
        &self,
        args: &[OsString],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<std::process::Output, RuncError> {
        let shown = show(args);
        let spawn_err = |source| RuncError::Spawn {
            bin: self.bin.clone(),
            args: shown.clone(),
            source,
        };
        let child = self
            .command(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(spawn_err)?;
        tokio::time::timeout(defaults::RUNC_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| RuncError::Timeout {
                args: shown.clone(),
                secs: defaults::RUNC_TIMEOUT.as_secs(),
            })?
            .map_err(spawn_err)
    }

    /// Runs runc to completion, capturing its output; fails with runc's message on non-zero.
    async fn run(&self, args: &[OsString]) -> Result<Vec<u8>, RuncError> {
        let out = self
            .spawn_wait(args, Stdio::piped(), Stdio::piped())
            .await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuncError::Failed {
                args: show(args),
                code: exit_code(out.status),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `runc create`: sets up the container and leaves its process waiting for `start`.
    /// The container's stdout/stderr are `stdout`/`stderr` (opened by the caller, append
    /// mode); runc's own errors go to `log` (JSON lines) and come back in the error.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        stdout: std::fs::File,
        stderr: std::fs::File,
    ) -> Result<(), RuncError> {
        let args: Vec<OsString> = vec![
            "--log".into(),
            log.into(),
            "--log-format".into(),
            "json".into(),
            "create".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
            id.into(),
        ];
        let status = self
            .spawn_wait(&args, stdout.into(), stderr.into())
            .await?
            .status;
        if status.success() {
            return Ok(());
        }
        Err(RuncError::Failed {
            args: show(&args),
            code: exit_code(status),
            message: last_log_error(log),
        })
    }

    /// `runc state`; `Ok(None)` when runc does not know the container.
    pub async fn state(&self, id: &str) -> Result<Option<RuncState>, RuncError> {
        let args: Vec<OsString> = vec!["state".into(), id.into()];
        match self.run(&args).await {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| RuncError::Output {
                    args: show(&args),
                    reason: e.to_string(),
                }),
            Err(RuncError::Failed { message, .. }) if not_exist(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) to the container's init; `Ok(false)` when the
    /// container or its process is already gone.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<bool, RuncError> {
        match self.run(&["kill".into(), id.into(), signal.into()]).await {
            Ok(_) => Ok(true),
            Err(RuncError::Failed { message, .. })
                if not_exist(&message) || message.contains("not running") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `runc delete --force`; succeeds when the container is already gone.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        match self
            .run(&["delete".into(), "--force".into(), id.into()])
            .await
        {
            Ok(_) => Ok(()),
            Err(RuncError::Failed { message, .. }) if not_exist(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The text of `runc --version`.
    pub async fn version(&self) -> Result<String, RuncError> {
        let out = self
            .spawn_wait(&["--version".into()], Stdio::piped(), Stdio::piped())
            .await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn list(&self) -> Result<Vec<RuncState>, RuncError> {
        let args: Vec<OsString> = vec!["list".into(), "--format".into(), "json".into()];
        let out = self.run(&args).await?;
        // runc prints `null` when the root is empty.
        let list: Option<Vec<RuncState>> =
            serde_json::from_slice(&out).map_err(|e| RuncError::Output {
                args: show(&args),
                reason: e.to_string(),
            })?;
        Ok(list.unwrap_or_default())
    }

    /// [`Runc::list`] by container id.
    pub async fn list_by_id(&self) -> Result<HashMap<String, RuncState>, RuncError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect())
    }

    /// Runs `argv` inside the container with its env and cwd; after `timeout` the process
    /// (found through its pid file) and runc are killed. `Ok(None)` on timeout.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        pid_file: &Path,
        timeout: Duration,
    ) -> Result<Option<ExecOutput>, RuncError> {
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--pid-file".into(),
            pid_file.into(),
            id.into(),
        ];
        args.extend(argv.iter().map(OsString::from));
        let shown = show(&args);
        let child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuncError::Spawn {
                bin: self.bin.clone(),
                args: shown.clone(),
                source,
            })?;
        let mut child = child;
        let (so, se) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(mut r) = so {
                    let _ = r.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(mut r) = se {
                    let _ = r.read_to_end(&mut err).await;
                }
            };
            let (_, _, status) = tokio::join!(read_out, read_err, child.wait());
            (out, err, status)
        };
        tokio::pin!(run);
        let spawn_err = |source| RuncError::Spawn {
            bin: self.bin.clone(),
            args: shown.clone(),
            source,
        };
        match tokio::time::timeout(timeout, &mut run).await {
            Ok((stdout, stderr, status)) => Ok(Some(ExecOutput {
                code: exit_code(status.map_err(spawn_err)?),
                stdout,
                stderr,
            })),
            Err(_) => {
                // Kill the exec'd process first so that runc reaps it and exits by itself: if
                // runc died first, its process would be orphaned to the agent.
                if let Some(pid) = read_pid(pid_file) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                // Whatever happens, `run` (and runc, kill_on_drop) is dropped after this.
                let _ = tokio::time::timeout(defaults::EXEC_KILL_WAIT, &mut run).await;
                Ok(None)
            }
        }
    }
}

/// A pid file written by runc.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

fn not_exist(message: &str) -> bool {
    message.contains("does not exist") || message.contains("not exist")
}

fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `error`-level message in runc's JSON log, or a hint where to look.
fn last_log_error(log: &Path) -> String {
    #[derive(Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Line>(l).ok())
                .filter(|l| l.level == "error" || l.level == "fatal")
                .map(|l| l.msg)
                .next_back()
        })
        .unwrap_or_else(|| format!("no error message; see {}", log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_deaths_are_128_plus_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn runc_log_errors_are_surfaced() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\",\"time\":\"t\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"/nope\\\": no such file\",\"time\":\"t\"}\n",
        )
        .unwrap();
        assert_eq!(last_log_error(&log), "exec: \"/nope\": no such file");
        assert!(last_log_error(&dir.path().join("none")).contains("see"));
    }
}
