//! Host + path routing on the shared listeners. The table is immutable and rebuilt on every
//! change, then swapped in whole (arc-swap), so a request looks its route up without a lock.
//! Most specific wins: an exact host before a wildcard, a longer path prefix before a shorter.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::header::HeaderValue;
use slipway_proto::EdgeSpec;

use crate::error::ProxyError;
use crate::router::App;

/// One (host, prefix) of an app, with what the shared listeners need to serve it.
#[derive(Debug)]
pub(crate) struct HostRoute {
    pub(crate) app: Arc<App>,
    pub(crate) prefix: Box<str>,
    pub(crate) strip: bool,
    /// Plain-HTTP requests get a redirect to https.
    pub(crate) redirect: bool,
    /// `Strict-Transport-Security` value sent on HTTPS answers.
    pub(crate) hsts: Option<HeaderValue>,
}

impl HostRoute {
    fn new(app: Arc<App>, e: &EdgeSpec) -> Self {
        let hsts = e.hsts.map(|d| {
            HeaderValue::try_from(format!("max-age={}", d.as_secs()))
                .expect("digits are a header value")
        });
        HostRoute {
            app,
            prefix: e.prefix().into(),
            strip: e.strip_prefix,
            redirect: e.tls.is_some() && e.redirect_https,
            hsts,
        }
    }

    /// True when `path` lies under this route's prefix (on a `/` boundary).
    fn matches(&self, path: &str) -> bool {
        let p = &*self.prefix;
        path.starts_with(p)
            && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
    }

    /// The path the upstream sees: the prefix removed when `strip_prefix` is set.
    pub(crate) fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip || &*self.prefix == "/" {
            return path;
        }
        let rest = &path[self.prefix.trim_end_matches('/').len()..];
        if rest.is_empty() {
            "/"
        } else {
            rest
        }
    }
}

/// Every host-routed app, by host name (wildcards by the name after `*.`).
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    exact: HashMap<Box<str>, Vec<Arc<HostRoute>>>,
    wildcard: HashMap<Box<str>, Vec<Arc<HostRoute>>>,
}

impl HostTable {
    /// Builds the table from every app's edge spec (collisions were refused before).
    pub(crate) fn build<'a>(apps: impl IntoIterator<Item = (&'a Arc<App>, &'a EdgeSpec)>) -> Self {
        let mut t = HostTable::default();
        for (app, e) in apps {
            let route = Arc::new(HostRoute::new(app.clone(), e));
            for h in &e.hosts {
                let (map, key) = match h.strip_prefix("*.") {
                    Some(rest) => (&mut t.wildcard, rest),
                    None => (&mut t.exact, h.as_str()),
                };
                map.entry(key.into()).or_default().push(route.clone());
            }
        }
        for v in t.exact.values_mut().chain(t.wildcard.values_mut()) {
            v.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        }
        t
    }

    /// The route for a request's host (as sent: any case, maybe a port) and path.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<&Arc<HostRoute>> {
        let host = strip_port(host).trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let routes = self.exact.get(host);
        if let Some(r) = routes.and_then(|v| v.iter().find(|r| r.matches(path))) {
            return Some(r);
        }
        let (_, parent) = host.split_once('.')?;
        let routes = self.wildcard.get(parent)?;
        routes.iter().find(|r| r.matches(path))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Refuses `edge` for `app` when one of its (host, prefix) pairs is another app's already.
pub(crate) fn check_collisions<'a>(
    app: &str,
    edge: &EdgeSpec,
    others: impl IntoIterator<Item = (&'a str, &'a EdgeSpec)>,
) -> Result<(), ProxyError> {
    for (other, oe) in others {
        if other == app || oe.prefix() != edge.prefix() {
            continue;
        }
        if let Some(h) = edge.hosts.iter().find(|h| oe.hosts.contains(h)) {
            return Err(ProxyError::HostTaken {
                app: app.to_owned(),
                host: h.clone(),
                prefix: edge.prefix().to_owned(),
                owner: other.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(hosts: &[&str], prefix: Option<&str>, strip: bool) -> EdgeSpec {
        EdgeSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.map(str::to_owned),
            strip_prefix: strip,
            ..EdgeSpec::default()
        }
    }

    fn app(name: &str) -> Arc<App> {
        Arc::new(App::new(name, 0, slipway_proto::Protocol::Http))
    }

    #[test]
    fn most_specific_route_wins() {
        let (shop, api, wild, other) = (app("shop"), app("api"), app("wild"), app("other"));
        let specs = [
            (&shop, edge(&["shop.example.com"], None, false)),
            (&api, edge(&["shop.example.com"], Some("/api"), true)),
            (&wild, edge(&["*.shop.example.com"], None, false)),
            (&other, edge(&["eu.shop.example.com"], Some("/x"), false)),
        ];
        let t = HostTable::build(specs.iter().map(|(a, e)| (*a, e)));
        let name = |h: &str, p: &str| t.lookup(h, p).map(|r| r.app.name.clone());
        assert_eq!(name("shop.example.com", "/").as_deref(), Some("shop"));
        assert_eq!(name("Shop.Example.com:443", "/api").as_deref(), Some("api"));
        assert_eq!(name("shop.example.com", "/api/v1").as_deref(), Some("api"));
        assert_eq!(name("shop.example.com", "/apix").as_deref(), Some("shop"));
        assert_eq!(
            name("eu.shop.example.com", "/x/1").as_deref(),
            Some("other")
        );
        // The exact host has no route for `/`: the wildcard serves it.
        assert_eq!(name("eu.shop.example.com", "/").as_deref(), Some("wild"));
        assert_eq!(name("a.b.shop.example.com", "/"), None);
        assert_eq!(name("unknown.example", "/"), None);
        let api_route = t.lookup("shop.example.com", "/api/v1?x").unwrap();
        assert_eq!(api_route.upstream_path("/api/v1"), "/v1");
        assert_eq!(api_route.upstream_path("/api"), "/");
    }

    #[test]
    fn a_taken_host_names_both_apps() {
        let a = edge(&["shop.example.com"], None, false);
        let b = edge(&["x.example", "shop.example.com"], None, false);
        let e = check_collisions("b", &b, [("a", &a)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`b`") && e.contains("`a`") && e.contains("shop.example.com"),
            "{e}"
        );
        let other_prefix = edge(&["shop.example.com"], Some("/api"), false);
        assert!(check_collisions("b", &other_prefix, [("a", &a)]).is_ok());
        assert!(check_collisions("a", &a, [("a", &a)]).is_ok());
    }
}
