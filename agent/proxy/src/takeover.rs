//! Socket takeover for restarts and upgrades that fail no request. A proxy listens on a
//! second unix socket beside its control socket (`<control>.takeover`). A new proxy started
//! while it runs connects there and receives every listening socket (SCM_RIGHTS) with what
//! each serves; it restores its routes on those very sockets (nothing is re-bound, so no
//! connection is refused), takes the control socket over and answers "ready". The old proxy
//! then stops accepting, finishes what is in flight (HTTP/1.1 clients are told
//! `Connection: close` on their next response) and exits.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::defaults;
use crate::error::ProxyError;

/// What one handed-over socket serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Slot {
    /// An app's own port.
    App { app: String },
    /// The shared plain-HTTP listener.
    Http,
    /// The shared HTTPS listener.
    Https,
}

/// Where the takeover socket of the proxy with control socket `control` lives.
pub(crate) fn socket_path(control: &Path) -> PathBuf {
    let mut s = control.as_os_str().to_owned();
    s.push(".takeover");
    PathBuf::from(s)
}

fn err(path: &Path, reason: impl std::fmt::Display) -> ProxyError {
    ProxyError::Takeover {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Sockets received from the previous proxy, taken (once each) as routes are restored.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    sockets: Mutex<HashMap<Slot, std::net::TcpListener>>,
    /// The old proxy, waiting for our "ready".
    peer: Mutex<Option<UnixStream>>,
}

impl Inherited {
    /// Sockets handed over by something other than a running proxy (systemd's fd store).
    pub(crate) fn from_sockets(sockets: HashMap<Slot, std::net::TcpListener>) -> Self {
        Inherited {
            sockets: Mutex::new(sockets),
            peer: Mutex::new(None),
        }
    }

    /// The inherited listener for `slot`, if the previous proxy had one.
    pub(crate) fn take(&self, slot: &Slot) -> Option<tokio::net::TcpListener> {
        let l = self.sockets.lock().unwrap().remove(slot)?;
        l.set_nonblocking(true).ok()?;
        tokio::net::TcpListener::from_std(l).ok()
    }

    /// Tells the previous proxy we serve now: it stops accepting and drains. Sockets no route
    /// claimed are closed.
    pub(crate) fn ready(&self) {
        let left = std::mem::take(&mut *self.sockets.lock().unwrap());
        if !left.is_empty() {
            info!(
                unused = left.len(),
                "inherited sockets no route uses: closed"
            );
        }
        if let Some(mut peer) = self.peer.lock().unwrap().take() {
            if let Err(e) = peer.write_all(b"R") {
                warn!(error = %e, "could not tell the previous proxy to stop");
            }
        }
    }
}

/// Asks the proxy running at `control` for its sockets. None when no proxy runs there.
pub(crate) fn receive(control: &Path) -> Result<Option<Inherited>, ProxyError> {
    let path = socket_path(control);
    let Ok(s) = UnixStream::connect(&path) else {
        return Ok(None);
    };
    s.set_read_timeout(Some(defaults::TAKEOVER_TIMEOUT))
        .map_err(|e| err(&path, e))?;
    let mut data = vec![0u8; defaults::TAKEOVER_MAX_MESSAGE];
    let mut space =
        vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(defaults::TAKEOVER_MAX_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut data)];
    let got = rustix::net::recvmsg(s.as_fd(), &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| err(&path, format!("receiving the sockets: {e}")))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    let slots: Vec<Slot> = serde_json::from_slice(&data[..got.bytes])
        .map_err(|e| err(&path, format!("unreadable socket list: {e}")))?;
    if slots.len() != fds.len() {
        return Err(err(
            &path,
            format!("{} sockets named but {} received", slots.len(), fds.len()),
        ));
    }
    let sockets: HashMap<Slot, std::net::TcpListener> = slots
        .into_iter()
        .zip(fds)
        .map(|(slot, fd)| (slot, std::net::TcpListener::from(fd)))
        .collect();
    info!(sockets = sockets.len(), from = %path.display(), "took the listening sockets over from the running proxy");
    s.set_read_timeout(None).map_err(|e| err(&path, e))?;
    Ok(Some(Inherited {
        sockets: Mutex::new(sockets),
        peer: Mutex::new(Some(s)),
    }))
}

/// Sends `sockets` to a new proxy and waits for its "ready".
fn send(mut s: UnixStream, sockets: Vec<(Slot, OwnedFd)>) -> std::io::Result<()> {
    let slots: Vec<&Slot> = sockets.iter().map(|(s, _)| s).collect();
    let json = serde_json::to_vec(&slots).expect("slots serialize");
    let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("too many sockets for one message"));
    }
    rustix::net::sendmsg(
        s.as_fd(),
        &[IoSlice::new(&json)],
        &mut cmsg,
        SendFlags::empty(),
    )?;
    s.set_read_timeout(Some(defaults::TAKEOVER_TIMEOUT))?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)?;
    if ack != *b"R" {
        return Err(std::io::Error::other(
            "unexpected answer from the new proxy",
        ));
    }
    Ok(())
}

/// Binds the takeover socket (mode 0600), replacing a stale file.
pub(crate) fn bind(control: &Path) -> Result<UnixListener, ProxyError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(control);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| err(&path, format!("cannot listen: {e}")))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(&path, format!("cannot restrict permissions: {e}")))?;
    Ok(l)
}

/// Hands the sockets `collect` gives to the first new proxy that asks, then fires `done`.
pub(crate) async fn serve(
    listener: UnixListener,
    collect: impl Fn() -> Vec<(Slot, OwnedFd)> + Send + 'static,
    done: Arc<Notify>,
) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let Ok(s) = s.into_std() else { continue };
        if s.set_nonblocking(false).is_err() {
            continue;
        }
        let sockets = collect();
        let r = tokio::task::spawn_blocking(move || send(s, sockets)).await;
        match r {
            Ok(Ok(())) => {
                info!("a new proxy took the listening sockets over; draining and exiting");
                done.notify_one();
                return;
            }
            Ok(Err(e)) => warn!(error = %e, "socket takeover failed; still serving"),
            Err(e) => warn!(error = %e, "socket takeover task failed; still serving"),
        }
    }
}
