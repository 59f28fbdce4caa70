//! The DSSE-style signed envelope. Signatures cover
//! `"DSSEv1 <len(type)> <type> <len(body)> <body>"`; the body is verified before it is parsed.

use crate::id::AppName;
use crate::keys::{KeyId, SigningKey};
use crate::release::{ImageRef, ImageRefError, Release};
use crate::trust::TrustFile;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// Payload type of a Slipway release.
pub const RELEASE_PAYLOAD_TYPE: &str = "application/vnd.slipway.release.v1+json";
/// Releases issued further than this in the future are refused (clock skew allowance).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// base64 of the body bytes.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    /// base64 of the Ed25519 signature.
    pub sig: String,
}

/// Why a signed release was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("envelope is not a signed Slipway document: {0}")]
    MalformedEnvelope(String),
    #[error("wrong payload type `{found}`, expected `{expected}`")]
    WrongPayloadType { found: String, expected: String },
    #[error("no signature is by a trusted key (signed by: {})", if .0.is_empty() { "nobody".to_string() } else { .0.join(", ") })]
    UnknownKey(Vec<String>),
    #[error("bad signature by trusted key {0}: the body or signature was altered")]
    BadSignature(String),
    #[error("too few distinct trusted signers: {found} valid, threshold is {threshold}")]
    TooFewSigners { found: usize, threshold: u32 },
    #[error("release body is malformed: {0}")]
    MalformedBody(String),
    #[error("release {app} seq {seq}: {source}")]
    Image {
        app: AppName,
        seq: u64,
        source: ImageRefError,
    },
    #[error("release {app} seq {seq} expired at {expired_at}")]
    Expired {
        app: AppName,
        seq: u64,
        expired_at: String,
    },
    #[error("release {app} seq {seq} is issued in the future ({issued_at}); check the clocks")]
    NotYetValid {
        app: AppName,
        seq: u64,
        issued_at: String,
    },
    #[error("release {app} seq {seq} was signed for key set version {found}, this host trusts version {required} and later")]
    StaleKeySet {
        app: AppName,
        seq: u64,
        found: u64,
        required: u64,
    },
    #[error(
        "release {app} seq {seq}: body app `{app}` does not match its spec name `{spec_name}`"
    )]
    AppMismatch {
        app: AppName,
        seq: u64,
        spec_name: AppName,
    },
}

/// A release whose signatures, body, image reference and validity window have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    pub release: Release,
    pub image: ImageRef,
    pub signers: Vec<KeyId>,
}

/// Pre-authentication encoding: the exact bytes a signature covers.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Envelope {
    /// Signs `body` with every key given.
    pub fn sign(payload_type: &str, body: &[u8], keys: &[&SigningKey]) -> Self {
        let msg = pae(payload_type, body);
        Self {
            payload_type: payload_type.to_string(),
            payload: b64().encode(body),
            signatures: keys
                .iter()
                .map(|k| Signature {
                    keyid: k.public_key().id().0,
                    sig: b64().encode(k.sign(&msg)),
                })
                .collect(),
        }
    }

    /// Serializes and signs a release.
    pub fn sign_release(release: &Release, keys: &[&SigningKey]) -> Self {
        let body = serde_json::to_vec(release).expect("release serializes");
        Self::sign(RELEASE_PAYLOAD_TYPE, &body, keys)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, VerifyError> {
        serde_json::from_slice(bytes).map_err(|e| VerifyError::MalformedEnvelope(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("envelope serializes")
    }

    /// Checks the payload type and signatures against `trust` and returns the raw body and
    /// the distinct trusted signers. The body is not parsed.
    pub fn verify_signatures(
        &self,
        payload_type: &str,
        trust: &TrustFile,
    ) -> Result<(Vec<u8>, Vec<KeyId>), VerifyError> {
        if self.payload_type != payload_type {
            return Err(VerifyError::WrongPayloadType {
                found: self.payload_type.clone(),
                expected: payload_type.to_string(),
            });
        }
        let body = b64()
            .decode(&self.payload)
            .map_err(|e| VerifyError::MalformedEnvelope(format!("payload is not base64: {e}")))?;
        let msg = pae(&self.payload_type, &body);
        let mut valid: BTreeSet<KeyId> = BTreeSet::new();
        let mut bad: Option<String> = None;
        let mut unknown = Vec::new();
        for s in &self.signatures {
            let id = KeyId(s.keyid.clone());
            let Some(key) = trust.keys.get(&id) else {
                unknown.push(s.keyid.clone());
                continue;
            };
            match b64().decode(&s.sig) {
                Ok(sig) if key.verify(&msg, &sig) => {
                    valid.insert(id);
                }
                _ => {
                    bad.get_or_insert_with(|| s.keyid.clone());
                }
            }
        }
        if valid.len() >= trust.threshold as usize {
            return Ok((body, valid.into_iter().collect()));
        }
        if valid.is_empty() {
            if let Some(id) = bad {
                return Err(VerifyError::BadSignature(id));
            }
            if trust.threshold > 0 {
                return Err(VerifyError::UnknownKey(unknown));
            }
        }
        Err(VerifyError::TooFewSigners {
            found: valid.len(),
            threshold: trust.threshold,
        })
    }

    /// Full verification of a signed release at time `now`: signatures first, then the body.
    pub fn verify_release(
        &self,
        trust: &TrustFile,
        now: SystemTime,
    ) -> Result<VerifiedRelease, VerifyError> {
        let (body, signers) = self.verify_signatures(RELEASE_PAYLOAD_TYPE, trust)?;
        let release: Release =
            serde_json::from_slice(&body).map_err(|e| VerifyError::MalformedBody(e.to_string()))?;
        let (app, seq) = (release.app.clone(), release.seq);
        if release.spec.name != release.app {
            return Err(VerifyError::AppMismatch {
                app,
                seq,
                spec_name: release.spec.name.clone(),
            });
        }
        release
            .spec
            .validate()
            .map_err(|e| VerifyError::MalformedBody(e.to_string()))?;
        let image = release.image_ref().map_err(|source| VerifyError::Image {
            app: app.clone(),
            seq,
            source,
        })?;
        if image.repository != release.spec.image {
            return Err(VerifyError::MalformedBody(format!(
                "image repository `{}` differs from the spec's `{}`",
                image.repository, release.spec.image
            )));
        }
        if now > release.expires {
            return Err(VerifyError::Expired {
                app,
                seq,
                expired_at: humantime::format_rfc3339_seconds(release.expires).to_string(),
            });
        }
        if release.issued_at > now + MAX_CLOCK_SKEW {
            return Err(VerifyError::NotYetValid {
                app,
                seq,
                issued_at: humantime::format_rfc3339_seconds(release.issued_at).to_string(),
            });
        }
        if release.key_set_version < trust.key_set_version {
            return Err(VerifyError::StaleKeySet {
                app,
                seq,
                found: release.key_set_version,
                required: trust.key_set_version,
            });
        }
        Ok(VerifiedRelease {
            release,
            image,
            signers,
        })
    }
}

#[cfg(test)]
mod tests;
