//! Building and signing releases: the same code for offline signing and for the controller.

use slipway_proto::keys::KeyError;
use slipway_proto::{AppSpec, Envelope, ImageRef, Release, SigningKey, SpecError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a release stays valid when no `--expires` is given.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a signing key cannot be used, or a release cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("reading signing key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "signing key {} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
        path.display()
    )]
    KeyMode { path: PathBuf, mode: u32 },
    #[error("signing key {}: {source}", path.display())]
    BadKey { path: PathBuf, source: KeyError },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("image `{image}` is not from the app's repository `{repository}`")]
    ForeignImage { image: String, repository: String },
    #[error("seq must be at least 1")]
    ZeroSeq,
}

/// Reads a PEM PKCS#8 signing key, refusing files readable by group or others.
pub fn load_key(path: &Path) -> Result<SigningKey, SignError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| SignError::ReadKey {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SignError::KeyMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    SigningKey::from_pem(&text).map_err(|source| SignError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// What goes into a release besides the spec.
pub struct ReleaseParams {
    pub seq: u64,
    pub image: ImageRef,
    pub validity: Duration,
    pub key_set_version: u64,
    pub annotations: BTreeMap<String, String>,
}

/// Builds a release for `spec` and signs it with `keys`.
pub fn sign_release(
    spec: &AppSpec,
    params: ReleaseParams,
    keys: &[&SigningKey],
) -> Result<(Release, Envelope), SignError> {
    spec.validate()?;
    if params.image.repository != spec.image {
        return Err(SignError::ForeignImage {
            image: params.image.to_string(),
            repository: spec.image.clone(),
        });
    }
    if params.seq == 0 {
        return Err(SignError::ZeroSeq);
    }
    let now = SystemTime::now();
    let release = Release {
        app: spec.name.clone(),
        seq: params.seq,
        image: params.image.to_string(),
        spec: spec.clone(),
        issued_at: now,
        expires: now + params.validity,
        key_set_version: params.key_set_version,
        annotations: params.annotations,
    };
    let env = Envelope::sign_release(&release, keys);
    Ok((release, env))
}
