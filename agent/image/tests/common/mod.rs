//! A fake registry for fault injection only (tampered bytes, wrong sizes, truncation, 500s,
//! dropped connections). Everything else is tested against the real `docker-registry`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the fake registry misbehaves for one path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Serve these bytes instead of the real ones (same status, honest Content-Length).
    Replace(Vec<u8>),
    /// Answer HTTP 500 to the first `n` requests, then serve normally.
    Status500(usize),
    /// Declare the full length, send `n` bytes and close, on every request without a Range.
    Truncate(usize),
    /// Like `Truncate`, but only for the first request; ranges are honoured afterwards.
    DropOnce(usize),
}

/// What the fake registry demands before it serves anything.
#[derive(Clone, Debug)]
pub enum FakeAuth {
    /// `WWW-Authenticate: Basic`; `Authorization: Basic` with these must come.
    Basic(String, String),
    /// `WWW-Authenticate: Bearer realm=http://ADDR/token,...`: the token endpoint wants
    /// Basic with these and hands out [`FAKE_TOKEN`].
    Bearer(String, String),
}

/// The token the fake registry's token endpoint issues.
pub const FAKE_TOKEN: &str = "fake-token-5f1e";

#[derive(Default)]
struct State {
    auth: Option<FakeAuth>,
    token_requests: Vec<String>,
    content: HashMap<String, (String, Vec<u8>)>,
    faults: HashMap<String, Fault>,
    hits: HashMap<String, usize>,
    ranges: Vec<String>,
}

pub struct FakeRegistry {
    pub addr: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    pub requests: Arc<AtomicUsize>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRegistry {
    pub async fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (state.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, s, r).await;
                });
            }
        });
        FakeRegistry {
            addr,
            state,
            task,
            requests,
        }
    }

    /// Serves an image as built by slipway-tests (manifest by digest, blobs).
    pub fn add_image(&self, repo: &str, image: &slipway_tests::image::Image) {
        let mut s = self.state.lock().unwrap();
        s.content.insert(
            format!("/v2/{repo}/manifests/{}", image.manifest_digest),
            (
                slipway_tests::image::MEDIA_MANIFEST.into(),
                image.manifest.clone(),
            ),
        );
        s.content.insert(
            format!("/v2/{repo}/blobs/{}", image.config_digest),
            ("application/octet-stream".into(), image.config.clone()),
        );
        for l in &image.layers {
            s.content.insert(
                format!("/v2/{repo}/blobs/{}", l.digest),
                ("application/octet-stream".into(), l.bytes.clone()),
            );
        }
    }

    pub fn fault(&self, path: &str, fault: Fault) {
        self.state.lock().unwrap().faults.insert(path.into(), fault);
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// From now on, demand credentials.
    pub fn require(&self, auth: FakeAuth) {
        self.state.lock().unwrap().auth = Some(auth);
    }

    /// Query strings of the token requests seen.
    pub fn token_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().token_requests.clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// `Range` headers seen, as `path bytes=N-`.
    pub fn ranges(&self) -> Vec<String> {
        self.state.lock().unwrap().ranges.clone()
    }
}

async fn serve(
    mut conn: TcpStream,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).await? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let (method, path) = (
            first.first().copied().unwrap_or(""),
            first.get(1).copied().unwrap_or(""),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let range = header("range");
        let auth = state.lock().unwrap().auth.clone();
        if let Some(auth) = auth {
            let addr = conn.local_addr()?;
            if let Some(reply) = check_auth(&auth, path, header("authorization"), addr, &state) {
                conn.write_all(reply.as_bytes()).await?;
                continue;
            }
        }
        if path == "/v2/" || path == "/v2" {
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
            )
            .await?;
            continue;
        }
        let (entry, fault, hit) = {
            let mut s = state.lock().unwrap();
            let hit = {
                let h = s.hits.entry(path.to_string()).or_default();
                *h += 1;
                *h
            };
            if let Some(r) = &range {
                s.ranges.push(format!("{path} {r}"));
            }
            (
                s.content.get(path).cloned(),
                s.faults.get(path).cloned(),
                hit,
            )
        };
        let Some((ctype, mut body)) = entry else {
            let msg = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"not found"}]}"#;
            conn.write_all(format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", msg.len()).as_bytes()).await?;
            conn.write_all(msg).await?;
            continue;
        };
        match fault {
            Some(Fault::Status500(n)) if hit <= n => {
                conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
                )
                .await?;
                continue;
            }
            Some(Fault::Replace(b)) => body = b,
            Some(Fault::Truncate(n)) if range.is_none() => {
                conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await?;
                conn.write_all(&body[..n.min(body.len())]).await?;
                return Ok(()); // drop the connection mid-body
            }
            Some(Fault::Truncate(_)) => {
                // A truncating registry that also refuses ranges: answer 500.
                conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
                )
                .await?;
                continue;
            }
            Some(Fault::DropOnce(n)) if hit == 1 => {
                conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await?;
                conn.write_all(&body[..n.min(body.len())]).await?;
                return Ok(());
            }
            _ => {}
        }
        let digest_header = if path.contains("/manifests/") {
            path.rsplit('/').next().unwrap_or("").to_string()
        } else {
            String::new()
        };
        let dh = if digest_header.is_empty() {
            String::new()
        } else {
            format!("Docker-Content-Digest: {digest_header}\r\n")
        };
        if let (Some(r), "GET") = (&range, method) {
            let start: usize = r
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .split('-')
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            let part = &body[start.min(body.len())..];
            conn.write_all(format!("HTTP/1.1 206 Partial Content\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n", part.len(), body.len().saturating_sub(1), body.len()).as_bytes()).await?;
            conn.write_all(part).await?;
            continue;
        }
        conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{dh}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
        if method != "HEAD" {
            conn.write_all(&body).await?;
        }
    }
}

fn basic_header(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// The reply to send instead of the content, or `None` when the request may pass.
fn check_auth(
    auth: &FakeAuth,
    path: &str,
    given: Option<String>,
    addr: std::net::SocketAddr,
    state: &Mutex<State>,
) -> Option<String> {
    let unauthorized = |challenge: String| {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    match auth {
        FakeAuth::Basic(u, p) => (given != Some(basic_header(u, p)))
            .then(|| unauthorized(r#"Basic realm="fake""#.into())),
        FakeAuth::Bearer(u, p) => {
            if let Some(query) = path.strip_prefix("/token?") {
                state.lock().unwrap().token_requests.push(query.to_string());
                if given != Some(basic_header(u, p)) {
                    return Some("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into());
                }
                let body = format!(r#"{{"token":"{FAKE_TOKEN}","expires_in":300}}"#);
                return Some(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ));
            }
            (given != Some(format!("Bearer {FAKE_TOKEN}"))).then(|| {
                unauthorized(format!(
                    r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:demo/web:pull""#
                ))
            })
        }
    }
}
