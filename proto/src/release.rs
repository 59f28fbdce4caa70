//! The release document: which app, which sequence number, which image (by digest only),
//! which spec, and when it stops being valid.

use crate::id::{AppName, ContainerId};
use crate::spec::AppSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// A content digest, `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        }
    }

    pub fn from_hex(hex: &str) -> Result<Self, ImageRefError> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self {
                hex: hex.to_string(),
            })
        } else {
            Err(ImageRefError::BadDigest(format!("sha256:{hex}")))
        }
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, for names and logs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Self::from_hex(hex),
            None => Err(ImageRefError::BadDigest(s.to_string())),
        }
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image `{0}` names a tag, not a digest: releases pin images as `REPOSITORY@sha256:<64 hex>`")]
    TagNotDigest(String),
    #[error("`{0}` is not a sha256 digest (`sha256:` followed by 64 lowercase hex characters)")]
    BadDigest(String),
    #[error("image `{0}` has an empty or malformed repository")]
    BadRepository(String),
}

/// A digest-pinned image reference: `registry/path/name@sha256:...`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub repository: String,
    pub digest: Digest,
}

impl ImageRef {
    /// Registry host (with port) when the repository starts with one, as in the distribution
    /// reference grammar: the first component holds a `.` or `:` or is `localhost`.
    pub fn registry(&self) -> Option<&str> {
        let (first, _) = self.repository.split_once('/')?;
        (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
    }

    /// The repository path without the registry host.
    pub fn path(&self) -> &str {
        match self.registry() {
            Some(r) => &self.repository[r.len() + 1..],
            None => &self.repository,
        }
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((repo, digest)) = s.split_once('@') else {
            return Err(ImageRefError::TagNotDigest(s.to_string()));
        };
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if last.contains(':') {
            return Err(ImageRefError::TagNotDigest(s.to_string()));
        }
        if !valid_repository(repo) {
            return Err(ImageRefError::BadRepository(s.to_string()));
        }
        Ok(Self {
            repository: repo.to_string(),
            digest: digest.parse()?,
        })
    }
}

/// Checks a repository name: non-empty components of `[a-z0-9._-]` (a host may have a port).
pub fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').enumerate().all(|(i, c)| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'.' | b'_' | b'-')
                        || (i == 0 && (b == b':' || b.is_ascii_uppercase()))
                })
        })
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A release: one app, one strictly increasing sequence number, one image by digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub app: AppName,
    pub seq: u64,
    /// `repository@sha256:<64 hex>`; checked by [`Release::image_ref`] during verification.
    pub image: String,
    pub spec: AppSpec,
    #[serde(with = "humantime_serde")]
    pub issued_at: SystemTime,
    #[serde(with = "humantime_serde")]
    pub expires: SystemTime,
    /// Version of the key set that signed this release; older than the trust file's is refused.
    pub key_set_version: u64,
    /// Free-form provenance (git commit, author, operator), never used for decisions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Release {
    pub fn image_ref(&self) -> Result<ImageRef, ImageRefError> {
        self.image.parse()
    }

    /// Container id for this release on a host: `<app>-<seq>-<short digest>`; fails only
    /// when the image is not digest-pinned.
    pub fn container_id(&self) -> Result<ContainerId, ImageRefError> {
        Ok(ContainerId::for_release(
            &self.app,
            self.seq,
            &self.image_ref()?.digest,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("release {app} seq {seq} refused: seq must be greater than {last_applied}, the last applied for this app (replayed or rolled-back release)")]
pub struct ReplayError {
    pub app: String,
    pub seq: u64,
    pub last_applied: u64,
}

/// Rollback protection: a release is accepted only if its seq is above the last applied one.
pub fn check_seq(app: &str, seq: u64, last_applied: Option<u64>) -> Result<(), ReplayError> {
    match last_applied {
        Some(last) if seq <= last => Err(ReplayError {
            app: app.to_string(),
            seq,
            last_applied: last,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_refs() {
        let r: ImageRef = format!("127.0.0.1:5000/team/web@{D}").parse().unwrap();
        assert_eq!(r.registry(), Some("127.0.0.1:5000"));
        assert_eq!(r.path(), "team/web");
        assert_eq!(r.digest.short(), "0123456789ab");
        assert!(matches!(
            "127.0.0.1:5000/web:v1".parse::<ImageRef>(),
            Err(ImageRefError::TagNotDigest(_))
        ));
        assert!(matches!(
            format!("web:v1@{D}").parse::<ImageRef>(),
            Err(ImageRefError::TagNotDigest(_))
        ));
        assert!(matches!(
            "web@sha256:abc".parse::<ImageRef>(),
            Err(ImageRefError::BadDigest(_))
        ));
        assert!(
            format!("web@{}", D.to_uppercase().replace("SHA256", "sha256"))
                .parse::<ImageRef>()
                .is_err()
        );
        assert!(format!("@{D}").parse::<ImageRef>().is_err());
        assert!(format!("a//b@{D}").parse::<ImageRef>().is_err());
    }

    #[test]
    fn seq_check() {
        assert!(check_seq("web", 1, None).is_ok());
        assert!(check_seq("web", 3, Some(2)).is_ok());
        let e = check_seq("web", 2, Some(2)).unwrap_err();
        assert!(e.to_string().contains("seq must be greater than 2"));
        assert!(check_seq("web", 1, Some(2)).is_err());
    }
}
