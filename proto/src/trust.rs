//! The trust file: which public keys may sign releases, and how many distinct ones must.
//!
//! ```toml
//! threshold = 1          # distinct trusted keys that must sign
//! key_set_version = 1    # releases signed for an older key set are refused
//! [[keys]]
//! name = "release-2026"  # free text
//! public_key = "base64 of the 32 raw Ed25519 bytes, or the PEM of release.pub"
//! id = "hex sha256"      # optional; when present it must match the key
//! ```

use crate::keys::{KeyId, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFileDoc {
    pub threshold: u32,
    #[serde(default = "one")]
    pub key_set_version: u64,
    pub keys: Vec<TrustedKeyDoc>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyDoc {
    #[serde(default)]
    pub name: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trust file is not valid: {0}")]
    Parse(String),
    #[error("trust file key #{index} ({name}): {reason}")]
    BadKey {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("trust file threshold {threshold} cannot be met: it must be between 1 and the {keys} distinct keys listed")]
    BadThreshold { threshold: u32, keys: usize },
}

/// A loaded trust file: distinct keys by id, a threshold and the key set version.
#[derive(Debug, Clone)]
pub struct TrustFile {
    pub threshold: u32,
    pub key_set_version: u64,
    pub keys: BTreeMap<KeyId, PublicKey>,
}

impl TrustFile {
    pub fn new(
        keys: Vec<PublicKey>,
        threshold: u32,
        key_set_version: u64,
    ) -> Result<Self, TrustError> {
        let keys: BTreeMap<_, _> = keys.into_iter().map(|k| (k.id(), k)).collect();
        if threshold == 0 || threshold as usize > keys.len() {
            return Err(TrustError::BadThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(Self {
            threshold,
            key_set_version,
            keys,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, TrustError> {
        let doc: TrustFileDoc =
            toml::from_str(text).map_err(|e| TrustError::Parse(e.to_string()))?;
        let mut keys = Vec::new();
        for (index, k) in doc.keys.iter().enumerate() {
            let bad = |reason: String| TrustError::BadKey {
                index,
                name: k.name.clone(),
                reason,
            };
            let key = PublicKey::parse(&k.public_key).map_err(|e| bad(e.to_string()))?;
            if let Some(id) = &k.id {
                if *id != key.id().0 {
                    return Err(bad(format!(
                        "id {id} does not match the key, whose id is {}",
                        key.id()
                    )));
                }
            }
            keys.push(key);
        }
        Self::new(keys, doc.threshold, doc.key_set_version)
    }

    pub fn to_toml(&self) -> String {
        let doc = TrustFileDoc {
            threshold: self.threshold,
            key_set_version: self.key_set_version,
            keys: self
                .keys
                .values()
                .map(|k| TrustedKeyDoc {
                    name: String::new(),
                    public_key: k.to_base64(),
                    id: Some(k.id().0),
                })
                .collect(),
        };
        toml::to_string_pretty(&doc).expect("trust file serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    #[test]
    fn round_trip_and_threshold() {
        let k = SigningKey::generate().unwrap().public_key();
        let t = TrustFile::new(vec![k.clone()], 1, 1).unwrap();
        let t2 = TrustFile::from_toml(&t.to_toml()).unwrap();
        assert_eq!(t2.keys.len(), 1);
        // The same key twice is one key: threshold 2 is unreachable.
        let e = TrustFile::new(vec![k.clone(), k], 2, 1).unwrap_err();
        assert!(matches!(
            e,
            TrustError::BadThreshold {
                threshold: 2,
                keys: 1
            }
        ));
    }

    #[test]
    fn mismatched_id_rejected() {
        let k = SigningKey::generate().unwrap().public_key();
        let text = format!(
            "threshold = 1\n[[keys]]\npublic_key = \"{}\"\nid = \"{}\"\n",
            k.to_base64(),
            "00".repeat(32)
        );
        assert!(TrustFile::from_toml(&text)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let text = format!(
            "threshold = 1\nbogus = 1\n[[keys]]\npublic_key = \"{}\"\n",
            k.to_base64()
        );
        assert!(TrustFile::from_toml(&text).is_err());
    }
}
