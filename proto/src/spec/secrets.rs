//! Secrets in the app spec: `[secrets] ENV = "name"` and `[[secret_files]]`, and the pins
//! (version + digest per secret) the controller writes into the spec of a signed release.
//! Values never appear here; hosts get them sealed in their desired set.

use super::{invalid, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Component, PathBuf};

/// Owner read-only: a secret file is for the app to read, nobody else.
pub const SECRET_FILE_MODE: u32 = 0o400;

/// A secret mounted read-only as a file on a per-container tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// Secret name (`[a-z0-9-]`), as set with `slipway secret set APP NAME`.
    pub name: String,
    /// Absolute path of the file inside the container.
    pub path: PathBuf,
    /// File mode, e.g. `0o400`.
    #[serde(default = "d_mode")]
    pub mode: u32,
}

fn d_mode() -> u32 {
    SECRET_FILE_MODE
}

/// What a signed release pins for one secret: its version and the sha256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretPin {
    pub version: u64,
    /// `sha256:<64 hex>` of the value (see [`crate::seal::secret_digest`]).
    pub digest: String,
}

/// Secret names: 1..=63 of `[a-z0-9-]`, starting with a letter or digit.
pub fn valid_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Every secret name the spec refers to, env and files together.
pub(super) fn referenced<'a>(
    secrets: &'a BTreeMap<String, String>,
    files: &'a [SecretFile],
) -> BTreeSet<&'a str> {
    secrets
        .values()
        .map(String::as_str)
        .chain(files.iter().map(|f| f.name.as_str()))
        .collect()
}

pub(super) fn validate(
    env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    files: &[SecretFile],
    pins: &BTreeMap<String, SecretPin>,
) -> Result<(), SpecError> {
    for (var, name) in secrets {
        let key = format!("secrets.{var}");
        if !valid_env_name(var) {
            return Err(invalid(
                key,
                "is not an env variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        if env.contains_key(var) {
            return Err(invalid(
                key,
                "is also set in `env`; an env variable has one source",
            ));
        }
        if !valid_secret_name(name) {
            return Err(invalid(
                key,
                format!("`{name}` is not a secret name ([a-z0-9-], 1..=63)"),
            ));
        }
    }
    let mut paths = HashSet::new();
    for (i, f) in files.iter().enumerate() {
        if !valid_secret_name(&f.name) {
            return Err(invalid(
                format!("secret_files[{i}].name"),
                format!("`{}` is not a secret name ([a-z0-9-], 1..=63)", f.name),
            ));
        }
        let clean = f.path.is_absolute()
            && f.path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && f.path.components().count() > 1;
        if !clean {
            return Err(invalid(
                format!("secret_files[{i}].path"),
                format!(
                    "`{}` must be an absolute file path without `..`",
                    f.path.display()
                ),
            ));
        }
        if !paths.insert(&f.path) {
            return Err(invalid(
                format!("secret_files[{i}].path"),
                format!("`{}` is mounted twice", f.path.display()),
            ));
        }
        if f.mode > 0o777 {
            return Err(invalid(
                format!("secret_files[{i}].mode"),
                format!("{:#o} is not a permission mode (0o000..=0o777)", f.mode),
            ));
        }
    }
    for (name, pin) in pins {
        if !valid_digest(&pin.digest) {
            return Err(invalid(
                format!("secret_versions.{name}.digest"),
                format!("`{}` is not sha256:<64 hex>", pin.digest),
            ));
        }
    }
    Ok(())
}

impl super::AppSpec {
    /// Secret names this spec refers to (env and files).
    pub fn secret_names(&self) -> BTreeSet<&str> {
        referenced(&self.secrets, &self.secret_files)
    }

    /// For a spec inside a release: every referenced secret is pinned, and nothing else is.
    pub fn check_secret_pins(&self) -> Result<(), SpecError> {
        let names = self.secret_names();
        for name in &names {
            if !self.secret_versions.contains_key(*name) {
                return Err(invalid(
                    format!("secret_versions.{name}"),
                    "is missing: the release does not pin this secret's version",
                ));
            }
        }
        if let Some(extra) = self
            .secret_versions
            .keys()
            .find(|k| !names.contains(k.as_str()))
        {
            return Err(invalid(
                format!("secret_versions.{extra}"),
                "pins a secret the spec does not use",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
