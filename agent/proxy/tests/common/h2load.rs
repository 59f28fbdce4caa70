//! A browser-like HTTP/2 load client over TLS (ALPN h2): `connections` connections carrying
//! `streams` concurrent GETs each. When its connection goes away (GOAWAY, REFUSED_STREAM, a
//! closed connection) it opens a new one and resends only the requests the server did not
//! process (RFC 9113 section 8.7): those hyper hands back unsent, those refused with
//! REFUSED_STREAM, and those above a GOAWAY's last stream id. Anything else — an error on an
//! accepted stream, a wrong status or body, a connection that cannot be opened — is a failed
//! request. h2load, by contrast, opens no new connection after a GOAWAY.
//!
//! Used by `tests/takeover_h2.rs` and by `examples/h2_retry_load.rs` (deploy/bench/proxy.sh).
#![allow(dead_code)]

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// A request resent this many times without an answer counts as failed.
const MAX_ATTEMPTS: u32 = 10;
/// Error messages kept for the report.
const MAX_ERRORS: usize = 20;

/// What to load and how hard.
#[derive(Clone)]
pub struct Load {
    /// Where to connect.
    pub addr: SocketAddr,
    /// SNI and `:authority`.
    pub host: String,
    /// Path of every request.
    pub path: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub connections: usize,
    /// Concurrent requests per connection.
    pub streams: usize,
    /// Stop after this many requests (answered or failed).
    pub requests: u64,
    /// Or when this turns true.
    pub stop: Arc<AtomicBool>,
    /// Body every response must have (status 200 is always required).
    pub expect: Option<Bytes>,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: u64,
    pub failed: u64,
    /// Requests resent on a new connection because the server had not processed them.
    pub retried: u64,
    pub connections: u64,
    pub elapsed: Duration,
    /// Latency of every answered request (of its last attempt), sorted.
    pub latencies: Vec<Duration>,
    /// The first few failures, described.
    pub errors: Vec<String>,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency below which `p` (0..=1) of answered requests fall.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }
}

/// A client configuration trusting the certificates in `ca_pem`, offering only h2.
pub fn tls_trusting(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.expect("a PEM certificate"))
            .expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

struct Shared {
    load: Load,
    uri: Uri,
    issued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    connections: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    /// Takes the next request to send, if any are left.
    fn claim(&self) -> bool {
        !self.load.stop.load(Relaxed) && self.issued.fetch_add(1, Relaxed) < self.load.requests
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        let mut e = self.errors.lock().unwrap();
        if e.len() < MAX_ERRORS {
            e.push(why);
        }
    }
}

/// Runs the load to its end and reports.
pub async fn run(load: Load) -> Report {
    let uri = format!("https://{}:{}{}", load.host, load.addr.port(), load.path)
        .parse()
        .expect("host and path make a URI");
    let sh = Arc::new(Shared {
        load,
        uri,
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let mut slots = JoinSet::new();
    for _ in 0..sh.load.connections {
        slots.spawn(slot(sh.clone()));
    }
    while slots.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let mut latencies = std::mem::take(&mut *sh.latencies.lock().unwrap());
    latencies.sort_unstable();
    let errors = std::mem::take(&mut *sh.errors.lock().unwrap());
    Report {
        ok: sh.ok.load(Relaxed),
        failed: sh.failed.load(Relaxed),
        retried: sh.retried.load(Relaxed),
        connections: sh.connections.load(Relaxed),
        elapsed,
        latencies,
        errors,
    }
}

/// One client connection at a time, replaced whenever it goes away; requests it carried
/// unprocessed move to the next one.
async fn slot(sh: Arc<Shared>) {
    // Attempts so far of each request waiting for a new connection.
    let mut pending: Vec<u32> = Vec::new();
    let mut refused = 0;
    loop {
        if pending.is_empty()
            && (sh.load.stop.load(Relaxed) || sh.issued.load(Relaxed) >= sh.load.requests)
        {
            return;
        }
        let send = match connect(&sh.load).await {
            Ok(s) => s,
            Err(e) => {
                // A browser would show an error page: every waiting request has failed.
                let n = pending.len().max(1);
                for _ in 0..n {
                    sh.fail(format!("cannot open a connection: {e}"));
                }
                pending.clear();
                refused += 1;
                if refused > 100 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        refused = 0;
        sh.connections.fetch_add(1, Relaxed);
        let mut streams = JoinSet::new();
        for _ in 0..sh.load.streams {
            streams.spawn(stream(sh.clone(), send.clone(), pending.pop()));
        }
        drop(send);
        while let Some(r) = streams.join_next().await {
            if let Ok(Some(attempts)) = r {
                pending.push(attempts);
            }
        }
    }
}

async fn connect(load: &Load) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = TcpStream::connect(load.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", load.addr))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(load.host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(load.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the server did not pick h2 by ALPN".into());
    }
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// Sends requests one after another on `send` until none are left (None) or the connection
/// goes away; then answers the attempts of the request to resend on a new one, if any.
async fn stream(
    sh: Arc<Shared>,
    mut send: SendRequest<Empty<Bytes>>,
    mut carried: Option<u32>,
) -> Option<u32> {
    loop {
        let attempts = match carried.take() {
            Some(a) => a,
            None if sh.claim() => 0,
            None => return None,
        };
        if send.ready().await.is_err() {
            return Some(attempts); // closed: nothing was sent on it
        }
        let req = Request::get(sh.uri.clone())
            .body(Empty::<Bytes>::new())
            .expect("a GET is a request");
        let start = Instant::now();
        match send.try_send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                match resp.into_body().collect().await.map(|b| b.to_bytes()) {
                    Ok(body)
                        if status == StatusCode::OK
                            && sh.load.expect.as_ref().is_none_or(|w| *w == body) =>
                    {
                        sh.ok.fetch_add(1, Relaxed);
                        sh.latencies.lock().unwrap().push(start.elapsed());
                    }
                    Ok(body) => sh.fail(format!("{status} {body:?}")),
                    Err(e) => sh.fail(format!("response body cut: {}", chain(&e))),
                }
            }
            Err(mut e) => {
                let unsent = e.take_message().is_some();
                let e = e.into_error();
                if !(unsent || unprocessed(&e)) {
                    sh.fail(format!("request failed: {}", chain(&e)));
                    continue;
                }
                if attempts + 1 >= MAX_ATTEMPTS {
                    sh.fail(format!(
                        "not processed after {MAX_ATTEMPTS} attempts: {}",
                        chain(&e)
                    ));
                    continue;
                }
                sh.retried.fetch_add(1, Relaxed);
                return Some(attempts + 1);
            }
        }
    }
}

/// The server says it did not process the request: refused (REFUSED_STREAM), or above the
/// last stream id of a graceful GOAWAY (h2 fails only those streams with it).
fn unprocessed(e: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(c) = cur {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        cur = c.source();
    }
    false
}

fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
