//! systemd readiness (sd_notify): `READY=1` once routes are live, and `MAINPID=` so that a
//! proxy that took the sockets over from the unit's main process becomes its main process
//! (`systemctl reload` and binary upgrades; the unit sets `NotifyAccess=all`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::debug;

/// Tells systemd this process is ready and is the service's main process. No-op outside
/// systemd (no `NOTIFY_SOCKET`).
pub(crate) fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let msg = format!("READY=1\nMAINPID={}\n", std::process::id());
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &a));
    if let Err(e) = sent {
        debug!(error = %e, "sd_notify failed");
    }
}
