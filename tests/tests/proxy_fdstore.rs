//! A SIGKILLed proxy restarted the way systemd restarts it refuses no connection: the proxy
//! hands every listening socket to the service manager's fd store (`FDSTORE=1` over
//! `NOTIFY_SOCKET`), the manager keeps it open while no proxy runs (the kernel queues the
//! connections) and passes it to the restarted proxy (`LISTEN_FDS`, `LISTEN_FDNAMES`,
//! `LISTEN_PID`). The service manager's side of that protocol is played by this test
//! (systemd is not this machine's init); the proxy is the real `slipway-agent proxy` binary,
//! the client real TCP connections.

use std::collections::HashMap;
use std::io::{IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slipway_tests::bins::bin;

/// An HTTP/1.1 upstream answering `fdstore-ok` to every request (one per connection).
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nfdstore-ok",
                );
            });
        }
    });
    addr
}

/// The service manager's end: receives `FDSTORE=1` / `FDSTOREREMOVE=1` messages with their
/// fds and keeps the fds by name, as systemd does.
struct Manager {
    sock: UnixDatagram,
    fds: HashMap<String, OwnedFd>,
}

impl Manager {
    fn new(path: &Path) -> Manager {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Manager {
            sock,
            fds: HashMap::new(),
        }
    }

    /// Reads every pending message.
    fn pump(&mut self) {
        loop {
            let mut data = [0u8; 4096];
            let mut space = [0u8; 256];
            let mut cmsg = scm::Cmsg::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut data)];
            let Some((n, fds)) = cmsg.recv(&self.sock, &mut iov) else {
                return;
            };
            let text = String::from_utf8_lossy(&data[..n]).into_owned();
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(str::to_owned)
            };
            let name = field("FDNAME=").unwrap_or_else(|| "stored".to_owned());
            if field("FDSTORE=").as_deref() == Some("1") {
                for fd in fds {
                    self.fds.insert(name.clone(), fd);
                }
            } else if field("FDSTOREREMOVE=").as_deref() == Some("1") {
                self.fds.remove(&name);
            }
        }
    }
}

/// recvmsg with SCM_RIGHTS through libc (the test crate's only FFI).
mod scm {
    use super::*;

    pub struct Cmsg<'a>(&'a mut [u8]);

    impl<'a> Cmsg<'a> {
        pub fn new(space: &'a mut [u8]) -> Self {
            Cmsg(space)
        }

        /// One datagram: its length and the fds it carried; None when none is waiting.
        pub fn recv(
            &mut self,
            sock: &UnixDatagram,
            iov: &mut [IoSliceMut],
        ) -> Option<(usize, Vec<OwnedFd>)> {
            // SAFETY: msghdr points at live buffers for the duration of the call; the kernel
            // writes at most their lengths.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr() as *mut libc::iovec;
                msg.msg_iovlen = iov.len();
                msg.msg_control = self.0.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = self.0.len();
                let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
                if n < 0 {
                    return None;
                }
                let mut fds = Vec::new();
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(c) as *const libc::c_int;
                        let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                            / std::mem::size_of::<libc::c_int>();
                        for i in 0..count {
                            fds.push(OwnedFd::from_raw_fd(*data.add(i)));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                Some((n as usize, fds))
            }
        }
    }
}

/// Starts the proxy as a service manager would: with `NOTIFY_SOCKET`, and with `fds` passed
/// as fds 3.. (named in `LISTEN_FDNAMES`, `LISTEN_PID` = the proxy's own pid).
fn start_proxy(dir: &Path, notify: &Path, fds: &[(String, &OwnedFd)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("proxy.log"))
        .unwrap();
    let names: Vec<&str> = fds.iter().map(|(n, _)| n.as_str()).collect();
    let raw: Vec<i32> = fds.iter().map(|(_, f)| f.as_raw_fd()).collect();
    let mut cmd = Command::new("sh");
    // `exec` keeps the shell's pid, so $$ is the proxy's pid.
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(bin("slipway-agent"))
        .arg("proxy")
        .arg("--control-socket")
        .arg(dir.join("proxy.sock"))
        .arg("--state")
        .arg(dir.join("routes.json"))
        .args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
        ])
        .env("NOTIFY_SOCKET", notify)
        .env("SLIPWAY_LOG", "debug,hyper=info,hyper_util=info")
        .stdout(Stdio::null())
        .stderr(log);
    if !raw.is_empty() {
        cmd.env("LISTEN_FDS", raw.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
    }
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move the fds out of the way first, so no target clobbers a source.
            let mut high = Vec::new();
            for fd in &raw {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("slipway-agent proxy starts");
    let sock = dir.join("proxy.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "proxy control socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

#[test]
fn a_killed_proxy_restarted_with_its_stored_sockets_refuses_nothing() {
    let dir = tempfile::Builder::new()
        .prefix(&format!("slipway-fdstore-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let d = dir.path();
    let notify = d.join("notify.sock");
    let mut manager = Manager::new(&notify);
    let up = backend();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut proxy = start_proxy(d, &notify, &[]);
    let body =
        format!(r#"{{"listen":{port},"protocol":"http","upstream":{{"id":"c1","addr":"{up}"}}}}"#);
    let out = Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", "--unix-socket"])
        .arg(d.join("proxy.sock"))
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg("http://proxy/v1/apps/web")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "set route: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(get(addr).unwrap().ends_with("fdstore-ok"));
    manager.pump();
    assert!(
        manager.fds.contains_key("app-web"),
        "the proxy stored its listener: {:?}",
        manager.fds.keys().collect::<Vec<_>>()
    );

    for round in 0..3 {
        proxy.kill().unwrap();
        proxy.wait().unwrap();
        // No proxy runs now: clients connect anyway (the stored socket queues them) and get
        // their answer once the restarted proxy accepts.
        let clients: Vec<_> = (0..20)
            .map(|_| std::thread::spawn(move || get(addr)))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        manager.pump();
        let stored: Vec<(String, &OwnedFd)> =
            manager.fds.iter().map(|(n, f)| (n.clone(), f)).collect();
        proxy = start_proxy(d, &notify, &stored);
        let mut failed = Vec::new();
        for c in clients {
            match c.join().unwrap() {
                Ok(r) if r.starts_with("HTTP/1.1 200") && r.ends_with("fdstore-ok") => {}
                other => failed.push(format!("{other:?}")),
            }
        }
        assert!(
            failed.is_empty(),
            "round {round}: failed requests: {failed:?}"
        );
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let log = std::fs::read_to_string(d.join("proxy.log")).unwrap();
    assert!(
        log.contains("serving on listening sockets kept by systemd's fd store"),
        "{log}"
    );
}
