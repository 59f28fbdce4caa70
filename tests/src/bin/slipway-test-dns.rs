//! `slipway-test-dns ADDR NAME=IPV4...`: a tiny authoritative DNS server for tests. Answers A
//! queries for the given names, an empty NOERROR for other types of those names, NXDOMAIN
//! for anything else. UDP only; one packet in, one packet out.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: slipway-test-dns ADDR:PORT NAME=IPV4..."))?;
    let mut names: HashMap<String, Ipv4Addr> = HashMap::new();
    for a in args {
        let (n, ip) = a
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{a}` is not NAME=IPV4"))?;
        names.insert(n.trim_end_matches('.').to_ascii_lowercase(), ip.parse()?);
    }
    let sock = UdpSocket::bind(&addr)?;
    eprintln!("slipway-test-dns serving {} names on {addr}", names.len());
    let mut buf = [0u8; 512];
    loop {
        let (n, peer) = sock.recv_from(&mut buf)?;
        if let Some(reply) = answer(&buf[..n], &names) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

fn answer(q: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels, then QTYPE and QCLASS.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let ip = names.get(&labels.join("."));
    let a = ip.filter(|_| qtype == 1);
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[..2]);
    let rcode = if ip.is_some() { 0 } else { 3 };
    r.extend_from_slice(&[0x84 | (q[2] & 1), 0x80 | rcode]); // QR AA (RD), RA, RCODE
    r.extend_from_slice(&[0, 1, 0, a.is_some() as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if let Some(ip) = a {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}
