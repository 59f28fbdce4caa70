//! `controller.toml`: where the controller listens, keeps its data and finds its key.
//! A commented example: `deploy/examples/controller.toml`.
//!
//! ```toml
//! listen = "127.0.0.1:7440"                 # plain HTTP only on loopback unless [tls] is set
//! data_dir = "/var/lib/slipway-controller"  # holds controller.db (SQLite)
//! # database_url = "sqlite:///var/lib/slipway-controller/controller.db"
//! # database_url = "postgres://slipway:PASS@db.internal/slipway"  # several controllers
//! signing_key = "/etc/slipway/keys/release.key"
//! key_set_version = 1
//! release_validity = "7d"                   # signature lifetime of a release
//! resign_before = "3d"                      # re-sign a live release once less than this remains
//! [tls]                                     # optional
//! cert = "/etc/slipway/tls/cert.pem"
//! key = "/etc/slipway/tls/key.pem"
//! [registry]
//! plain_http = ["registry.lan:5000"]        # loopback ones too, unless [registry.tls] names them
//! docker_config = "/root/.docker/config.json"  # optional: auths, credHelpers, credsStore
//! [registry.auth."registry.example.com"]    # optional, as in agent.toml
//! basic = { username = "ci", password = "..." }
//! [registry.tls."registry.example.com"]     # optional: private CA, client certificate
//! ca_file = "/etc/slipway/registry-ca.pem"
//! ```

use crate::defaults;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: InvalidConfig,
    },
}

