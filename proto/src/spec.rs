//! The app spec (`app.toml`): what to run, where it listens, how to check it and how to roll
//! it out. Every field but `name`, `image`, `listen` and `container_port` has a default.

use crate::id::AppName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub mod caps;
mod container;
mod secrets;
pub use container::{valid_volume_name, DnsSpec, Seccomp, Volume};
pub use secrets::{valid_secret_name, SecretFile, SecretPin, SECRET_FILE_MODE};

/// Defaults, each with the reason it is what it is.
pub mod defaults {
    use std::time::Duration;
    /// Probe often: a busybox app answers within milliseconds of starting.
    pub const HEALTH_INTERVAL: Duration = Duration::from_millis(100);
    /// A local health probe that takes longer than this is a failing one.
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    /// One good answer is enough to route; the bake window catches later failures.
    pub const HEALTHY_THRESHOLD: u32 = 1;
    /// Give slow starters half a minute before declaring the release failed.
    pub const HEALTH_DEADLINE: Duration = Duration::from_secs(30);
    /// In-flight requests get this long to finish on the old container.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The old container stays alive, unrouted, this long so a revert is instant.
    pub const BAKE: Duration = Duration::from_secs(10);
    /// Share of 5xx answers from the new container during bake that triggers a revert.
    pub const MAX_ERROR_RATE: f64 = 0.05;
    /// Time between SIGTERM and SIGKILL when a container is discarded.
    pub const STOP_GRACE: Duration = Duration::from_secs(10);
    /// Canary hosts that get a release before everyone else.
    pub const CANARY: u32 = 1;
    /// Hosts per wave after the canary.
    pub const BATCH_SIZE: u32 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// L7: routed per request, keep-alive clients move at once.
    #[default]
    Http,
    /// L4: routed per connection.
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// GET `path` on the container port; any 2xx is healthy.
    #[default]
    Http,
    /// A TCP connect to the container port.
    Tcp,
    /// Run `command` inside the container; exit 0 is healthy.
    Exec,
}

/// The app spec as written in `app.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// App name (rule in [`AppName`]), checked when the spec is parsed.
    pub name: AppName,
    /// Image repository, e.g. `registry.example.com/team/web` (no tag, no digest).
    pub image: String,
    /// Port the proxy listens on for this app on the host; may be left out (0) when
    /// `edge.hosts` routes the app on the shared listeners.
    #[serde(default)]
    pub listen: u16,
    #[serde(default)]
    pub protocol: Protocol,
    /// Port the app listens on inside its container.
    pub container_port: u16,
    /// Replaces the image's Entrypoint when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Read-only root with a tmpfs `/tmp`; by default the container gets a private writable
    /// layer, discarded with it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Deprecated, ignored: the root is writable unless `read_only` (kept so older releases
    /// still parse).
    #[serde(default, skip_serializing_if = "is_false")]
    pub writable_rootfs: bool,
    /// Resolver settings for the container's `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "DnsSpec::is_empty")]
    pub dns: DnsSpec,
    /// Seccomp profile: `"default"` (Docker's), `"unconfined"` or a profile file's path.
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    #[serde(default = "d_stop_grace", with = "humantime_serde")]
    pub stop_grace: Duration,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub health: HealthSpec,
    #[serde(default)]
    pub swap: SwapSpec,
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Hosts, path prefix and TLS on the proxy's shared listeners.
    #[serde(default, skip_serializing_if = "crate::edge::EdgeSpec::is_default")]
    pub edge: crate::edge::EdgeSpec,
    /// Capabilities added to the defaults (Docker's without `NET_RAW`), e.g. `["NET_RAW"]`
    /// for a ping installed with file capabilities or `["NET_ADMIN"]` for a VPN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped from the defaults; `["ALL"]` drops every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Env variables whose values are secrets: `ENV_NAME = "secret-name"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Secrets mounted read-only as files on a per-container tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<SecretFile>,
    /// Written by the controller into a release's spec: version and digest of each secret,
    /// so a changed secret is a new release and a rollback brings the old version back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_versions: BTreeMap<String, SecretPin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB (cgroup memory.limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU limit in cores, e.g. 0.5 (cgroup cpu quota over a 100 ms period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    #[serde(default)]
    pub kind: HealthKind,
    /// HTTP path for `kind = "http"`.
    #[serde(default = "d_path")]
    pub path: String,
    /// argv for `kind = "exec"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default = "d_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "d_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "d_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "d_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            kind: HealthKind::Http,
            path: d_path(),
            command: Vec::new(),
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            healthy_threshold: defaults::HEALTHY_THRESHOLD,
            deadline: defaults::HEALTH_DEADLINE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapSpec {
    #[serde(default = "d_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    #[serde(default = "d_bake", with = "humantime_serde")]
    pub bake: Duration,
    /// Revert during bake when the new upstream's 5xx share exceeds this (0.0..=1.0).
    #[serde(default = "d_error_rate")]
    pub max_error_rate: f64,
}

impl Default for SwapSpec {
    fn default() -> Self {
        Self {
            drain_timeout: defaults::DRAIN_TIMEOUT,
            bake: defaults::BAKE,
            max_error_rate: defaults::MAX_ERROR_RATE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Hosts whose labels include all of these get the app.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default = "d_canary")]
    pub canary: u32,
    /// Hosts per wave after the canary: a count (`2`) or a share of the fleet (`"25%"`).
    #[serde(default = "d_batch")]
    pub batch_size: BatchSize,
    #[serde(default, with = "humantime_serde")]
    pub pause: Duration,
    /// Failed hosts tolerated before the rollout halts and rolls back.
    #[serde(default)]
    pub max_failures: u32,
    /// Wait for `slipway rollout promote` after the canary.
    #[serde(default)]
    pub manual_promotion: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            selector: BTreeMap::new(),
            canary: defaults::CANARY,
            batch_size: d_batch(),
            pause: Duration::ZERO,
            max_failures: 0,
            manual_promotion: false,
        }
    }
}

