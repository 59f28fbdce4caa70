//! Registry access: which registries may be spoken to over plain HTTP, which credentials go
//! to which registry, and the `oci-client` set up accordingly.

use crate::defaults;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Registry settings from the agent config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `host:port` of registries allowed over plain HTTP (all others use HTTPS).
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials per registry host (`host` or `host:port`); anonymous when absent.
    #[serde(default)]
    pub auth: BTreeMap<String, Credentials>,
}

/// Credentials for one registry. Never logged: `Debug` redacts the secrets.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer { token: String },
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
        }
    }
}

/// The registry host oci-client uses for images without one.
pub const DEFAULT_REGISTRY: &str = "docker.io";

impl RegistryConfig {
    /// The `oci-client` auth for `registry`.
    pub(crate) fn auth_for(&self, registry: &str) -> RegistryAuth {
        match self.auth.get(registry) {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer { token }) => RegistryAuth::Bearer(token.clone()),
        }
    }

    /// An `oci-client` that speaks plain HTTP only to the insecure registries and never
    /// follows a platform resolver of its own (we pick platforms from verified bytes).
    pub(crate) fn client(&self) -> oci_client::Client {
        install_crypto_provider();
        let config = ClientConfig {
            protocol: if self.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(self.insecure.clone())
            },
            platform_resolver: None,
            connect_timeout: Some(defaults::CONNECT_TIMEOUT),
            read_timeout: Some(defaults::READ_TIMEOUT),
            ..ClientConfig::default()
        };
        oci_client::Client::new(config)
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
        let cfg: RegistryConfig = serde_json::from_str(
            r#"{"insecure":["127.0.0.1:5000"],"auth":{"ghcr.io":{"bearer":{"token":"t"}},
               "r.example:443":{"basic":{"username":"u","password":"p"}}}}"#,
        )
        .unwrap();
        assert_eq!(cfg.insecure, ["127.0.0.1:5000"]);
        assert!(matches!(cfg.auth_for("ghcr.io"), RegistryAuth::Bearer(t) if t == "t"));
        assert!(matches!(cfg.auth_for("other"), RegistryAuth::Anonymous));
        let err = serde_json::from_str::<RegistryConfig>(r#"{"insecur":[]}"#).unwrap_err();
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
