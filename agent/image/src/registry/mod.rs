//! Registry access, shared by the agent (pulls) and the controller (tag resolution):
//! which registries are spoken to over plain HTTP, the CA and client certificate per
//! registry, which credentials go where (agent.toml, docker config.json, credential
//! helpers), Docker Hub's names, and a [`Session`] that speaks the distribution API.

mod challenge;
pub mod credentials;
pub mod error;
pub mod name;
mod session;

pub use error::{FailureKind, RegistryError};
pub use name::Repository;
pub use session::{BlobBody, Session};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Registry settings (`[registry]` in agent.toml and controller.toml).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `host:port` of registries allowed over plain HTTP (all others use HTTPS).
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials per registry host (`host` or `host:port`); checked before config.json.
    #[serde(default)]
    pub auth: BTreeMap<String, Credentials>,
    /// CA and client certificate per registry host.
    #[serde(default)]
    pub tls: BTreeMap<String, TlsFiles>,
    /// A docker `config.json` (`auths`, `credHelpers`, `credsStore`), read at every pull.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// A directory laid out as Docker's `/etc/docker/certs.d`: `HOST[:PORT]/*.crt` are CAs
    /// trusted for that registry, `HOST[:PORT]/NAME.cert` with `NAME.key` its client
    /// certificate. Used for registries without a `[tls."HOST"]` entry.
    #[serde(default)]
    pub certs_d: Option<PathBuf>,
}

/// Credentials for one registry. Never logged: `Debug` redacts the secrets.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Credentials {
    /// Username and password (htpasswd registries; token endpoints of Docker Hub, GHCR, ...).
    Basic { username: String, password: String },
    /// A ready registry token, sent as `Authorization: Bearer`.
    Bearer { token: String },
    /// An OAuth2 refresh token for the registry's token endpoint (`identitytoken` in a docker
    /// config.json, what `docker login` stores for Azure ACR and others): exchanged for an
    /// access token with `grant_type=refresh_token`.
    IdentityToken { token: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::Bearer { .. } => write!(f, "Bearer {{ token: <redacted> }}"),
            Credentials::IdentityToken { .. } => {
                write!(f, "IdentityToken {{ token: <redacted> }}")
            }
        }
    }
}

/// TLS files for one registry, PEM.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) trusted for this registry, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain) presented to the registry; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// More CA files (from a certs.d directory).
    #[serde(skip)]
    pub more_ca_files: Vec<PathBuf>,
}

/// The registry host oci-client and Docker use for images without one.
pub const DEFAULT_REGISTRY: &str = name::DOCKER_HUB;

impl RegistryConfig {
    /// The TLS files for `registry`, if configured.
    pub fn tls_for(&self, registry: &str) -> Option<TlsFiles> {
        let keys = name::credential_keys(registry);
        if let Some(t) = keys.iter().find_map(|k| self.tls.get(k)) {
            return Some(t.clone());
        }
        let dir = self.certs_d.as_ref()?;
        keys.iter()
            .find_map(|k| TlsFiles::from_certs_d(&dir.join(k)))
    }
}

impl TlsFiles {
    /// What one registry's certs.d directory holds (None when it does not exist or is
    /// empty): every `*.crt` as a CA, the first `*.cert` with its `*.key` as the client.
    fn from_certs_d(dir: &std::path::Path) -> Option<TlsFiles> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        let ext = |p: &PathBuf, x: &str| p.extension().is_some_and(|e| e == x);
        let mut cas = files.iter().filter(|p| ext(p, "crt")).cloned();
        let cert = files.iter().find(|p| ext(p, "cert")).cloned();
        let out = TlsFiles {
            ca_file: cas.next(),
            more_ca_files: cas.collect(),
            key_file: cert.as_ref().map(|c| c.with_extension("key")),
            cert_file: cert,
        };
        (out != TlsFiles::default()).then_some(out)
    }

    /// Adds this CA and client identity to an HTTP client for `registry`.
    pub(crate) fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
        registry: &str,
    ) -> Result<reqwest::ClientBuilder, RegistryError> {
        let bad = |what: &str, path: &std::path::Path, e: String| {
            RegistryError::new(
                FailureKind::Config,
                format!(
                    "[registry.tls.\"{registry}\"] {what} {}: {e}",
                    path.display()
                ),
            )
        };
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| bad(what, path, e.to_string()))
        };
        for ca in self.ca_file.iter().chain(&self.more_ca_files) {
            let certs = reqwest::Certificate::from_pem_bundle(&read("ca_file", ca)?)
                .map_err(|e| bad("ca_file", ca, e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("ca_file", ca, "holds no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read("cert_file", cert)?;
                pem.push(b'\n');
                pem.extend(read("key_file", key)?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| bad("cert_file/key_file", cert, e.to_string()))?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            (Some(p), None) | (None, Some(p)) => {
                return Err(bad(
                    "cert_file and key_file",
                    p,
                    "set both or neither".into(),
                ))
            }
        }
        Ok(builder)
    }
}

/// rustls needs one process-wide crypto provider; Slipway uses ring (no aws-lc).
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_rejects_unknown_keys() {
        let cfg: RegistryConfig = toml::from_str(
            r#"
            insecure = ["127.0.0.1:5000"]
            docker_config = "/root/.docker/config.json"
            [auth."ghcr.io"]
            bearer = { token = "t" }
            [auth."r.example:443"]
            basic = { username = "u", password = "p" }
            [tls."r.example:443"]
            ca_file = "/etc/slipway/r-ca.pem"
            cert_file = "/etc/slipway/client.pem"
            key_file = "/etc/slipway/client.key"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.insecure, ["127.0.0.1:5000"]);
        assert_eq!(
            cfg.auth.get("ghcr.io"),
            Some(&Credentials::Bearer { token: "t".into() })
        );
        assert!(cfg.tls_for("r.example:443").unwrap().key_file.is_some());
        assert!(cfg.tls_for("other").is_none());
        let err = toml::from_str::<RegistryConfig>("insecur = []").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<RegistryConfig>("[tls.x]\nca = \"a\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::Basic {
            username: "bob".into(),
            password: "hunter2".into(),
        };
        let b = Credentials::Bearer {
            token: "s3cret".into(),
        };
        let text = format!("{c:?} {b:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
        assert!(text.contains("bob"));
    }
}
