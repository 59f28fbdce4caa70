//! The `[edge]` table of an app spec: how the proxy's shared HTTP(S) listeners route to the
//! app (hosts, path prefix), its TLS certificate (files or ACME), redirect and HSTS.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::SpecError;

/// Routing and TLS of an app on the shared listeners (80/443 by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Host names routed to the app: `shop.example.com`, or `*.shop.example.com` for any one
    /// label in front of it. Empty: the app is reached only on its own `listen` port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Only requests whose path starts with this (on a `/` boundary) go to the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Remove `path_prefix` from the path before the request goes upstream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_prefix: bool,
    /// TLS termination on the shared HTTPS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// With `tls`: answer plain-HTTP requests with a redirect to https (308).
    #[serde(default = "d_true", skip_serializing_if = "is_true")]
    pub redirect_https: bool,
    /// With `tls`: send `Strict-Transport-Security` with this max-age.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub hsts: Option<Duration>,
    /// Speak HTTP/2 without TLS (h2c) to the container, e.g. for gRPC.
    #[serde(default, skip_serializing_if = "is_false")]
    pub upstream_h2c: bool,
    /// TCP apps: start each upstream connection with a PROXY protocol v1 line naming the
    /// client.
    #[serde(default, skip_serializing_if = "is_false")]
    pub send_proxy_protocol: bool,
}

/// Where the certificate of an app's hosts comes from: PEM files on the host, or ACME.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificate chain (leaf first); reloaded when the file changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Obtain and renew one certificate per host from the proxy's ACME directory.
    #[serde(default, skip_serializing_if = "is_false")]
    pub acme: bool,
}

impl Default for EdgeSpec {
    fn default() -> Self {
        EdgeSpec {
            hosts: Vec::new(),
            path_prefix: None,
            strip_prefix: false,
            tls: None,
            redirect_https: true,
            hsts: None,
            upstream_h2c: false,
            send_proxy_protocol: false,
        }
    }
}

