//! The reaping of container processes. The agent is a child subreaper, so when
//! `runc create` exits its container init is re-parented to the agent; each init is then
//! waited for through its own pidfd by exactly one task ([`wait_exit`]). Nobody in the agent
//! calls `waitpid(-1)`: tokio waits for the runc and CNI processes it spawned by pid, this
//! module for container inits by pidfd, and [`reap_container_orphans`] only for zombies that
//! live in a container's pid namespace (which nothing else can be waiting for), so no two
//! waiters ever race for one exit status.

use rustix::process::{pidfd_open, waitid, Pid, PidfdFlags, WaitId, WaitIdOptions};
use std::os::fd::AsFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Makes this process the subreaper of its descendants (`PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, 128+signal for signal deaths; `None` when the process was not our child
    /// (adopted after an agent restart), so its status went to init.
    pub code: Option<i32>,
}

/// Waits until `pid` has exited and reaps it if it is our child. The pid must be known to
/// be the container's init (read from runc's pid file or state) and alive or a zombie.
/// The pid is registered as waited-for at the call, before the future first runs, so the
/// orphan sweep of another task can never take it in between.
pub fn wait_exit(pid: i32) -> impl std::future::Future<Output = std::io::Result<Exit>> {
    let waiting = Waiting::register(pid);
    async move {
        let _waiting = waiting;
        wait_registered(pid).await
    }
}

async fn wait_registered(pid: i32) -> std::io::Result<Exit> {
    let Some(p) = Pid::from_raw(pid) else {
        return Ok(Exit { code: None });
    };
    let fd = match pidfd_open(p, PidfdFlags::NONBLOCK) {
        Ok(fd) => fd,
        // Already reaped by someone else (init): it is gone, status unknown.
        Err(rustix::io::Errno::SRCH) => return Ok(Exit { code: None }),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and
    // refers to this pidfd until the AsyncFd is dropped.
    #[allow(unsafe_code)]
    let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        let mut guard = afd.readable().await?;
        // Readable means "exited"; reap it if it is ours.
        match waitid(
            WaitId::PidFd(afd.get_ref().as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(status)) => {
                let code = status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s));
                return Ok(Exit { code });
            }
            Ok(None) => guard.clear_ready(),
            // Not our child: the pidfd is readable once it has exited.
            Err(rustix::io::Errno::CHILD) => return Ok(Exit { code: None }),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Pids [`wait_exit`] is waiting for, process-wide (the subreaper role is process-wide too,
/// and tests run several runtimes in one process): the orphan sweep leaves them alone.
static WAITING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Registration of one waited-for pid, removed on drop.
struct Waiting(i32);

impl Waiting {
    fn register(pid: i32) -> Waiting {
        WAITING.lock().unwrap().push(pid);
        Waiting(pid)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut w = WAITING.lock().unwrap();
        if let Some(i) = w.iter().position(|p| *p == self.0) {
            w.swap_remove(i);
        }
    }
}

/// Reaps zombie children of this process that live in a nested pid namespace and that no
/// [`wait_exit`] is waiting for (container inits have their own waiter). These are processes started
/// by a `runc exec` that was killed before its process exited: the kernel re-parents them to
/// the agent (the subreaper), and until they are reaped their container's init cannot finish
/// exiting. Children in the agent's own pid namespace (runc, CNI plugins, anything tokio or
/// std spawned) are never touched, so this never races another waiter. Returns how many.
pub fn reap_container_orphans() -> usize {
    let mut reaped = 0;
    for pid in children() {
        // Held while reaping, so a waiter registering now cannot lose its child to us.
        let waiting = WAITING.lock().unwrap();
        if waiting.contains(&pid) || !is_nested_zombie(pid) {
            continue;
        }
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        if let Ok(Some(_)) = waitid(
            WaitId::Pid(p),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            reaped += 1;
        }
    }
    reaped
}

/// Pids of this process's children (all threads).
fn children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// `/proc/PID/status` of `pid`; `None` when it is gone.
fn status(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// True when `status` says zombie (or dead).
fn is_zombie(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| matches!(s.trim_start().chars().next(), Some('Z' | 'X')))
}

/// A zombie whose `NSpid` shows it lives in a pid namespace below ours.
fn is_nested_zombie(pid: i32) -> bool {
    let Some(status) = status(pid) else {
        return false;
    };
    let zombie = is_zombie(&status);
    let nested = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| ids.split_whitespace().count() > 1);
    zombie && nested
}

/// True while `pid` exists (a zombie counts as gone for our purposes only after reaping).
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// True while `pid` exists and has not exited: a zombie waiting to be reaped is not running.
pub(crate) fn running(pid: i32) -> bool {
    status(pid).is_some_and(|s| !is_zombie(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_running_and_a_missing_one_is_not() {
        assert!(running(std::process::id() as i32));
        assert!(!running(i32::MAX));
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // reaped by wait_exit, which is the point
    async fn reaps_own_child_with_exit_code_and_signal() {
        let c = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        assert_eq!(
            wait_exit(c.id() as i32).await.unwrap(),
            Exit { code: Some(7) }
        );
        let c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        let w = tokio::spawn(wait_exit(pid));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
        assert_eq!(w.await.unwrap().unwrap(), Exit { code: Some(137) });
        // Reaped: no zombie left behind.
        assert!(!alive(pid));
    }
}
