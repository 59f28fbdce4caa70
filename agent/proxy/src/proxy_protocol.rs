//! PROXY protocol (HAProxy's, v1 text and v2 binary): accepted on the public listeners when
//! the proxy sits behind a load balancer (`EdgeConfig::proxy_protocol`), so the client's
//! address is the real one; and sent (v1) to TCP upstreams whose app asks for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature (12 bytes).
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;

fn bad(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("PROXY protocol header: {why}"),
    )
}

/// Reads the PROXY header from the start of `s`; answers the client address it names
/// (None for `UNKNOWN`/`LOCAL`: keep the peer's). Reads nothing past the header.
pub(crate) async fn read_header(s: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let mut peek = [0u8; V1_MAX];
    let n = loop {
        let n = s.peek(&mut peek).await?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        if n >= 16 || peek[..n].contains(&b'\n') {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    };
    let head = &peek[..n];
    if head.starts_with(b"PROXY ") {
        let end = head
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("v1 line too long"))?;
        let mut line = vec![0u8; end + 2];
        s.read_exact(&mut line).await?;
        return parse_v1(&line[..end]);
    }
    if head.len() >= 16 && &head[..12] == V2_SIG {
        let mut fixed = [0u8; 16];
        s.read_exact(&mut fixed).await?;
        let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest).await?;
        return parse_v2(fixed[12], fixed[13], &rest);
    }
    Err(bad("missing (this listener expects one)"))
}

fn parse_v1(line: &[u8]) -> io::Result<Option<SocketAddr>> {
    let text = std::str::from_utf8(line).map_err(|_| bad("v1 not ASCII"))?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| bad("v1 source address"))?;
            let port: u16 = sport.parse().map_err(|_| bad("v1 source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(bad("v1 line malformed")),
    }
}

fn parse_v2(ver_cmd: u8, fam: u8, rest: &[u8]) -> io::Result<Option<SocketAddr>> {
    if ver_cmd >> 4 != 2 {
        return Err(bad("v2 version"));
    }
    if ver_cmd & 0x0f == 0 {
        return Ok(None); // LOCAL: a health check from the balancer itself
    }
    match fam >> 4 {
        1 if rest.len() >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let port = u16::from_be_bytes([rest[8], rest[9]]);
            Ok(Some(SocketAddr::new(ip.into(), port)))
        }
        2 if rest.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&rest[..16]);
            let port = u16::from_be_bytes([rest[32], rest[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(o).into(), port)))
        }
        0 => Ok(None),
        _ => Err(bad("v2 address family or length")),
    }
}

/// The v1 line telling an upstream who the client is.
pub(crate) fn v1_line(client: SocketAddr, local: SocketAddr) -> String {
    let fam = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
        (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
        _ => return "PROXY UNKNOWN\r\n".into(),
    };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        client.ip(),
        local.ip(),
        client.port(),
        local.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_name_the_client() {
        let a = parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443").unwrap();
        assert_eq!(a, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(parse_v1(b"PROXY UNKNOWN").unwrap(), None);
        assert!(parse_v1(b"PROXY TCP4 x y 1 2").is_err());
        let mut v4 = vec![203, 0, 113, 7, 10, 0, 0, 1];
        v4.extend_from_slice(&51000u16.to_be_bytes());
        v4.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            parse_v2(0x21, 0x11, &v4).unwrap(),
            Some("203.0.113.7:51000".parse().unwrap())
        );
        assert_eq!(parse_v2(0x20, 0x00, &[]).unwrap(), None);
        let line = v1_line("1.2.3.4:5".parse().unwrap(), "6.7.8.9:10".parse().unwrap());
        assert_eq!(line, "PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n");
    }
}
