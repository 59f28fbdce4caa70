//! Building and signing releases: the same code for offline signing and for the controller.

use anyhow::Context;
use slipway_proto::{AppSpec, Envelope, ImageRef, Release, SigningKey};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long a release stays valid when no `--expires` is given.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads a PEM PKCS#8 signing key, refusing files readable by group or others.
pub fn load_key(path: &Path) -> anyhow::Result<SigningKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "signing key {} has mode {:o}; it must not be readable by group or others (chmod 600)",
            path.display(),
            mode
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    SigningKey::from_pem(&text).with_context(|| format!("signing key {}", path.display()))
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
) -> anyhow::Result<(Release, Envelope)> {
    spec.validate()?;
    if params.image.repository != spec.image {
        anyhow::bail!(
            "image `{}` is not from the app's repository `{}`",
            params.image,
            spec.image
        );
    }
    if params.seq == 0 {
        anyhow::bail!("seq must be at least 1");
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
