//! A bounded load client for swap tests: keep-alive HTTP/1.1 connections to one loopback
//! address, counting answers by status and body, and every failure with its reason.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hard limit on how long a load runs, whatever the test does.
pub const MAX_RUN: Duration = Duration::from_secs(180);

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// Keep-alive connections the server closed before answering a request that was then sent
    /// again on a new connection (what browsers do); a zero-downtime swap should have none.
    pub retried: u64,
    /// Body -> count, for 2xx answers.
    pub bodies: BTreeMap<String, u64>,
    /// The first few failures, with reasons.
    pub errors: Vec<String>,
    /// Latencies of successful requests, in microseconds (sorted by `finish`).
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i]
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `conns` client threads, each on its own keep-alive connection (reconnecting when
    /// the server closes it cleanly between requests).
    pub fn start(addr: SocketAddr, conns: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let threads = (0..conns)
            .map(|_| {
                let (stop, report) = (stop.clone(), report.clone());
                std::thread::spawn(move || client(addr, &stop, &report))
            })
            .collect();
        Load {
            stop,
            report,
            threads,
        }
    }

    /// A snapshot of the counts so far.
    pub fn snapshot(&self) -> LoadReport {
        self.report.lock().unwrap().clone()
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let mut r = self.report.lock().unwrap().clone();
        r.latencies_us.sort_unstable();
        r
    }
}

fn client(addr: SocketAddr, stop: &AtomicBool, report: &Mutex<LoadReport>) {
    let started = Instant::now();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    s.set_nodelay(true).ok();
                    conn = Some(BufReader::new(s));
                }
                Err(e) => {
                    fail(report, format!("connect {addr}: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let t = Instant::now();
        match request(c, addr) {
            Ok((status, body, keep)) => {
                let mut r = report.lock().unwrap();
                if (200..300).contains(&status) {
                    r.ok += 1;
                    r.latencies_us.push(t.elapsed().as_micros() as u64);
                    *r.bodies.entry(body).or_default() += 1;
                } else {
                    r.failed += 1;
                    if r.errors.len() < 20 {
                        r.errors.push(format!("HTTP {status}: {body}"));
                    }
                }
                if !keep {
                    conn = None;
                }
            }
            Err(Closed) => {
                report.lock().unwrap().retried += 1;
                conn = None;
            }
            Err(Failed(e)) => {
                fail(report, e);
                conn = None;
            }
        }
    }
}

fn fail(report: &Mutex<LoadReport>, e: String) {
    let mut r = report.lock().unwrap();
    r.failed += 1;
    if r.errors.len() < 20 {
        r.errors.push(e);
    }
}

enum Error {
    /// Closed before any byte of the answer: safe to retry (the request was never taken).
    Closed,
    Failed(String),
}
use Error::{Closed, Failed};

fn request(c: &mut BufReader<TcpStream>, addr: SocketAddr) -> Result<(u16, String, bool), Error> {
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slipway-load\r\n\r\n");
    if c.get_mut().write_all(req.as_bytes()).is_err() {
        return Err(Closed);
    }
    let mut line = String::new();
    match c.read_line(&mut line) {
        Ok(0) => return Err(Closed),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(Closed),
        Err(e) => return Err(Failed(format!("reading status: {e}"))),
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failed(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    let mut keep = true;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        c.read_line(&mut h)
            .map_err(|e| Failed(format!("reading headers: {e}")))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().map_err(|_| Failed(format!("bad {h}")))?;
        } else if lower.starts_with("connection:") && lower.contains("close") {
            keep = false;
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        read_chunked(c)?
    } else {
        let mut body = vec![0u8; len];
        c.read_exact(&mut body)
            .map_err(|e| Failed(format!("reading body: {e}")))?;
        body
    };
    Ok((
        status,
        String::from_utf8_lossy(&body).trim().to_string(),
        keep,
    ))
}

fn read_chunked(c: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        c.read_line(&mut size)
            .map_err(|e| Failed(format!("reading chunk size: {e}")))?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| Failed(format!("bad chunk size {size:?}")))?;
        let mut chunk = vec![0u8; n + 2];
        c.read_exact(&mut chunk)
            .map_err(|e| Failed(format!("reading chunk: {e}")))?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}
