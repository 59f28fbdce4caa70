//! Opening a release's secrets on the host, only to start its container: each pinned
//! version must be in the desired set, sealed to this host, open with its key and match the
//! digest the signed release pins. Values are held in memory only (wiped on drop) and never
//! logged; their Debug output shows names and versions. The runtime puts them on the
//! container's own tmpfs ([`slipway_runtime::secrets`]).

use slipway_proto::api::HostSecret;
use slipway_proto::seal::{open, secret_digest, HostSecretKey, SealContext};
use slipway_proto::Release;
use slipway_runtime::secrets::{ContainerSecrets, SecretEnv, SecretMount, Zeroizing};
use std::collections::BTreeMap;
use std::fmt;

/// What the desired set delivered for one app: secret name -> pinned version sealed to
/// this host. Ciphertext only.
pub type Sealed = BTreeMap<String, HostSecret>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "release {app} seq {seq} uses secrets, but this agent reads releases from a directory: \
         only the controller delivers secrets (sealed to the host's key); the running \
         container is kept"
    )]
    NoController { app: String, seq: u64 },
    #[error(
        "release {app} seq {seq}: secret `{name}` v{version} was not delivered to this host \
         (is its key registered with the controller?); the running container is kept"
    )]
    Missing {
        app: String,
        seq: u64,
        name: String,
        version: u64,
    },
    #[error(
        "release {app} seq {seq}: secret `{name}` delivered as v{got}, the release pins \
         v{want}; the running container is kept"
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
pub struct Opened(BTreeMap<String, (u64, Zeroizing<Vec<u8>>)>);

impl Opened {
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|(_, v)| v.as_slice())
    }

    /// What the container of `release` gets: its `[secrets]` as env values and its
    /// `[[secret_files]]` as files (every name was pinned and opened).
    pub fn into_container(self, release: &Release) -> ContainerSecrets {
        let value = |name: &str| Zeroizing::new(self.value(name).unwrap_or_default().to_vec());
        ContainerSecrets {
            env: release
                .spec
                .secrets
                .iter()
                .map(|(var, name)| SecretEnv {
                    var: var.clone(),
                    name: name.clone(),
                    value: value(name),
                })
                .collect(),
            files: release
                .spec
                .secret_files
                .iter()
                .map(|f| SecretMount {
                    name: f.name.clone(),
                    path: f.path.clone(),
                    mode: f.mode,
                    value: value(&f.name),
                })
                .collect(),
        }
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
        let value = Zeroizing::new(value);
        out.insert(name.clone(), (pin.version, value));
    }
    Ok(Opened(out))
}

#[cfg(test)]
mod tests;
