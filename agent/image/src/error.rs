//! What can go wrong in the image pipeline. Every message names the object and the reason.

use crate::registry::RegistryError;
use slipway_proto::Digest;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image `{0}` names a tag, not a digest: pull images as `REPOSITORY@sha256:<64 hex>`")]
    TagNotDigest(String),
    #[error("{kind} {digest} rejected: content hashes to {seen}, not to the expected digest")]
    DigestMismatch {
        kind: &'static str,
        digest: Digest,
        seen: String,
    },
    #[error("{kind} {digest} rejected: {reason}")]
    Rejected {
        kind: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("layer {digest} rejected: {reason}")]
    Layer { digest: Digest, reason: String },
    /// A registry request failed; `failure` says whether auth, TLS or the network did.
    #[error("fetching {what} of {repository} from registry {registry}: {failure}")]
    Registry {
        what: String,
        repository: String,
        registry: String,
        failure: RegistryError,
    },
    #[error("registry config: {0}")]
    Config(String),
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl ImageError {
    /// A short, stable label for the `reason` of the verification-failure metric.
    pub fn reason_label(&self) -> &'static str {
        match self {
            ImageError::TagNotDigest(_) => "tag_not_digest",
            ImageError::DigestMismatch { .. } => "digest_mismatch",
            ImageError::Rejected { .. } => "rejected_document",
            ImageError::Layer { .. } => "hostile_layer",
            ImageError::Registry { failure, .. } => failure.kind.label(),
            ImageError::Config(_) => "config",
            ImageError::Store { .. } | ImageError::Corrupt { .. } => "store",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Store { path, source }
    }
}