/// A wave size: a host count or a percentage of the selected hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchSize {
    Count(u32),
    Percent(String),
}

impl BatchSize {
    /// Hosts in one wave out of `total` (at least 1 when `total > 0`).
    pub fn hosts(&self, total: usize) -> usize {
        let n = match self {
            BatchSize::Count(n) => *n as usize,
            BatchSize::Percent(p) => {
                let pct: f64 = p.trim_end_matches('%').trim().parse().unwrap_or(100.0);
                ((total as f64) * pct / 100.0).ceil() as usize
            }
        };
        n.clamp(1, total.max(1))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn d_stop_grace() -> Duration {
    defaults::STOP_GRACE
}
fn d_path() -> String {
    "/".into()
}
fn d_interval() -> Duration {
    defaults::HEALTH_INTERVAL
}
fn d_timeout() -> Duration {
    defaults::HEALTH_TIMEOUT
}
fn d_threshold() -> u32 {
    defaults::HEALTHY_THRESHOLD
}
fn d_deadline() -> Duration {
    defaults::HEALTH_DEADLINE
}
fn d_drain() -> Duration {
    defaults::DRAIN_TIMEOUT
}
fn d_bake() -> Duration {
    defaults::BAKE
}
fn d_error_rate() -> f64 {
    defaults::MAX_ERROR_RATE
}
fn d_canary() -> u32 {
    defaults::CANARY
}
fn d_batch() -> BatchSize {
    BatchSize::Count(defaults::BATCH_SIZE)
}

/// A spec that failed to parse or validate; `key` is the TOML key path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("app spec is not valid TOML for Slipway: {0}")]
    Parse(String),
    #[error("app spec key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl AppSpec {
    /// Parses and validates an `app.toml`.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let mut spec: AppSpec =
            toml::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        // A TCP app (a database) checks health by connecting unless told otherwise: an HTTP
        // probe could never pass.
        if spec.protocol == Protocol::Tcp {
            let doc: toml::Table =
                toml::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
            if doc.get("health").and_then(|h| h.get("kind")).is_none() {
                spec.health.kind = HealthKind::Tcp;
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("app spec serializes")
    }

    /// Checks what types alone cannot: names, ports, paths, ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.image.contains('@')
            || self
                .image
                .rsplit('/')
                .next()
                .is_some_and(|l| l.contains(':'))
        {
            return Err(invalid(
                "image",
                format!(
                    "`{}` must be a repository without tag or digest; the release names the image",
                    self.image
                ),
            ));
        }
        if !crate::release::valid_repository(&self.image) {
            return Err(invalid(
                "image",
                format!("`{}` is not a valid repository name", self.image),
            ));
        }
        self.edge.validate()?;
        caps::validate(&self.cap_add, &self.cap_drop)?;
        secrets::validate(
            &self.env,
            &self.secrets,
            &self.secret_files,
            &self.secret_versions,
        )?;
        if self.listen == 0 && self.edge.hosts.is_empty() {
            return Err(invalid(
                "listen",
                "port must be 1..=65535 (or route the app by `edge.hosts`)",
            ));
        }
        if self.protocol == Protocol::Tcp && !self.edge.hosts.is_empty() {
            return Err(invalid("edge.hosts", "TCP apps are routed by port only"));
        }
        if self.container_port == 0 {
            return Err(invalid("container_port", "port must be 1..=65535"));
        }
        for (field, argv) in [("entrypoint", &self.entrypoint), ("command", &self.command)] {
            if let Some(argv) = argv {
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(invalid(field, "arguments may not contain NUL"));
                }
            }
        }
        if self.entrypoint.as_ref().is_some_and(|e| e.is_empty()) {
            return Err(invalid("entrypoint", "must not be empty when set"));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(invalid(
                    format!("env.{k}"),
                    "variable names may not be empty or contain `=`",
                ));
            }
        }
        container::validate(&self.volumes, &self.dns, &self.seccomp)?;
        if let Some(m) = self.resources.memory_mb {
            if m < 4 {
                return Err(invalid("resources.memory_mb", "must be at least 4 (MiB)"));
            }
        }
        if let Some(c) = self.resources.cpus {
            if !(c.is_finite() && c > 0.0 && c <= 1024.0) {
                return Err(invalid(
                    "resources.cpus",
                    "must be a number of cores in (0, 1024]",
                ));
            }
        }
        let h = &self.health;
        match h.kind {
            HealthKind::Http if !h.path.starts_with('/') => {
                return Err(invalid("health.path", "must start with `/`"));
            }
            HealthKind::Exec if h.command.is_empty() => {
                return Err(invalid("health.command", "exec health checks need an argv"));
            }
            _ => {}
        }
        for (key, d) in [
            ("health.interval", h.interval),
            ("health.timeout", h.timeout),
            ("health.deadline", h.deadline),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if h.healthy_threshold == 0 {
            return Err(invalid("health.healthy_threshold", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.swap.max_error_rate) {
            return Err(invalid(
                "swap.max_error_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        match &self.rollout.batch_size {
            BatchSize::Count(0) => return Err(invalid("rollout.batch_size", "must be at least 1")),
            BatchSize::Percent(p) => {
                let ok = p
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .is_some_and(|n| n > 0.0 && n <= 100.0);
                if !ok {
                    return Err(invalid(
                        "rollout.batch_size",
                        format!("`{p}` is neither a count nor a percentage like \"25%\""),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
