//! A browser-like HTTP/2 load generator for deploy/bench/proxy.sh's "upgrade mid-run" row:
//! on GOAWAY, REFUSED_STREAM or a closed connection it reconnects and resends only requests
//! the server did not process (h2load does not reconnect, so it counts those as failed).
//!
//!   h2_retry_load --url https://localhost:8443/ --ca cert.pem [-c 32] [-m 10] [-n 200000]
//!
//! Prints a summary and a last line `result RPS P99_MS FAILED RETRIED CONNECTIONS`.

#[path = "../tests/common/h2load.rs"]
mod h2load;

use std::net::ToSocketAddrs;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() {
    let mut url = None;
    let mut ca = None;
    let (mut connections, mut streams, mut requests) = (32usize, 10usize, 200_000u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value),
            "--ca" => ca = Some(value),
            "-c" => connections = value.parse().expect("-c takes a count"),
            "-m" => streams = value.parse().expect("-m takes a count"),
            "-n" => requests = value.parse().expect("-n takes a count"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    let url: hyper::Uri = url
        .expect("--url is required")
        .parse()
        .expect("--url parses");
    let host = url.host().expect("--url has a host").to_owned();
    let port = url.port_u16().unwrap_or(443);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .expect("--url's host resolves")
        .next()
        .expect("--url's host has an address");
    let ca = std::fs::read(ca.expect("--ca is required")).expect("--ca is readable");
    let load = h2load::Load {
        addr,
        host,
        path: url.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        tls: h2load::tls_trusting(&ca),
        connections,
        streams,
        requests,
        stop: Arc::new(AtomicBool::new(false)),
        expect: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts");
    let r = rt.block_on(h2load::run(load));
    for e in &r.errors {
        eprintln!("failed: {e}");
    }
    println!(
        "finished in {:.2?}, {:.2} req/s; {} ok, {} failed, {} retried on {} connections",
        r.elapsed,
        r.rps(),
        r.ok,
        r.failed,
        r.retried,
        r.connections
    );
    println!(
        "latency p50 {:.2?} p99 {:.2?} max {:.2?}",
        r.percentile(0.5),
        r.percentile(0.99),
        r.percentile(1.0)
    );
    println!(
        "result {:.2} {:.2} {} {} {}",
        r.rps(),
        r.percentile(0.99).as_secs_f64() * 1000.0,
        r.failed,
        r.retried,
        r.connections
    );
}
