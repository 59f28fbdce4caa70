//! Tag -> manifest digest, done once, here, and never again downstream. An index resolves to
//! its linux/amd64 child; an image the registry does not have is refused.

use crate::defaults;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use slipway_proto::{Digest, ImageRef};
use std::time::Duration;

/// Manifest media types we accept from a registry.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("image `{image}` is not from the app's repository `{repository}`")]
    WrongRepository { image: String, repository: String },
    #[error("image `{0}` is not a valid reference: expected REPOSITORY[:TAG] or REPOSITORY@sha256:<64 hex>")]
    BadReference(String),
    #[error("image `{image}` does not exist in registry {registry}: {reason}")]
    NotFound {
        image: String,
        registry: String,
        reason: String,
    },
    #[error("registry {registry} could not be reached for `{image}`: {reason}")]
    Unreachable {
        image: String,
        registry: String,
        reason: String,
    },
    #[error("registry {registry} answered badly for `{image}`: {reason}")]
    Registry {
        image: String,
        registry: String,
        reason: String,
    },
    #[error("image `{image}` is a multi-platform index without a {os}/{arch} manifest")]
    NoPlatform {
        image: String,
        os: &'static str,
        arch: &'static str,
    },
}

/// The outcome of a resolution: the pinned image and, when it came out of an index, the index.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub image: ImageRef,
    pub index: Option<Digest>,
}

pub struct Resolver {
    client: Client,
    /// Plain HTTP, for loopback registries.
    loopback: Client,
    timeout: Duration,
}

/// True for registries reached over plain HTTP without being listed: loopback ones, as Docker does.
fn is_loopback_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Splits `repo[:tag]` or `repo@sha256:...` into (repository, tag or digest).
fn split_reference(s: &str) -> Result<(String, Target), ResolveError> {
    if let Some((repo, digest)) = s.split_once('@') {
        let d: Digest = digest
            .parse()
            .map_err(|_| ResolveError::BadReference(s.to_string()))?;
        return Ok((repo.to_string(), Target::Digest(d)));
    }
    let last = s.rsplit('/').next().unwrap_or(s);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => {
            let repo = &s[..s.len() - tag.len() - 1];
            Ok((repo.to_string(), Target::Tag(tag.to_string())))
        }
        Some(_) => Err(ResolveError::BadReference(s.to_string())),
        None => Ok((s.to_string(), Target::Tag("latest".into()))),
    }
}

enum Target {
    Tag(String),
    Digest(Digest),
}

