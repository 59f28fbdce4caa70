//! Join tokens: what lets a new VM register itself. The printed token carries the
//! controller's URL, the sha256 fingerprint of its TLS CA (when it serves TLS), the id of its
//! release key and the secret; the controller keeps only the secret's sha256, the labels the
//! token grants, its expiry and how many hosts may still use it.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every printed join token starts with this (and a version).
pub const PREFIX: &str = "slipway-join-v1.";

/// What a printed join token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The controller's base URL, e.g. `https://controller.example:7440`.
    pub url: String,
    /// Lowercase hex sha256 of the DER of the controller's TLS CA certificate (TLS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
    /// Id (hex sha256) of the controller's release-signing public key.
    pub key_id: String,
    /// The secret the controller checks (by its sha256).
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    #[error(
        "not a join token: it must start with `{PREFIX}` (from `slipway token create --role join`)"
    )]
    Prefix,
    #[error("join token is damaged (copy it whole): {0}")]
    Damaged(String),
}

impl JoinToken {
    /// The token as printed: `slipway-join-v1.<base64url of its JSON>`.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("join token serializes");
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    pub fn decode(text: &str) -> Result<Self, JoinTokenError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(JoinTokenError::Prefix)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| JoinTokenError::Damaged(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| JoinTokenError::Damaged(e.to_string()))
    }
}

/// `POST /v1/join-tokens` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateJoinTokenRequest {
    /// Unique name; default `join-<random>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The labels every host joining with it gets (and may not widen).
    pub labels: BTreeMap<String, String>,
    /// Lifetime, e.g. `24h`.
    pub ttl: String,
    /// How many hosts may join with it.
    pub uses: u64,
}

/// The answer to `POST /v1/join-tokens`: everything but the URL, which the CLI knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedJoinToken {
    pub name: String,
    /// Shown once.
    pub secret: String,
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
}

/// A row of `GET /v1/join-tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub uses: u64,
    pub used: u64,
    /// RFC 3339.
    pub expires_at: String,
    pub created_by: String,
}

/// `GET /v1/join` (no token): what a joining agent checks the join token against before it
/// sends its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// The release-signing public key (PEM) and its id.
    pub public_key: String,
    pub key_id: String,
    pub key_set_version: u64,
    /// The controller's TLS CA certificate (PEM), when it serves TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// `POST /v1/join` (no bearer token: the join token's secret is in the body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub secret: String,
    pub host: String,
    /// Labels the agent asks for: each must be one the join token grants.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The host's X25519 public key (base64), as in [`crate::api::RegisterRequest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<crate::seal::HostPublicKey>,
}

/// The answer to `POST /v1/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub host: String,
    /// The host's own agent token (shown once).
    pub agent_token: String,
    /// Its name on the controller (`agent-<host>`).
    pub token_name: String,
    /// The labels the host got (the join token's).
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_what_is_wrong() {
        let t = JoinToken {
            url: "https://c.example:7440".into(),
            ca_sha256: Some("ab".repeat(32)),
            key_id: "cd".repeat(32),
            secret: "s3cret".into(),
        };
        let text = t.encode();
        assert!(text.starts_with(PREFIX));
        assert_eq!(JoinToken::decode(&format!(" {text}\n")).unwrap(), t);
        assert_eq!(JoinToken::decode("abc"), Err(JoinTokenError::Prefix));
        assert!(matches!(
            JoinToken::decode(&text[..text.len() - 5]),
            Err(JoinTokenError::Damaged(_))
        ));
    }
}
