//! Shared by the integration tests: the real proxy in-process, real HTTP/TCP upstreams on
//! 127.0.0.1, and a keep-alive client. No mocks.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_proxy::{EdgeConfig, ProxyClient, ProxyConfig, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy, served in-process with its own socket and state file.
pub struct Proxy {
    pub client: ProxyClient,
    pub socket: PathBuf,
    pub state: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), slipway_proxy::ProxyError>>>,
}

impl Proxy {
    pub async fn start(dir: &Path) -> Proxy {
        Self::start_with(dir, test_edge()).await
    }

    /// With this edge configuration (shared listeners, TLS, trusted proxies ...).
    pub async fn start_with(dir: &Path, edge: EdgeConfig) -> Proxy {
        let socket = dir.join("proxy.sock");
        let state = dir.join("state/routes.json");
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = ProxyConfig {
            control_socket: socket.clone(),
            state_file: state.clone(),
            bind: "127.0.0.1".parse().unwrap(),
            metrics_listen: None,
            http_workers: 2,
            edge,
        };
        let task = tokio::spawn(slipway_proxy::serve(cfg, async move {
            let _ = rx.await;
        }));
        let client = ProxyClient::new(&socket);
        client.wait_ready(TIMEOUT).await.expect("proxy ready");
        Proxy {
            client,
            socket,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .unwrap()
            .expect("proxy stops cleanly");
    }

    /// Address the app's listener is bound to.
    pub async fn app_addr(&self, app: &str) -> SocketAddr {
        let routes = self.client.routes().await.unwrap();
        routes
            .iter()
            .find(|r| r.app == app)
            .and_then(|r| r.bound)
            .unwrap_or_else(|| panic!("app {app} has no listener: {routes:?}"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Shared listeners on any free loopback ports (tests ask the proxy where they are).
pub fn test_edge() -> EdgeConfig {
    EdgeConfig {
        http_port: 0,
        https_port: 0,
        ..EdgeConfig::default()
    }
}

/// Runs curl (a real client) with `args`; answers (HTTP status, body, headers). Fails the
/// test if curl itself fails to run or to connect.
pub fn curl(args: &[&str]) -> (u16, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D"])
        .arg(&headers)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("CURL_DEBUG").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let (body, code) = text.rsplit_once('\n').unwrap();
    let headers = std::fs::read_to_string(headers).unwrap_or_default();
    (code.parse().unwrap(), body.to_owned(), headers)
}

/// `--resolve host:port:127.0.0.1` for curl.
pub fn resolve(host: &str, addr: SocketAddr) -> String {
    format!("{host}:{}:{}", addr.port(), addr.ip())
}

/// A free port on 127.0.0.1 (for tests that need the same port across proxy restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real HTTP upstream answering its name. Paths: `/slow/<ms>` waits before answering,
/// `/headers` echoes request headers, `/upgrade` switches protocols and echoes bytes.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let n = n.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| backend_handle(req, n.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            task,
        }
    }

    pub fn upstream(&self) -> Upstream {
        Upstream {
            id: self.name.parse().unwrap(),
            addr: self.addr,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend_handle(
    mut req: Request<Incoming>,
    name: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    if path == "/headers" {
        let mut text = String::new();
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        return Ok(Response::new(Full::new(Bytes::from(text))));
    }
    if path == "/upgrade" {
        let on = hyper::upgrade::on(&mut req);
        let n = name.clone();
        tokio::spawn(async move {
            let Ok(up) = on.await else { return };
            let mut io = TokioIo::new(up);
            let mut buf = [0u8; 1024];
            loop {
                let Ok(k) = io.read(&mut buf).await else {
                    return;
                };
                if k == 0 {
                    return;
                }
                let mut out = format!("{n}:").into_bytes();
                out.extend_from_slice(&buf[..k]);
                if io.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "echo".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    if path.ends_with("/whoami") {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Ok(Response::new(Full::new(Bytes::from(format!(
            "{name} {path}{query}"
        )))));
    }
    if path == "/fail" {
        let mut r = Response::new(Full::new(Bytes::from("boom")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(r);
    }
    Ok(Response::new(Full::new(Bytes::from(name))))
}

/// One keep-alive HTTP/1.1 connection: every request goes over the same TCP connection.
pub struct KeepAlive {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> KeepAlive {
        let s = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        KeepAlive { send }
    }

    /// GETs `path`; answers status and body, or an error if the connection failed.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        self.send.ready().await.map_err(|e| e.to_string())?;
        let req = Request::get(path)
            .header("host", "app.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

/// A real TCP upstream: answers each line with `<name>:<line>`.
pub struct TcpBackend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpBackend {
    pub async fn start(name: &str) -> TcpBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let n = n.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok(k) = s.read(&mut buf).await else {
                            return;
                        };
                        if k == 0 {
                            return;
                        }
                        let mut out = format!("{n}:").into_bytes();
                        out.extend_from_slice(&buf[..k]);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TcpBackend {
            name: name.to_owned(),
            addr,
            task,
        }
    }

    pub fn upstream(&self) -> Upstream {
        Upstream {
            id: self.name.parse().unwrap(),
            addr: self.addr,
        }
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `line` and reads one answer.
pub async fn tcp_roundtrip(s: &mut TcpStream, line: &str) -> std::io::Result<String> {
    s.write_all(line.as_bytes()).await?;
    let mut buf = [0u8; 1024];
    let k = tokio::time::timeout(TIMEOUT, s.read(&mut buf)).await??;
    if k == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&buf[..k]).into_owned())
}
