//! Opening a release's secrets on the host, only to start its container: each pinned
//! version must be in the desired set, sealed to this host, open with its key and match the
//! digest the signed release pins. Values are held in memory only and never logged; their
//! Debug output shows names and versions.

use slipway_proto::api::HostSecret;
use slipway_proto::seal::{open, secret_digest, HostSecretKey, SealContext};
use slipway_proto::Release;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "release {app} seq {seq}: secret `{name}` v{version} was not delivered to this host \
         (is its key registered with the controller?)"
    )]
    Missing {
        app: String,
        seq: u64,
        name: String,
        version: u64,
    },
    #[error(
        "release {app} seq {seq}: secret `{name}` delivered as v{got}, the release pins v{want}"
    )]
    WrongVersion {
        app: String,
        seq: u64,
        name: String,
        got: u64,
        want: u64,
    },
    #[error("release {app} seq {seq}: {reason}; the running container is kept")]
    Refused {
        app: String,
        seq: u64,
        reason: String,
    },
    #[error(
        "release {app} seq {seq}: secret `{name}` v{version} does not match the digest the \
         signed release pins; the running container is kept"
    )]
    Digest {
        app: String,
        seq: u64,
        name: String,
        version: u64,
    },
}

/// A release's secrets, opened: name -> (version, value).
pub struct Opened(BTreeMap<String, (u64, Vec<u8>)>);

impl Opened {
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|(_, v)| v.as_slice())
    }

    /// Env entries `VAR=value` for the spec's `[secrets]`.
    pub fn env(&self, release: &Release) -> Vec<(String, Vec<u8>)> {
        release
            .spec
            .secrets
            .iter()
            .filter_map(|(var, name)| self.value(name).map(|v| (var.clone(), v.to_vec())))
            .collect()
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(n, (v, _))| (n, v)))
            .finish()
    }
}

/// Opens every secret `release` pins from `delivered` (this app's part of the desired set).
pub fn open_release(
    key: &HostSecretKey,
    host: &str,
    release: &Release,
    delivered: Option<&BTreeMap<String, HostSecret>>,
) -> Result<Opened, SecretError> {
    let app = release.app.to_string();
    let seq = release.seq;
    release
        .spec
        .check_secret_pins()
        .map_err(|e| SecretError::Refused {
            app: app.clone(),
            seq,
            reason: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    for (name, pin) in &release.spec.secret_versions {
        let Some(hs) = delivered.and_then(|d| d.get(name)) else {
            return Err(SecretError::Missing {
                app,
                seq,
                name: name.clone(),
                version: pin.version,
            });
        };
        if hs.version != pin.version {
            return Err(SecretError::WrongVersion {
                app,
                seq,
                name: name.clone(),
                got: hs.version,
                want: pin.version,
            });
        }
        let ctx = SealContext {
            app: &app,
            name,
            version: pin.version,
            host,
        };
        let value = open(key, &hs.sealed, &ctx).map_err(|e| SecretError::Refused {
            app: app.clone(),
            seq,
            reason: e.to_string(),
        })?;
        if secret_digest(&value) != pin.digest {
            return Err(SecretError::Digest {
                app,
                seq,
                name: name.clone(),
                version: pin.version,
            });
        }
        out.insert(name.clone(), (pin.version, value));
    }
    Ok(Opened(out))
}

#[cfg(test)]
mod tests;
