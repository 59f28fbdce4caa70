//! Headers on the way through: hop-by-hop ones removed (RFC 9110 7.6.1), X-Forwarded-For,
//! -Proto and -Host set (client-sent values kept only from trusted proxies), request ids.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Request ids: a per-process random prefix and a counter; unique and cheap.
pub(crate) struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        RequestIds {
            prefix: h.finish() as u32,
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Relaxed);
        HeaderValue::try_from(format!("{:08x}-{n:012x}", self.prefix))
            .expect("hex digits are a valid header value")
    }
}

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(crate) fn has_token(h: &HeaderMap, name: HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

pub(crate) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && has_token(h, header::CONNECTION, "upgrade")
}

/// Removes hop-by-hop headers, those named in `Connection` included. For an upgrade,
/// `Upgrade` is kept and `Connection` reduced to `upgrade`.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One scan over the (few) names present instead of a hashed removal per hop-by-hop name.
    let mut present = 0u16;
    for name in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == name) {
            present |= 1 << i;
        }
    }
    if present & 1 != 0 {
        // HOP_BY_HOP[0] is `Connection`; usually one value, cloned cheaply (shared bytes).
        let mut values = h.get_all(header::CONNECTION).iter();
        match (values.next().cloned(), values.next().is_some()) {
            (Some(v), false) => remove_named(h, &v, upgrade),
            _ => {
                let all: Vec<HeaderValue> = h.get_all(header::CONNECTION).iter().cloned().collect();
                for v in &all {
                    remove_named(h, v, upgrade);
                }
            }
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 && !(upgrade && n == header::UPGRADE) {
            h.remove(n);
        }
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers a `Connection` value names (by name, without allocating).
fn remove_named(h: &mut HeaderMap, connection: &HeaderValue, upgrade: bool) {
    let Ok(s) = connection.to_str() else { return };
    for t in s.split(',').map(str::trim) {
        let keep = t.is_empty() || (upgrade && t.eq_ignore_ascii_case("upgrade"));
        if !keep {
            h.remove(t);
        }
    }
}

/// What the proxy knows of one client connection for the forwarded headers.
pub(crate) struct Forwarded<'a> {
    /// The client's address (or the one a PROXY protocol header named), as a header value.
    pub(crate) peer_ip: &'a HeaderValue,
    /// `https` under TLS, else `http`.
    pub(crate) proto: &'static str,
    /// The peer is a trusted proxy: its X-Forwarded-* values are kept and extended.
    pub(crate) trusted: bool,
}

/// Strips hop-by-hop headers and sets X-Forwarded-For/-Proto/-Host and X-Request-Id.
pub(crate) fn prepare_request(
    h: &mut HeaderMap,
    upgrade: bool,
    host: Option<&HeaderValue>,
    f: &Forwarded<'_>,
    ids: &RequestIds,
) {
    strip_hop_by_hop(h, upgrade);
    match h.entry(X_FORWARDED_FOR) {
        header::Entry::Occupied(mut e) if f.trusted => {
            let prev = e.get();
            let mut v = Vec::with_capacity(prev.len() + 2 + f.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(f.peer_ip.as_bytes());
            e.insert(HeaderValue::from_bytes(&v).unwrap_or_else(|_| f.peer_ip.clone()));
        }
        header::Entry::Occupied(mut e) => {
            e.insert(f.peer_ip.clone());
        }
        header::Entry::Vacant(e) => {
            e.insert(f.peer_ip.clone());
        }
    }
    if !(f.trusted && h.contains_key(X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
    }
    if !(f.trusted && h.contains_key(X_FORWARDED_HOST)) {
        match host {
            Some(v) => h.insert(X_FORWARDED_HOST, v.clone()),
            None => h.remove(X_FORWARDED_HOST),
        };
    }
    h.entry(X_REQUEST_ID).or_insert_with(|| ids.next());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_named_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::HOST));
    }

    #[test]
    fn every_connection_line_is_honoured_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" x-two ,close"),
        );
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("x-two", HeaderValue::from_static("2"));
        h.insert("x-three", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-three"]);
    }

    #[test]
    fn plain_request_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn upgrade_keeps_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
    }
}