fn d_true() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl EdgeSpec {
    /// True when the app uses no shared listener (the `[edge]` table is left out).
    pub fn is_default(&self) -> bool {
        *self == EdgeSpec::default()
    }

    /// The path prefix, `/` when unset.
    pub fn prefix(&self) -> &str {
        self.path_prefix.as_deref().unwrap_or("/")
    }

    /// Checks host names, the prefix and the TLS source; errors name the `edge.*` key.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            valid_host(h).map_err(|r| invalid(format!("edge.hosts[{i}]"), r))?;
            if !seen.insert(h) {
                return Err(invalid(
                    format!("edge.hosts[{i}]"),
                    format!("`{h}` is listed twice"),
                ));
            }
        }
        if let Some(p) = &self.path_prefix {
            if !p.starts_with('/') || p.contains(['?', '#', ' ']) || p.contains("//") {
                return Err(invalid(
                    "edge.path_prefix",
                    format!("`{p}` must start with `/` and hold no `?`, `#`, space or `//`"),
                ));
            }
        }
        let needs_hosts = [
            ("edge.path_prefix", self.path_prefix.is_some()),
            ("edge.strip_prefix", self.strip_prefix),
            ("edge.tls", self.tls.is_some()),
            ("edge.hsts", self.hsts.is_some()),
        ];
        if self.hosts.is_empty() {
            if let Some((key, _)) = needs_hosts.iter().find(|(_, set)| *set) {
                return Err(invalid(*key, "needs `edge.hosts`"));
            }
        }
        if self.hsts.is_some() && self.tls.is_none() {
            return Err(invalid("edge.hsts", "needs `edge.tls`"));
        }
        if let Some(t) = &self.tls {
            match (&t.cert, &t.key, t.acme) {
                (Some(_), Some(_), false) | (None, None, true) => {}
                (Some(_), None, false) => {
                    return Err(invalid("edge.tls.key", "`cert` needs `key`"))
                }
                (None, Some(_), false) => {
                    return Err(invalid("edge.tls.cert", "`key` needs `cert`"))
                }
                (None, None, false) => {
                    return Err(invalid(
                        "edge.tls",
                        "set `cert` and `key`, or `acme = true`",
                    ))
                }
                _ => {
                    return Err(invalid(
                        "edge.tls.acme",
                        "use either certificate files or ACME, not both",
                    ))
                }
            }
            for (key, p) in [("edge.tls.cert", &t.cert), ("edge.tls.key", &t.key)] {
                if let Some(p) = p {
                    if !p.is_absolute() {
                        return Err(invalid(
                            key,
                            format!("`{}` must be an absolute path", p.display()),
                        ));
                    }
                }
            }
            if t.acme {
                if let Some(h) = self.hosts.iter().find(|h| h.starts_with("*.")) {
                    return Err(invalid(
                        "edge.tls.acme",
                        format!("`{h}`: wildcard certificates need DNS-01, which Slipway does not do; use certificate files"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A host name as routed: lowercase DNS labels, optionally `*.` in front.
pub fn valid_host(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(ok_label) {
        return Err(format!(
            "`{h}` is not a host name: lowercase letters, digits and `-` in dot-separated labels, \
             optionally `*.` in front"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(toml_text: &str) -> Result<EdgeSpec, SpecError> {
        let e: EdgeSpec = toml::from_str(toml_text).map_err(|e| SpecError::Parse(e.to_string()))?;
        e.validate()?;
        Ok(e)
    }

    #[test]
    fn hosts_prefix_and_tls_parse() {
        let e = edge(
            r#"hosts = ["shop.example.com", "*.shop.example.com"]
path_prefix = "/api"
strip_prefix = true
hsts = "1y"
tls = { cert = "/etc/certs/shop.pem", key = "/etc/certs/shop.key" }"#,
        )
        .unwrap();
        assert_eq!(e.prefix(), "/api");
        assert!(e.redirect_https);
        assert!(!e.is_default());
        assert!(EdgeSpec::default().is_default());
    }

    #[test]
    fn bad_input_names_the_key() {
        let cases = [
            (r#"hosts = ["Shop.example"]"#, "edge.hosts[0]"),
            (r#"hosts = ["a.b", "a.b"]"#, "edge.hosts[1]"),
            (r#"path_prefix = "/api""#, "edge.path_prefix"),
            (
                r#"hosts = ["a.b"]
path_prefix = "api""#,
                "edge.path_prefix",
            ),
            (
                r#"hosts = ["a.b"]
tls = { cert = "/c.pem" }"#,
                "edge.tls.key",
            ),
            (
                r#"hosts = ["a.b"]
tls = { cert = "/c.pem", key = "/k.pem", acme = true }"#,
                "edge.tls.acme",
            ),
            (
                r#"hosts = ["*.a.b"]
tls = { acme = true }"#,
                "edge.tls.acme",
            ),
            (
                r#"hosts = ["a.b"]
hsts = "1d""#,
                "edge.hsts",
            ),
        ];
        for (text, key) in cases {
            let e = edge(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
        }
    }

    #[test]
    fn app_routed_by_host_needs_no_port() {
        let base = "name = \"shop\"\nimage = \"r.example/shop\"\ncontainer_port = 80\n";
        let s =
            crate::AppSpec::from_toml(&format!("{base}[edge]\nhosts = [\"shop.example.com\"]\n"))
                .unwrap();
        assert_eq!(s.listen, 0);
        assert_eq!(s.edge.hosts, ["shop.example.com"]);
        let e = crate::AppSpec::from_toml(base).unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        let tcp = format!("{base}protocol = \"tcp\"\n[edge]\nhosts = [\"a.b\"]\n");
        let e = crate::AppSpec::from_toml(&tcp).unwrap_err().to_string();
        assert!(e.contains("`edge.hosts`"), "{e}");
        // Specs without [edge] serialize as before (signed bytes unchanged).
        assert!(!s.to_toml().is_empty());
        let plain = crate::AppSpec::from_toml(&format!("{base}listen = 8080\n")).unwrap();
        assert!(!plain.to_toml().contains("edge"));
    }
}
