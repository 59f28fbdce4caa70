//! The container's name files: `/etc/resolv.conf` from the host's (a systemd-resolved stub is
//! replaced by its upstream servers, loopback servers dropped: they do not exist inside the
//! netns), overridden by the agent config and then the app spec; `/etc/hosts` with localhost
//! and the container's own name and address; `/etc/hostname`.

use crate::config::DnsConfig;
use crate::defaults;
use slipway_proto::DnsSpec;
use std::net::IpAddr;
use std::path::Path;

/// Parsed `nameserver`, `search` and `options` lines of a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolv {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    pub fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // `fe80::1%eth0` zone ids do not parse and mean nothing in the netns.
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        r.servers.push(ip);
                    }
                }
                // The last search/domain line wins, as in glibc.
                Some("search") | Some("domain") => r.search = words.map(String::from).collect(),
                Some("options") => r.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        r
    }

    /// The file's text: servers, search, options (with [`defaults::RESOLV_OPTIONS`] added
    /// unless already set).
    pub fn render(&self) -> String {
        let mut out = String::from("# written by slipway for this container\n");
        for s in &self.servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        let mut options = self.options.clone();
        for d in defaults::RESOLV_OPTIONS {
            let key = d.split(':').next().unwrap_or(d);
            if !options.iter().any(|o| o.split(':').next() == Some(key)) {
                options.push(d.to_string());
            }
        }
        out.push_str(&format!("options {}\n", options.join(" ")));
        out
    }
}

/// The host's resolvers as a container can use them: the stub `127.0.0.53` replaced by
/// systemd-resolved's upstream list, loopback servers dropped.
pub fn host_resolv(cfg: &DnsConfig) -> Resolv {
    let read = |p: &Path| std::fs::read_to_string(p).map(|t| Resolv::parse(&t));
    let mut r = read(&cfg.host_resolv_conf).unwrap_or_default();
    let stub: IpAddr = [127, 0, 0, 53].into();
    if r.servers.contains(&stub) {
        if let Ok(up) = read(&cfg.resolved_resolv_conf) {
            r.servers = up.servers;
            if r.search.is_empty() {
                r.search = up.search;
            }
        }
    }
    r.servers.retain(|s| !s.is_loopback());
    r
}

/// The container's resolv.conf: each list from the spec when set, else the agent config's,
/// else the host's.
pub fn resolv_conf(host: &Resolv, cfg: &DnsConfig, spec: &DnsSpec) -> Resolv {
    fn pick<T: Clone>(spec: &[T], cfg: &[T], host: &[T]) -> Vec<T> {
        [spec, cfg, host]
            .into_iter()
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_vec()
    }
    Resolv {
        servers: pick(&spec.servers, &cfg.servers, &host.servers),
        search: pick(&spec.search, &cfg.search, &host.search),
        options: pick(&spec.options, &cfg.options, &host.options),
    }
}

/// A valid hostname from a container id: at most 63 bytes, no trailing `-`.
pub fn hostname(id: &str) -> String {
    let mut h: String = id.chars().take(defaults::MAX_HOSTNAME).collect();
    while h.ends_with('-') {
        h.pop();
    }
    if h.is_empty() {
        h.push_str("container");
    }
    h
}

/// `/etc/hosts`: localhost (v4 and v6) and the container's name on its address.
pub fn hosts(hostname: &str, address: IpAddr) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, host: &str, resolved: Option<&str>) -> DnsConfig {
        std::fs::write(dir.join("resolv.conf"), host).unwrap();
        if let Some(r) = resolved {
            std::fs::write(dir.join("upstream.conf"), r).unwrap();
        }
        DnsConfig {
            host_resolv_conf: dir.join("resolv.conf"),
            resolved_resolv_conf: dir.join("upstream.conf"),
            ..DnsConfig::default()
        }
    }

    #[test]
    fn resolved_stub_is_replaced_by_upstreams_and_loopback_dropped() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(
            d.path(),
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
            Some("nameserver 10.0.0.1\nnameserver 10.0.0.2\n"),
        );
        let r = host_resolv(&c);
        assert_eq!(
            r.servers,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(r.search, ["lan"]);
        let text = resolv_conf(&r, &c, &DnsSpec::default()).render();
        assert!(
            text.contains("nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch lan\n"),
            "{text}"
        );
        assert!(
            text.contains("options edns0 trust-ad timeout:1 attempts:2"),
            "{text}"
        );

        let c = cfg(d.path(), "nameserver 127.0.0.1\nnameserver ::1\n", None);
        let text = resolv_conf(&host_resolv(&c), &c, &DnsSpec::default()).render();
        assert!(
            !text.contains("nameserver"),
            "a loopback server leaked: {text}"
        );
    }

    #[test]
    fn spec_beats_agent_config_beats_host() {
        let host = Resolv::parse("nameserver 10.9.9.9\nsearch h\noptions ndots:2 timeout:3\n");
        let agent = DnsConfig {
            servers: vec!["10.1.1.1".parse().unwrap()],
            ..DnsConfig::default()
        };
        let spec = DnsSpec {
            search: vec!["app.test".into()],
            ..DnsSpec::default()
        };
        let text = resolv_conf(&host, &agent, &spec).render();
        assert!(
            text.contains("nameserver 10.1.1.1\n") && !text.contains("10.9.9.9"),
            "{text}"
        );
        assert!(text.contains("search app.test\n"), "{text}");
        assert!(
            text.contains("options ndots:2 timeout:3 attempts:2\n"),
            "{text}"
        );
    }

    #[test]
    fn hostnames_are_valid_labels() {
        assert_eq!(hostname("web-1-0123456789ab"), "web-1-0123456789ab");
        let long = format!("{}-1-0123456789ab", "a".repeat(48));
        assert!(hostname(&long).len() <= 63);
        assert_eq!(hostname(&format!("{}-x", "b".repeat(62))), "b".repeat(62));
        assert!(hosts("web", "10.88.0.5".parse().unwrap()).contains("10.88.0.5\tweb\n"));
    }
}