/// What makes a config unusable; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(
        "listen {0} is not a loopback address and [tls] is not set: agents' tokens would cross \
         the network in clear; add [tls] cert/key, or set allow_plain_http = true behind a \
         TLS-terminating proxy"
    )]
    PlainHttp(SocketAddr),
    #[error(
        "resign_before ({}) must be shorter than release_validity ({})",
        humantime::format_duration(*resign_before),
        humantime::format_duration(*release_validity)
    )]
    ResignBefore {
        resign_before: Duration,
        release_validity: Duration,
    },
    #[error("resign_interval must be above zero")]
    ResignInterval,
    #[error("long_poll_max_wait and rollout.tick must be above zero")]
    ZeroWait,
    #[error(
        "rollout.silent_after ({}) must exceed long_poll_max_wait ({}) by a quarter: a host \
         waiting in a long-poll would otherwise count as silent",
        humantime::format_duration(*silent_after),
        humantime::format_duration(*long_poll_max_wait)
    )]
    SilentAfter {
        silent_after: Duration,
        long_poll_max_wait: Duration,
    },
    #[error(
        "host_down_after ({}) must exceed long_poll_max_wait ({}) by a quarter: a host \
         waiting in a long-poll would otherwise be taken for down",
        humantime::format_duration(*host_down_after),
        humantime::format_duration(*long_poll_max_wait)
    )]
    HostDownAfter {
        host_down_after: Duration,
        long_poll_max_wait: Duration,
    },
    #[error(transparent)]
    Gitops(#[from] crate::gitops::config::InvalidGitops),
    #[error(transparent)]
    Notify(#[from] crate::notify::InvalidNotify),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "d_listen")]
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (one controller) or `postgres://USER[:PASS]@HOST[:PORT]/DB` (several
    /// controllers sharing it); defaults to `sqlite://<data_dir>/controller.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// PEM PKCS#8 Ed25519 key from `slipway keygen` (mode 0600).
    pub signing_key: PathBuf,
    #[serde(default = "d_key_set_version")]
    pub key_set_version: u64,
    #[serde(default = "d_validity", with = "humantime_serde")]
    pub release_validity: Duration,
    #[serde(default = "d_resign_before", with = "humantime_serde")]
    pub resign_before: Duration,
    #[serde(default = "d_resign_interval", with = "humantime_serde")]
    pub resign_interval: Duration,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Releases from a git repository; see [`crate::gitops::config`].
    #[serde(default)]
    pub gitops: Option<crate::gitops::GitopsConfig>,
    /// Longest a long-poll waits before answering "not modified" (agents may ask for less).
    #[serde(default = "d_long_poll_max_wait", with = "humantime_serde")]
    pub long_poll_max_wait: Duration,
    /// A host silent this long is `down`: left out of new rollouts, not counted as a
    /// failure, and given the live release when it is heard from again.
    #[serde(default = "d_host_down_after", with = "humantime_serde")]
    pub host_down_after: Duration,
    /// Rollout deadlines: `silent_after`, `deploy_margin`, `tick`.
    #[serde(default)]
    pub rollout: crate::rollout::RolloutConfig,
    /// The dashboard at `/ui/`: `session_ttl`.
    #[serde(default)]
    pub ui: crate::ui::UiConfig,
    /// `[[notify]]` webhook targets; see [`crate::notify`].
    #[serde(default)]
    pub notify: Vec<crate::notify::NotifyConfig>,
    /// File holding the key that encrypts secret values at rest (made at 0600 when absent);
    /// default `<data_dir>/secrets-master.key`. Keep it off the database's disk and backups.
    #[serde(default)]
    pub secrets_master_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM certificate of the CA that issued `cert`, which join tokens pin (by sha256);
    /// default: the last certificate of `cert`'s chain.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host:port`) spoken to over plain HTTP; loopback ones always are.
    #[serde(default)]
    pub plain_http: Vec<String>,
    /// Give up on a registry after this long.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Credentials per registry host, as in agent.toml; checked before `docker_config`.
    #[serde(default)]
    pub auth: BTreeMap<String, slipway_image::Credentials>,
    /// CA and client certificate per registry host, as in agent.toml.
    #[serde(default)]
    pub tls: BTreeMap<String, slipway_image::TlsFiles>,
    /// A docker `config.json` (auths, credHelpers, credsStore).
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// A Docker-style certs.d directory (`HOST[:PORT]/ca.crt`, `client.cert`, `client.key`),
    /// as in agent.toml.
    #[serde(default)]
    pub certs_d: Option<PathBuf>,
}

fn d_listen() -> SocketAddr {
    defaults::LISTEN
        .parse()
        .expect("default listen address parses")
}
fn d_key_set_version() -> u64 {
    1
}
fn d_validity() -> Duration {
    defaults::RELEASE_VALIDITY
}
fn d_resign_before() -> Duration {
    defaults::RESIGN_BEFORE
}
fn d_resign_interval() -> Duration {
    defaults::RESIGN_INTERVAL
}
fn d_host_down_after() -> Duration {
    defaults::HOST_DOWN_AFTER
}
fn d_long_poll_max_wait() -> Duration {
    defaults::LONG_POLL_MAX_WAIT
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, InvalidConfig> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_plain_http {
            return Err(InvalidConfig::PlainHttp(self.listen));
        }
        if self.resign_before >= self.release_validity {
            return Err(InvalidConfig::ResignBefore {
                resign_before: self.resign_before,
                release_validity: self.release_validity,
            });
        }
        if self.resign_interval.is_zero() {
            return Err(InvalidConfig::ResignInterval);
        }
        if let Some(g) = &self.gitops {
            g.validate()?;
        }
        if self.long_poll_max_wait.is_zero() || self.rollout.tick.is_zero() {
            return Err(InvalidConfig::ZeroWait);
        }
        if self.rollout.silent_after <= self.long_poll_max_wait * 5 / 4 {
            return Err(InvalidConfig::SilentAfter {
                silent_after: self.rollout.silent_after,
                long_poll_max_wait: self.long_poll_max_wait,
            });
        }
        if self.host_down_after <= self.long_poll_max_wait * 5 / 4 {
            return Err(InvalidConfig::HostDownAfter {
                host_down_after: self.host_down_after,
                long_poll_max_wait: self.long_poll_max_wait,
            });
        }
        for n in &self.notify {
            n.validate()?;
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("controller.db").display())
        })
    }

    /// Where the secrets master key lives.
    pub fn secrets_master_key_path(&self) -> PathBuf {
        self.secrets_master_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join(crate::secrets::MASTER_KEY_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = Config::parse("data_dir = \"/tmp/x\"\nsigning_key = \"/k\"\n").unwrap();
        assert_eq!(c.listen.to_string(), defaults::LISTEN);
        assert_eq!(c.database_url(), "sqlite:///tmp/x/controller.db");
        let e = Config::parse("listen = \"0.0.0.0:1\"\ndata_dir = \"/x\"\nsigning_key = \"/k\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(Config::parse("data_dir = \"/x\"\nsigning_key = \"/k\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn the_example_config_parses() {
        let c = Config::parse(include_str!("../../deploy/examples/controller.toml")).unwrap();
        assert_eq!(c.release_validity, defaults::RELEASE_VALIDITY);
        assert_eq!(c.resign_before, defaults::RESIGN_BEFORE);
    }
}