impl Resolver {
    /// `plain_http` lists registries (`host:port`) spoken to over HTTP; loopback ones always are.
    pub fn new(plain_http: &[String], timeout: Option<Duration>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = timeout.unwrap_or(defaults::RESOLVE_TIMEOUT);
        let client = Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(plain_http.to_vec()),
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            ..Default::default()
        });
        let loopback = Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::Http,
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            ..Default::default()
        });
        Self {
            client,
            timeout,
            loopback,
        }
    }

    /// Resolves `requested` (which must name `repository`) to a digest the registry has.
    pub async fn resolve(
        &self,
        requested: &str,
        repository: &str,
    ) -> Result<Resolved, ResolveError> {
        let (repo, target) = split_reference(requested)?;
        if repo != repository {
            return Err(ResolveError::WrongRepository {
                image: requested.to_string(),
                repository: repository.to_string(),
            });
        }
        let probe: ImageRef = format!("{repo}@sha256:{}", "0".repeat(64))
            .parse()
            .map_err(|_| ResolveError::BadReference(requested.to_string()))?;
        let registry = probe.registry().unwrap_or("docker.io").to_string();
        let path = probe.path().to_string();
        let reference = match &target {
            Target::Tag(t) => Reference::with_tag(registry.clone(), path.clone(), t.clone()),
            Target::Digest(d) => {
                Reference::with_digest(registry.clone(), path.clone(), d.to_string())
            }
        };
        let (bytes, digest) = self.fetch(&reference, requested, &registry).await?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if !INDEX_TYPES.contains(&media_type.as_str()) {
            return Ok(Resolved {
                image: ImageRef {
                    repository: repo,
                    digest,
                },
                index: None,
            });
        }
        let child = pick_platform(&bytes).ok_or(ResolveError::NoPlatform {
            image: requested.to_string(),
            os: defaults::PLATFORM_OS,
            arch: defaults::PLATFORM_ARCH,
        })?;
        let child_ref = Reference::with_digest(registry.clone(), path, child.to_string());
        let (_, child_digest) = self.fetch(&child_ref, requested, &registry).await?;
        Ok(Resolved {
            image: ImageRef {
                repository: repo,
                digest: child_digest,
            },
            index: Some(digest),
        })
    }

    /// GETs a manifest and checks its bytes hash to the digest the registry reports.
    async fn fetch(
        &self,
        reference: &Reference,
        requested: &str,
        registry: &str,
    ) -> Result<(Vec<u8>, Digest), ResolveError> {
        let client = if is_loopback_registry(registry) {
            &self.loopback
        } else {
            &self.client
        };
        let call = client.pull_manifest_raw(reference, &RegistryAuth::Anonymous, ACCEPT);
        let (bytes, reported) = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(ResolveError::Unreachable {
                    image: requested.to_string(),
                    registry: registry.to_string(),
                    reason: format!(
                        "no answer within {}",
                        humantime::format_duration(self.timeout)
                    ),
                })
            }
            Ok(r) => r.map_err(|e| classify(e, requested, registry))?,
        };
        let computed = Digest::of(&bytes);
        if reported != computed.to_string() {
            return Err(ResolveError::Registry {
                image: requested.to_string(),
                registry: registry.to_string(),
                reason: format!("reported digest {reported} but the manifest hashes to {computed}"),
            });
        }
        Ok((bytes.to_vec(), computed))
    }
}

/// Picks the linux/amd64 manifest out of an index.
fn pick_platform(index: &[u8]) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(index).ok()?;
    v.get("manifests")?.as_array()?.iter().find_map(|m| {
        let p = m.get("platform")?;
        (p.get("os")?.as_str()? == defaults::PLATFORM_OS
            && p.get("architecture")?.as_str()? == defaults::PLATFORM_ARCH)
            .then(|| m.get("digest")?.as_str()?.parse().ok())
            .flatten()
    })
}

fn classify(e: OciDistributionError, image: &str, registry: &str) -> ResolveError {
    let (image, registry) = (image.to_string(), registry.to_string());
    match e {
        OciDistributionError::RequestError(err) => ResolveError::Unreachable {
            image,
            registry,
            reason: error_chain(&err),
        },
        OciDistributionError::ImageManifestNotFoundError(reason) => ResolveError::NotFound {
            image,
            registry,
            reason,
        },
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => ResolveError::NotFound {
            image,
            registry,
            reason: message,
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) =>
        {
            ResolveError::NotFound {
                image,
                registry,
                reason: envelope.to_string(),
            }
        }
        other => ResolveError::Registry {
            image,
            registry,
            reason: other.to_string(),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split() {
        let (r, t) = split_reference("127.0.0.1:5000/demo/web:v2").unwrap();
        assert_eq!(r, "127.0.0.1:5000/demo/web");
        assert!(matches!(t, Target::Tag(t) if t == "v2"));
        let (r, t) = split_reference("127.0.0.1:5000/demo/web").unwrap();
        assert_eq!(r, "127.0.0.1:5000/demo/web");
        assert!(matches!(t, Target::Tag(t) if t == "latest"));
        let d = format!("sha256:{}", "a".repeat(64));
        let (_, t) = split_reference(&format!("x/web@{d}")).unwrap();
        assert!(matches!(t, Target::Digest(x) if x.to_string() == d));
        assert!(split_reference("x/web@sha256:zz").is_err());
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("localhost"));
        assert!(!is_loopback_registry("registry.example.com:5000"));
    }
}
