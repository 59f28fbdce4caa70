//! The container-shaping keys of the app spec: volumes (host paths or named volumes the agent
//! keeps), DNS settings, the seccomp profile. Kept apart from `spec.rs` so each stays short.

use super::{invalid, SpecError};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// Longest named-volume name: it becomes a directory name and appears in logs.
pub const MAX_VOLUME_NAME: usize = 64;

/// A volume: a host path bound into the container, or a named volume the agent keeps under
/// its state dir across releases and rollbacks (seeded from the image on first use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Named volume, `[a-z0-9-]`; removed only by `slipway-agent volume rm NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absolute host path bound into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<PathBuf>,
    /// Absolute path inside the container.
    pub container: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// Resolver settings written to the container's `/etc/resolv.conf`; each list, when set,
/// replaces the agent's (and the host's) value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Nameserver addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<std::net::IpAddr>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options, e.g. `ndots:1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsSpec {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// The seccomp profile of the container: `"default"` (Docker's), `"unconfined"` or the
/// absolute path of a profile file on the host (Docker's format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "String", into = "String")]
pub enum Seccomp {
    #[default]
    Default,
    Unconfined,
    File(PathBuf),
}

impl Seccomp {
    pub fn is_default(&self) -> bool {
        *self == Seccomp::Default
    }
}

impl From<String> for Seccomp {
    fn from(s: String) -> Self {
        match s.as_str() {
            "default" => Seccomp::Default,
            "unconfined" => Seccomp::Unconfined,
            _ => Seccomp::File(s.into()),
        }
    }
}

impl From<Seccomp> for String {
    fn from(s: Seccomp) -> Self {
        match s {
            Seccomp::Default => "default".into(),
            Seccomp::Unconfined => "unconfined".into(),
            Seccomp::File(p) => p.display().to_string(),
        }
    }
}

/// Checks a named volume's name: `[a-z0-9-]`, 1..=64 bytes, not starting with `-`.
pub fn valid_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_VOLUME_NAME {
        return Err(format!(
            "volume name `{}` must be 1 to {MAX_VOLUME_NAME} characters",
            name.escape_debug()
        ));
    }
    if name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "volume name `{}` may hold only a-z, 0-9 and `-` (and not start with `-`)",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn plain_absolute(p: &Path) -> bool {
    p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir))
}

/// Validates `volumes`, `dns` and `seccomp` of a spec.
pub(super) fn validate(
    volumes: &[Volume],
    dns: &DnsSpec,
    seccomp: &Seccomp,
) -> Result<(), SpecError> {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        match (&v.name, &v.host) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(
                    format!("volumes[{i}]"),
                    "set exactly one of `name` (a named volume) or `host` (a host path)",
                ))
            }
            (Some(n), None) => {
                valid_volume_name(n).map_err(|r| invalid(format!("volumes[{i}].name"), r))?
            }
            (None, Some(h)) if !plain_absolute(h) => {
                return Err(invalid(
                    format!("volumes[{i}].host"),
                    format!("`{}` must be an absolute path without `..`", h.display()),
                ))
            }
            _ => {}
        }
        if !plain_absolute(&v.container) {
            return Err(invalid(
                format!("volumes[{i}].container"),
                format!(
                    "`{}` must be an absolute path without `..`",
                    v.container.display()
                ),
            ));
        }
        if v.container == Path::new("/") {
            return Err(invalid(
                format!("volumes[{i}].container"),
                "cannot mount over `/`",
            ));
        }
        if !seen.insert(v.container.clone()) {
            return Err(invalid(
                format!("volumes[{i}].container"),
                format!("`{}` is mounted twice", v.container.display()),
            ));
        }
    }
    for (i, s) in dns.search.iter().enumerate() {
        if s.is_empty() || s.len() > 253 || s.contains(|c: char| c.is_whitespace() || c == '\0') {
            return Err(invalid(
                format!("dns.search[{i}]"),
                format!("`{}` is not a domain name", s.escape_debug()),
            ));
        }
    }
    for (i, o) in dns.options.iter().enumerate() {
        if o.is_empty() || o.contains(|c: char| c.is_whitespace() || c == '\0') {
            return Err(invalid(
                format!("dns.options[{i}]"),
                format!("`{}` is not a resolv.conf option", o.escape_debug()),
            ));
        }
    }
    if let Seccomp::File(p) = seccomp {
        if !plain_absolute(p) {
            return Err(invalid(
                "seccomp",
                format!(
                    "`{}` is neither \"default\", \"unconfined\" nor an absolute path to a profile",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}
