//! A fault-injecting HTTP proxy in front of the controller: it forwards every request as is
//! (one request per connection), and hands the desired sets it relays to agents through a
//! test's hook first, e.g. to flip bytes of a sealed secret on the wire.

use crate::image::http;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alters a desired set (the JSON body of `GET /v1/hosts/{host}/desired`) on its way.
pub type Hook = Box<dyn Fn(&mut serde_json::Value) + Send + Sync>;

pub struct TamperProxy {
    /// `http://127.0.0.1:PORT`, for the agent's `[controller] url`.
    pub url: String,
    hook: Arc<Mutex<Option<Hook>>>,
}

impl TamperProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`IP:PORT`).
    pub fn start(upstream: &str) -> TamperProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hook: Arc<Mutex<Option<Hook>>> = Arc::default();
        let (h, upstream) = (hook.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (h, upstream) = (h.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, &upstream, &h);
                });
            }
        });
        TamperProxy { url, hook }
    }

    /// Desired sets relayed from now on go through `hook`; `None` relays them untouched.
    pub fn set_hook(&self, hook: Option<Hook>) {
        *self.hook.lock().unwrap() = hook;
    }
}

/// One request: read it, send it upstream with `Connection: close`, read the whole answer,
/// let the hook alter a desired set, answer with a fresh length and close.
fn relay(mut client: TcpStream, upstream: &str, hook: &Mutex<Option<Hook>>) -> anyhow::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < end + 4 + length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut out = format!("{request_line}\r\n");
    for l in lines.filter(|l| !l.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(out.as_bytes())?;
    up.write_all(&raw[end + 4..])?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let resp = http::parse(&answer, request_line.starts_with("HEAD "))?;
    let mut body = resp.body.clone();
    if request_line.contains("/desired") && resp.status == 200 {
        if let Some(h) = hook.lock().unwrap().as_ref() {
            let mut v: serde_json::Value = serde_json::from_slice(&body)?;
            h(&mut v);
            body = serde_json::to_vec(&v)?;
        }
    }
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut head = format!("{status_line}\r\n");
    for (k, v) in &resp.headers {
        let k_low = k.to_ascii_lowercase();
        if !["content-length", "transfer-encoding", "connection"].contains(&k_low.as_str()) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    client.write_all(head.as_bytes())?;
    client.write_all(&body)?;
    Ok(())
}
