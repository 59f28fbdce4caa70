//! Tag -> manifest digest, done once, here, and never again downstream. An index resolves to
//! its linux/amd64 child; an image the registry does not have is refused. Registries are
//! reached exactly as the agent reaches them (`slipway_image::registry`): the same
//! credentials (`[registry.auth]`, docker config.json, credential helpers), CA and client
//! certificate per registry, and Docker Hub names (`nginx` is `docker.io/library/nginx`).

use crate::config::RegistryConfig;
use crate::defaults;
use slipway_image::registry::{self as access, FailureKind, RegistryError, Repository, Session};
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
    #[error("registry {registry} refused `{image}`: authentication failed: {reason}")]
    Auth {
        image: String,
        registry: String,
        reason: String,
    },
    #[error("registry {registry} could not be reached for `{image}`: TLS failed: {reason}")]
    Tls {
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
    access: access::RegistryConfig,
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
    /// Registries in `plain_http` are spoken to over HTTP, and so are loopback ones unless a
    /// CA is configured for them in `[registry.tls]`.
    pub fn new(cfg: &RegistryConfig) -> Self {
        access::install_crypto_provider();
        Self {
            access: access::RegistryConfig {
                insecure: cfg.plain_http.clone(),
                auth: cfg.auth.clone(),
                tls: cfg.tls.clone(),
                docker_config: cfg.docker_config.clone(),
                certs_d: cfg.certs_d.clone(),
            },
            timeout: cfg.timeout.unwrap_or(defaults::RESOLVE_TIMEOUT),
        }
    }

    /// Resolves `requested` (which must name `repository`, Docker Hub names normalized) to
    /// a digest the registry has. The pinned image keeps the app's spelling of the
    /// repository; the agent normalizes it the same way.
    pub async fn resolve(
        &self,
        requested: &str,
        repository: &str,
    ) -> Result<Resolved, ResolveError> {
        let (repo, target) = split_reference(requested)?;
        if !slipway_proto::release::valid_repository(&repo) {
            return Err(ResolveError::BadReference(requested.to_string()));
        }
        let wanted = Repository::parse(repository);
        let named = Repository::parse(&repo);
        if named != wanted {
            return Err(ResolveError::WrongRepository {
                image: requested.to_string(),
                repository: repository.to_string(),
            });
        }
        let reference = match &target {
            Target::Tag(t) => t.clone(),
            Target::Digest(d) => d.to_string(),
        };
        let session = self.session(&wanted, requested).await?;
        let (bytes, digest) = self.fetch(&session, &wanted, &reference, requested).await?;
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
                    repository: repository.to_string(),
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
        let (_, child_digest) = self
            .fetch(&session, &wanted, &child.to_string(), requested)
            .await?;
        Ok(Resolved {
            image: ImageRef {
                repository: repository.to_string(),
                digest: child_digest,
            },
            index: Some(digest),
        })
    }

    async fn session(&self, repo: &Repository, requested: &str) -> Result<Session, ResolveError> {
        let registry = &repo.registry;
        let plain = is_loopback_registry(registry) && self.access.tls_for(registry).is_none();
        let open = if plain && !self.access.insecure.contains(registry) {
            let mut cfg = self.access.clone();
            cfg.insecure.push(registry.clone());
            Session::open(&cfg, registry, Some(self.timeout)).await
        } else {
            Session::open(&self.access, registry, Some(self.timeout)).await
        };
        open.map_err(|e| classify(e, requested, registry))
    }

    /// GETs a manifest and checks its bytes hash to the digest the registry reports.
    async fn fetch(
        &self,
        session: &Session,
        repo: &Repository,
        reference: &str,
        requested: &str,
    ) -> Result<(Vec<u8>, Digest), ResolveError> {
        let registry = &repo.registry;
        let call = session.manifest(
            &repo.path,
            reference,
            ACCEPT,
            slipway_image::defaults::MAX_MANIFEST_BYTES,
        );
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
        if let Some(reported) = reported.filter(|r| *r != computed.to_string()) {
            return Err(ResolveError::Registry {
                image: requested.to_string(),
                registry: registry.to_string(),
                reason: format!("reported digest {reported} but the manifest hashes to {computed}"),
            });
        }
        Ok((bytes, computed))
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

fn classify(e: RegistryError, image: &str, registry: &str) -> ResolveError {
    let (image, registry, reason) = (image.to_string(), registry.to_string(), e.reason);
    match e.kind {
        FailureKind::Network => ResolveError::Unreachable {
            image,
            registry,
            reason: format!("network failed: {reason}"),
        },
        FailureKind::Tls => ResolveError::Tls {
            image,
            registry,
            reason,
        },
        FailureKind::Auth => ResolveError::Auth {
            image,
            registry,
            reason,
        },
        FailureKind::NotFound => ResolveError::NotFound {
            image,
            registry,
            reason,
        },
        FailureKind::Protocol | FailureKind::Config => ResolveError::Registry {
            image,
            registry,
            reason,
        },
    }
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

    #[tokio::test]
    async fn docker_hub_names_match_without_contacting_it() {
        let r = Resolver::new(&RegistryConfig::default());
        // Normalized, `library/nginx` is not `nginx`'s repository `user/nginx`: refused
        // before any request.
        let err = r.resolve("user/nginx:1", "nginx").await.unwrap_err();
        assert!(matches!(err, ResolveError::WrongRepository { .. }), "{err}");
        let err = r.resolve("docker.io/library/web:1", "docker.io/web2").await;
        assert!(matches!(err, Err(ResolveError::WrongRepository { .. })));
        assert_eq!(
            Repository::parse("nginx"),
            Repository::parse("docker.io/library/nginx")
        );
        assert_eq!(
            Repository::parse("nginx").api_host(),
            "registry-1.docker.io"
        );
    }
}
