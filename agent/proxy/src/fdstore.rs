//! systemd's file descriptor store, so a proxy that is SIGKILLed (or crashes) and restarted
//! by systemd refuses no connection: every listening socket the proxy binds is also handed to
//! systemd (`FDSTORE=1` with the fd, named after what it serves); systemd keeps it open while
//! the process is gone (the kernel queues new connections in its backlog) and passes it back
//! to the restarted proxy (`LISTEN_FDS`, `LISTEN_FDNAMES`), which serves on it again. The
//! unit sets `FileDescriptorStoreMax=`. Outside systemd (no `NOTIFY_SOCKET`, no
//! `LISTEN_FDS`) all of this is a no-op.

use std::collections::HashMap;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use tracing::{info, warn};

use crate::takeover::Slot;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The store name of a slot: `http`, `https`, or `app-NAME` (app names are `[a-z0-9-]`, so
/// never contain the `:` that separates `LISTEN_FDNAMES`).
pub(crate) fn name(slot: &Slot) -> String {
    match slot {
        Slot::Http => "http".to_owned(),
        Slot::Https => "https".to_owned(),
        Slot::App { app } => format!("app-{app}"),
    }
}

fn parse(name: &str) -> Option<Slot> {
    match name {
        "http" => Some(Slot::Http),
        "https" => Some(Slot::Https),
        n => n.strip_prefix("app-").map(|app| Slot::App {
            app: app.to_owned(),
        }),
    }
}

/// Listening sockets systemd passed to this process (from its fd store), by slot. A successor
/// this process starts sees the same variables but not its pid in `LISTEN_PID`, nor the fds
/// (close-on-exec).
pub(crate) fn passed() -> HashMap<Slot, std::net::TcpListener> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut out = HashMap::new();
    let (Some(pid), Some(count)) = (pid, count) else {
        return out;
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return out;
    }
    let Ok(count) = count.parse::<i32>() else {
        warn!(LISTEN_FDS = %count, "LISTEN_FDS is not a number; ignoring the passed sockets");
        return out;
    };
    let names: Vec<&str> = names.split(':').collect();
    for i in 0..count {
        let raw = LISTEN_FDS_START + i;
        // SAFETY: systemd passes fds LISTEN_FDS_START.. to this process, each once; nothing
        // else in the process owns them, and this runs once per process (LISTEN_PID).
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        let name = names.get(i as usize).copied().unwrap_or("");
        match parse(name) {
            Some(slot) if is_listening(fd.as_fd()) => {
                out.insert(slot, std::net::TcpListener::from(fd));
            }
            _ => warn!(
                fd = raw,
                name, "passed fd is not a listener of ours; closed"
            ),
        }
    }
    if !out.is_empty() {
        info!(
            sockets = out.len(),
            "serving on listening sockets kept by systemd's fd store"
        );
    }
    out
}

fn is_listening(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false)
}

/// The notify socket systemd listens on, if any.
fn notify_addr() -> Option<SocketAddr> {
    let path = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(n) => SocketAddr::from_abstract_name(n).ok(),
        None => SocketAddr::from_pathname(&path).ok(),
    }
}

fn send(msg: &str, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let Some(addr) = notify_addr() else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&addr)?;
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        sock.as_fd(),
        &[IoSlice::new(msg.as_bytes())],
        &mut cmsg,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Hands a copy of a listening socket to systemd's fd store (no-op outside systemd; systemd
/// ignores a socket it already holds).
pub(crate) fn store(slot: &Slot, fd: BorrowedFd<'_>) {
    let name = name(slot);
    if let Err(e) = send(&format!("FDSTORE=1\nFDNAME={name}\n"), Some(fd)) {
        warn!(socket = %name, error = %e, "could not hand the listener to systemd's fd store; a crash would refuse connections until the restart");
    }
}

/// Tells systemd to close its copy of a listener no route uses any more.
pub(crate) fn remove(slot: &Slot) {
    let name = name(slot);
    if let Err(e) = send(&format!("FDSTOREREMOVE=1\nFDNAME={name}\n"), None) {
        warn!(socket = %name, error = %e, "could not remove the listener from systemd's fd store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for slot in [
            Slot::Http,
            Slot::Https,
            Slot::App {
                app: "web-2".into(),
            },
        ] {
            assert_eq!(parse(&name(&slot)), Some(slot));
        }
        assert_eq!(parse("other"), None);
    }
}
